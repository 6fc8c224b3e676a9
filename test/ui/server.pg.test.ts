/**
 * `modulo-group ui` over plain HTTP (no browser): the page, the JSON API, an event stream that
 * pushes a member's join, and what it refuses (anything but GET/HEAD, a foreign Host header).
 */
import { describe, expect, it } from "@effect/vitest"
import { type ChildProcess, spawn } from "node:child_process"
import * as http from "node:http"
import * as readline from "node:readline"
import { assertBuilt, bin, Member } from "../cli/support.js"
import { databaseUrl, randomGroupId } from "../support/Database.js"

const fast = ["--heartbeat", "300ms", "--lease", "3s", "--fence-margin", "500ms", "--statement-timeout", "1s"]

const request = (url: string, options: http.RequestOptions = {}) =>
  new Promise<{ status: number; type: string; body: string }>((resolve, reject) => {
    const req = http.request(url, options, (res) => {
      let body = ""
      res.on("data", (c: Buffer) => (body += c.toString("utf8")))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"]), body }))
    })
    req.on("error", reject)
    req.end()
  })

describe("modulo-group ui over HTTP", () => {
  it("serves the page and the API read-only, and pushes a join on the group's event stream", async () => {
    assertBuilt()
    const env = { ...process.env, DATABASE_URL: databaseUrl() }
    const group = randomGroupId("ui-http")
    const members: Array<Member> = []
    let ui: ChildProcess | undefined
    try {
      const a = new Member("a", group, fast, env)
      members.push(a)
      await a.waitFor((e) => e.state === "assigned", 30_000, "assigned")
      ui = spawn(process.execPath, [bin, "ui", "--port", "0"], { env, stdio: ["ignore", "pipe", "pipe"] })
      const base = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("ui did not start")), 30_000)
        readline.createInterface({ input: ui!.stdout! }).on("line", (line) => {
          const m = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(line)
          if (m !== null) {
            clearTimeout(timer)
            resolve(m[1]!)
          }
        })
      })

      const page = await request(base)
      expect(page.status).toBe(200)
      expect(page.type).toContain("text/html")
      expect(page.body).toContain("EventSource")

      const list = JSON.parse((await request(`${base}api/groups`)).body) as { groups: Array<{ groupId: string; size: number; healthy: number }> }
      expect(list.groups.find((g) => g.groupId === group)).toMatchObject({ size: 1, healthy: 1 })
      const detail = JSON.parse((await request(`${base}api/groups/${encodeURIComponent(group)}`)).body)
      expect(detail.group.members.map((m: { name: string; index: number }) => `${m.name}=${m.index}`)).toEqual(["a=0"])
      expect(detail.timeline.svg).toMatch(/^<svg /)
      expect((await request(`${base}api/groups/${encodeURIComponent(group)}/timeline.svg`)).type).toContain("image/svg+xml")
      expect((await request(`${base}api/groups/nobody-${group}`)).status).toBe(404)

      // Read-only, and only for requests addressed to loopback.
      expect((await request(`${base}api/groups`, { method: "POST" })).status).toBe(405)
      expect((await request(`${base}api/groups`, { method: "DELETE" })).status).toBe(405)
      expect((await request(base, { headers: { host: "attacker.example:4100" } })).status).toBe(403)

      // The group's stream: a second member's join arrives as an event with two members.
      let committed: Promise<number> | undefined
      const pushedAt = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no event with two members within 15 s")), 15_000)
        const req = http.get(`${base}events/${encodeURIComponent(group)}`, (res) => {
          expect(res.headers["content-type"]).toContain("text/event-stream")
          let buffer = ""
          let spawned = false
          res.on("data", (c: Buffer) => {
            buffer += c.toString("utf8")
            let i: number
            while ((i = buffer.indexOf("\n\n")) !== -1) {
              const event = buffer.slice(0, i)
              buffer = buffer.slice(i + 2)
              if (!event.startsWith("data: ")) continue
              const data = JSON.parse(event.slice(6))
              if (data.group?.members?.length === 1 && !spawned) {
                spawned = true
                const b = new Member("b", group, fast, env)
                members.push(b)
                // Its first line after `joining` comes after its join committed.
                committed = b.waitFor((e) => e.event === "state" && e.state !== "joining", 30_000, "joined").then(() => performance.now())
              }
              if (data.group?.members?.length === 2) {
                clearTimeout(timer)
                req.destroy()
                resolve(performance.now())
              }
            }
          })
        })
        req.on("error", () => undefined)
      })
      // On the stream within a second of the commit (pushed on the notification, or by the 1 s poll).
      expect(pushedAt - (await committed!)).toBeLessThan(1_000)
    } finally {
      for (const m of members) m.kill("SIGKILL")
      await Promise.all(members.map((m) => m.exited))
      if (ui !== undefined) {
        const exited = new Promise((r) => ui!.once("exit", r))
        ui.kill("SIGTERM")
        await exited
      }
    }
  }, 90_000)
})
