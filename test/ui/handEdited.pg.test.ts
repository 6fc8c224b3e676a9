/**
 * The dashboard over rows and requests it did not make (a review of the command line as a user):
 *
 * - a request whose path has a malformed `%`-escape (`/api/groups/%ZZ`, `/events/%E0%A4%A`):
 *   `decodeURIComponent` threw in the request handler and ended the server (any page open in the
 *   operator's browser could send it to 127.0.0.1); now 400, and the server stays up;
 * - a group whose `changed_at` is `infinity`, and a member whose heartbeat is: `/api/groups` answered
 *   503 "Failed to execute statement" (every group gone from the list), and so did the group's view;
 * - a change-log row naming index 300,000 (20,000,000 took 4 GB and aborted the server): one lane per
 *   index up to it, a 53 MB SVG; now the lanes stop at the row's size (and at 4,096).
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as http from "node:http"
import * as readline from "node:readline"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { connect, type ScratchDatabase, scratchDatabase } from "../cli/pgSupport.js"
import { assertBuilt, bin, run } from "../cli/support.js"

const get = (url: string, timeoutMs = 20_000): Promise<{ status: number; body: string }> =>
  new Promise((resolve) => {
    const req = http.get(url, (res) => {
      let body = ""
      res.on("data", (c: Buffer) => (body += c.toString("utf8")))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on("error", (e) => resolve({ status: 0, body: e.message }))
    req.setTimeout(timeoutMs, () => {
      req.destroy()
      resolve({ status: 0, body: "timeout" })
    })
  })

describe("ui over rows and requests it did not make", () => {
  let db: ScratchDatabase
  let ui: ChildProcess | undefined
  let base = ""
  let stderr = ""
  let exited: number | null | undefined = undefined
  const env = () => ({ ...process.env, DATABASE_URL: db.url })
  const sql = async (text: string) => {
    const c = await connect(db.url)
    try {
      await c.query(text)
    } finally {
      await c.end()
    }
  }
  beforeAll(async () => {
    assertBuilt()
    db = await scratchDatabase()
    const migrated = await run(["migrate"], env())
    expect(migrated.code, migrated.stderr).toBe(0)
    await sql(`INSERT INTO modulo_group.groups (group_id, epoch, size, changed_at) VALUES
      ('plain', 1, 1, now()), ('forever', 1, 0, 'infinity'), ('wide', 1, 1, now())`)
    await sql(`INSERT INTO modulo_group.members (member_id, group_id, idx, acked_epoch, lease_expires_at, heartbeat_at, joined_at, name, host)
      VALUES (gen_random_uuid(), 'plain', 0, 1, now() + interval '1 hour', now(), now(), 'm1', 'h1')`)
    await sql(`INSERT INTO modulo_group.change_log (group_id, epoch, size, incarnation, changed_at, cause, subject, assignment)
      SELECT 'wide', 1, 1, incarnation, now(), 'join', NULL,
             '[{"member_id":"00000000-0000-0000-0000-000000000001","index":300000,"name":"x","host":"h","pid":1}]'::jsonb
        FROM modulo_group.groups WHERE group_id = 'wide'`)
    ui = spawn(process.execPath, [bin, "ui", "--port", "0"], { env: env(), stdio: ["ignore", "pipe", "pipe"] })
    ui.stderr!.on("data", (c: Buffer) => (stderr += c.toString("utf8")))
    ui.once("exit", (code) => (exited = code))
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
    ui?.kill("SIGKILL")
    await db?.drop()
  })

  for (const path of ["api/groups/%ZZ", "events/%E0%A4%A"]) {
    it(`GET /${path}: 400, and the server stays up`, async () => {
      const r = await get(`${base}${path}`, 3_000)
      await new Promise((resolve) => setTimeout(resolve, 300))
      expect(stderr).not.toContain("URIError")
      expect(exited).toBeUndefined()
      expect(r.status).toBe(400)
      expect((await get(`${base}api/groups`)).status).toBe(200)
    })
  }

  it("/api/groups lists every group though one has an infinite changed_at", async () => {
    const r = await get(`${base}api/groups`)
    expect(r.status).toBe(200)
    const list = JSON.parse(r.body) as { groups: Array<{ groupId: string; changedAt: string | null }> }
    expect(list.groups.map((g) => g.groupId).sort()).toEqual(["forever", "plain", "wide"])
    expect(list.groups.find((g) => g.groupId === "forever")?.changedAt).toBeNull()
  })

  it("the group's view answers after a member's heartbeat is set to infinity", async () => {
    await sql(`INSERT INTO modulo_group.members (member_id, group_id, idx, acked_epoch, lease_expires_at, heartbeat_at, joined_at, name, host)
      VALUES (gen_random_uuid(), 'forever', 0, 1, now() + interval '1 hour', 'infinity', now(), 'edited', 'h')`)
    expect((await get(`${base}api/groups/plain`)).status).toBe(200)
    const edited = await get(`${base}api/groups/forever`)
    expect(edited.status).toBe(200)
    expect(edited.body).toContain("edited")
    expect((await get(`${base}api/groups`)).status).toBe(200)
  })

  it("a change-log row naming index 300,000: the group's view answers quickly, its timeline bounded by the row's size", async () => {
    const started = Date.now()
    const r = await get(`${base}api/groups/wide`)
    expect(r.status).toBe(200)
    expect(r.body.length).toBeLessThan(2_000_000)
    expect(Date.now() - started).toBeLessThan(3_000)
  })
})
