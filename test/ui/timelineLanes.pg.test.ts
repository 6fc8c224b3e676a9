/**
 * A review of the command line: the dashboard's timeline draws one lane per index up to the highest index any change-log
 * row names, with no bound. One change-log row edited by hand (or written by any role that can write
 * the table) naming index 20,000,000 made `GET /api/groups/<group>` run at full CPU with no answer for
 * 30 s and then the whole `ui` process abort out of memory (4 GB, exit 134: every group's dashboard
 * gone). Here with 300,000: the answer is a 53 MB SVG. Expected: lanes bounded by
 * something sane (the group's size, or a fixed cap), the answer small and quick.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as http from "node:http"
import * as readline from "node:readline"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { connect, type ScratchDatabase, scratchDatabase } from "../cli/pgSupport.js"
import { assertBuilt, bin, run } from "../cli/support.js"

const get = (url: string, timeoutMs: number): Promise<{ status: number; bytes: number }> =>
  new Promise((resolve) => {
    const req = http.get(url, (res) => {
      let bytes = 0
      res.on("data", (c: Buffer) => (bytes += c.length))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, bytes }))
    })
    req.on("error", () => resolve({ status: 0, bytes: 0 }))
    req.setTimeout(timeoutMs, () => {
      req.destroy()
      resolve({ status: 0, bytes: 0 })
    })
  })

describe("ui timeline and a change-log row with a huge index", () => {
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
      await c.query(`INSERT INTO modulo_group.groups (group_id, epoch, size, changed_at) VALUES ('wide', 1, 1, now())`)
      await c.query(
        `INSERT INTO modulo_group.change_log (group_id, epoch, size, incarnation, changed_at, cause, subject, assignment)
         SELECT 'wide', 1, 1, incarnation, now(), 'join', NULL,
                '[{"member_id":"00000000-0000-0000-0000-000000000001","index":300000,"name":"x","host":"h","pid":1}]'::jsonb
           FROM modulo_group.groups WHERE group_id = 'wide'`
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
    ui?.kill("SIGKILL")
    await db?.drop()
  })

  it("the group's view answers quickly with a bounded timeline", async () => {
    const started = Date.now()
    const r = await get(`${base}api/groups/wide`, 20_000)
    const ms = Date.now() - started
    expect(r.status).toBe(200)
    expect(r.bytes).toBeLessThan(2_000_000)
    expect(ms).toBeLessThan(3_000)
  })
})
