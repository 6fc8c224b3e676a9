/**
 * Without DATABASE_URL every command shares one embedded PostgreSQL per user: commands started at
 * once agree on one server, it outlives them, `db status` finds it, `db stop` stops it and the
 * next command starts it again on the same port. Uses a private XDG_CACHE_HOME, never the user's.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { randomGroupId } from "../support/Database.js"
import { assertBuilt, run } from "./support.js"

interface DbStatus {
  readonly running: boolean
  readonly accepting: boolean
  readonly pid: number | null
  readonly port: number | null
  readonly dataDir: string | null
  readonly dir: string
}

describe("the embedded PostgreSQL (child processes)", () => {
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), "modulo-group-cli-test-"))
  // Run as root, the server runs as `postgres`, which must reach the data directory.
  fs.chmodSync(cache, 0o755)
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_CACHE_HOME: cache }
  delete env["DATABASE_URL"]
  const dbStatus = async (): Promise<DbStatus> => {
    const r = await run(["db", "status", "--json"], env)
    expect(r.code).toBe(0)
    return JSON.parse(r.stdout) as DbStatus
  }

  beforeAll(assertBuilt)
  afterAll(async () => {
    await run(["db", "stop", "--purge"], env).catch(() => undefined)
    fs.rmSync(cache, { recursive: true, force: true })
  })

  it("is started once by commands started at once, outlives them, stops and restarts", async () => {
    const before = await run(["db", "status"], env)
    expect(before.code).toBe(0)
    expect(before.stdout).toContain("embedded PostgreSQL: not set up yet")

    // Three commands at once: one server; exactly one of them started it.
    const results = await Promise.all([run(["migrate"], env), run(["migrate"], env), run(["groups"], env)])
    for (const r of results) expect(r.code, r.stderr).toBe(0)
    expect(results.filter((r) => /started embedded PostgreSQL/.test(r.stderr))).toHaveLength(1)
    const migrated = results.slice(0, 2).map((r) => r.stdout).join("")
    expect(migrated).toMatch(/applied 0001_init, [^;]*; now at version \d+|already at version \d+/)

    // It outlives the commands that started it.
    const [up, urlRun] = await Promise.all([dbStatus(), run(["db", "url"], env)])
    expect(up).toMatchObject({ running: true, accepting: true })
    expect(up.dataDir).toBe(path.join(cache, "modulo-group", "pg", "data"))
    const ports = new Set(results.slice(0, 2).map((r) => /127\.0\.0\.1:(\d+)\//.exec(r.stdout)?.[1]))
    expect(ports).toEqual(new Set([String(up.port)]))

    // The server checks passwords (scram): a wrong one is one clear line.
    const url = urlRun.stdout.trim()
    expect(url).toMatch(/^postgres:\/\/postgres:[0-9a-f]+@127\.0\.0\.1:\d+\/modulo_group$/)
    const wrong = await run(["join", randomGroupId("cli-wrong"), "--database-url", url.replace(/:[0-9a-f]+@/, ":wrong@")], env)
    expect(wrong.code).toBe(1)
    expect(wrong.stderr.trim()).toMatch(
      /^modulo-group: cannot connect to the database at postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/modulo_group: password authentication failed for user "postgres" \(SQLSTATE 28P01\)$/
    )

    // Stop, then the next command starts it again, on the recorded port.
    const stopped = await run(["db", "stop"], env)
    expect(stopped.stdout).toMatch(new RegExp(`stopped \\(pid ${up.pid}, port ${up.port}\\)`))
    expect(await dbStatus()).toMatchObject({ running: false })
    const again = await run(["groups"], env)
    expect(again.code).toBe(0)
    expect(again.stderr).toContain(`started embedded PostgreSQL 18 on 127.0.0.1:${up.port}`)
  }, 90_000)
})
