/**
 * A review of the command line: the dashboard over rows edited by hand. One group whose `changed_at` is `infinity` makes the whole list of groups answer 503
 * `{"error":"Failed to execute statement"}` (PostgreSQL: cannot subtract infinite timestamps): every
 * group disappears from the dashboard, with a message that says nothing of why, and nothing on the
 * ui's stderr; a member whose heartbeat is `infinity` does the same to its group's view. `groups` on the command line lists the same database fine.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as http from "node:http"
import * as readline from "node:readline"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { connect, type ScratchDatabase, scratchDatabase } from "../cli/pgSupport.js"
import { assertBuilt, bin, run } from "../cli/support.js"

const get = (url: string): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    http.get(url, (res) => {
      let body = ""
      res.on("data", (c: Buffer) => (body += c.toString("utf8")))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }))
    }).on("error", reject)
  })

describe("ui over rows edited by hand", () => {
  let db: ScratchDatabase
  let ui: ChildProcess | undefined
  let base = ""
  const env = () => ({ ...process.env, DATABASE_URL: db.url })
  beforeAll(async () => {
    assertBuilt()
    db = await scratchDatabase()
    const migrated = await run(["migrate"], env())
    expect(migrated.code, migrated.stderr).toBe(0)
    const c = await connect(db.url)
    try {
      await c.query(`INSERT INTO modulo_group.groups (group_id, epoch, size, changed_at) VALUES
        ('plain', 1, 1, now()), ('forever', 1, 0, 'infinity')`)
      await c.query(
        `INSERT INTO modulo_group.members (member_id, group_id, idx, acked_epoch, lease_expires_at, heartbeat_at, joined_at, name, host)
         VALUES (gen_random_uuid(), 'plain', 0, 1, now() + interval '1 hour', now(), now(), 'm1', 'h1')`
      )
    } finally {
      await c.end()
    }
    ui = spawn(process.execPath, [bin, "ui", "--port", "0"], { env: env(), stdio: ["ignore", "pipe", "pipe"] })
    base = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("ui did not start")), 30_000)
      readline.createInterface({ input: ui!.stdout! }).on("line", (line) => {
        const m = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(line)
        if (m !== null) {
          clearTimeout(timer)
          resolve(m[1]!)
        }
      })
    })
  })
  afterAll(async () => {
    ui?.kill("SIGINT")
    await db?.drop()
  })

  it("the CLI lists both groups", async () => {
    const r = await run(["groups"], env())
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toContain("forever")
    expect(r.stdout).toContain("plain")
  })

  it("/api/groups lists every group though one has an infinite changed_at", async () => {
    const r = await get(`${base}api/groups`)
    expect(r.body).not.toContain("Failed to execute statement")
    expect(r.status).toBe(200)
    const list = JSON.parse(r.body) as { groups: Array<{ groupId: string }> }
    expect(list.groups.map((g) => g.groupId).sort()).toEqual(["forever", "plain"])
  })

  it("/api/groups and the group's view still answer after a member's heartbeat is set to infinity", async () => {
    const c = await connect(db.url)
    try {
      await c.query(`UPDATE modulo_group.groups SET changed_at = now() WHERE group_id = 'forever'`)
      await c.query(
        `INSERT INTO modulo_group.members (member_id, group_id, idx, acked_epoch, lease_expires_at, heartbeat_at, joined_at, name, host)
         VALUES (gen_random_uuid(), 'forever', 0, 1, now() + interval '1 hour', 'infinity', now(), 'edited', 'h')`
      )
    } finally {
      await c.end()
    }
    const plain = await get(`${base}api/groups/plain`)
    expect(plain.status).toBe(200)
    const edited = await get(`${base}api/groups/forever`)
    expect(edited.body).not.toContain("Failed to execute statement")
    expect(edited.status).toBe(200)
  })
})
