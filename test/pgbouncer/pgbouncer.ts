/**
 * Debian's `pgbouncer`, started by a test in front of the test database: a random free port, a temp
 * directory, trust authentication (the userlist carries the test URL's password for the server
 * login), a small pool so that clients share server connections. Stopped by `stop()` (the tests call
 * it in `afterAll`/finalizers) and, as a last resort, when this process exits.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"

/** The one line a suite prints when it cannot run here. */
export const skipMessage = "skipped: pgbouncer not installed (apt-get install pgbouncer)"

/** The `pgbouncer` binary, if installed (Debian puts it in /usr/sbin, which a user's PATH may lack). */
export const pgbouncerBinary = (): string | undefined => {
  const dirs = [...(process.env["PATH"] ?? "").split(path.delimiter), "/usr/sbin", "/usr/local/sbin", "/usr/bin"]
  for (const dir of dirs) {
    if (dir === "") continue
    const candidate = path.join(dir, "pgbouncer")
    try {
      fs.accessSync(candidate, fs.constants.X_OK)
      return candidate
    } catch {
      // next
    }
  }
  return undefined
}

export interface PgBouncer {
  /** The test database's URL with host and port replaced by PgBouncer's. */
  readonly url: string
  /** PgBouncer's admin console (`SHOW POOLS`, `SHOW CLIENTS`...). */
  readonly adminUrl: string
  readonly port: number
  readonly dir: string
  /** The log so far (for failure messages). */
  readonly log: () => string
  readonly stop: () => Promise<void>
}

export interface Options {
  readonly poolMode?: "transaction" | "session" | "statement" | undefined
  /** Server connections per database/user pair (default 4). */
  readonly poolSize?: number | undefined
  /** Client connections PgBouncer takes at once (default 500); past it, it refuses (08P01). */
  readonly maxClientConn?: number | undefined
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address() as net.AddressInfo
      server.close(() => resolve(address.port))
    })
  })

/** PgBouncer refuses to run as root: when we are root it switches to this user (`-u`). */
const runAsUser = (): { readonly name: string; readonly uid: number; readonly gid: number } | undefined => {
  if (process.getuid?.() !== 0) return undefined
  for (const name of ["postgres", "nobody"]) {
    try {
      const uid = Number(execFileSync("id", ["-u", name]).toString().trim())
      const gid = Number(execFileSync("id", ["-g", name]).toString().trim())
      return { name, uid, gid }
    } catch {
      // next
    }
  }
  throw new Error("running as root and found no user for pgbouncer to switch to (postgres or nobody)")
}

const quote = (s: string) => `"${s.replace(/"/g, "\"\"")}"`

const running = new Set<ChildProcess>()
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL")
})

/** Starts PgBouncer in front of `targetUrl`'s server and waits until it answers a query through it. */
export const start = async (targetUrl: string, options: Options = {}): Promise<PgBouncer> => {
  const binary = pgbouncerBinary()
  if (binary === undefined) throw new Error(skipMessage)
  const target = new URL(targetUrl)
  const user = decodeURIComponent(target.username || "postgres")
  const password = decodeURIComponent(target.password)
  const port = await freePort()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mg-pgbouncer-"))
  const as = runAsUser()
  const ini = [
    "[databases]",
    `* = host=${target.hostname.replace(/^\[|\]$/g, "")} port=${target.port || "5432"}`,
    "[pgbouncer]",
    "listen_addr = 127.0.0.1",
    `listen_port = ${port}`,
    "unix_socket_dir =",
    "auth_type = trust",
    `auth_file = ${path.join(dir, "userlist.txt")}`,
    `admin_users = ${user}`,
    `pool_mode = ${options.poolMode ?? "transaction"}`,
    `default_pool_size = ${options.poolSize ?? 4}`,
    "min_pool_size = 0",
    "reserve_pool_size = 0",
    `max_client_conn = ${options.maxClientConn ?? 500}`,
    "ignore_startup_parameters = extra_float_digits,options,statement_timeout",
    `logfile = ${path.join(dir, "pgbouncer.log")}`,
    `pidfile = ${path.join(dir, "pgbouncer.pid")}`,
    ""
  ].join("\n")
  fs.writeFileSync(path.join(dir, "pgbouncer.ini"), ini)
  fs.writeFileSync(path.join(dir, "userlist.txt"), `${quote(user)} ${quote(password)}\n`)
  if (as !== undefined) {
    for (const f of ["", "pgbouncer.ini", "userlist.txt"]) fs.chownSync(path.join(dir, f), as.uid, as.gid)
  }
  const args = [...(as !== undefined ? ["-u", as.name] : []), path.join(dir, "pgbouncer.ini")]
  const child = spawn(binary, args, { stdio: ["ignore", "ignore", "pipe"] })
  running.add(child)
  let stderr = ""
  child.stderr!.on("data", (c: Buffer) => (stderr += c.toString("utf8")))
  let exited = false
  const exit = new Promise<void>((resolve) =>
    child.once("exit", () => {
      exited = true
      running.delete(child)
      resolve()
    })
  )
  const log = () => {
    try {
      return fs.readFileSync(path.join(dir, "pgbouncer.log"), "utf8") + stderr
    } catch {
      return stderr
    }
  }
  const stop = async () => {
    if (!exited) {
      child.kill("SIGTERM")
      const timer = setTimeout(() => child.kill("SIGKILL"), 3_000)
      await exit
      clearTimeout(timer)
    }
    fs.rmSync(dir, { recursive: true, force: true })
  }
  const url = new URL(targetUrl)
  url.hostname = "127.0.0.1"
  url.port = String(port)
  const admin = new URL(url)
  admin.pathname = "/pgbouncer"
  const bouncer: PgBouncer = { url: url.toString(), adminUrl: admin.toString(), port, dir, log, stop }
  // Ready when a query goes through it to the server.
  const deadline = Date.now() + 10_000
  for (;;) {
    if (exited) {
      await stop()
      throw new Error(`pgbouncer exited at start:\n${log()}`)
    }
    const client = new pg.Client({ connectionString: bouncer.url, connectionTimeoutMillis: 1_000 })
    client.on("error", () => undefined)
    try {
      await client.connect()
      await client.query("SELECT 1")
      await client.end()
      return bouncer
    } catch (error) {
      await client.end().catch(() => undefined)
      if (Date.now() > deadline) {
        await stop()
        throw new Error(`pgbouncer did not accept connections within 10 s: ${String(error)}\n${log()}`)
      }
      await new Promise((r) => setTimeout(r, 50))
    }
  }
}

/** Rows of an admin console command (`SHOW POOLS`). */
export const admin = async (bouncer: PgBouncer, command: string): Promise<Array<Record<string, unknown>>> => {
  // The admin console speaks only the simple query protocol.
  const client = new pg.Client({ connectionString: bouncer.adminUrl })
  client.on("error", () => undefined)
  await client.connect()
  try {
    const result = await client.query({ text: command, queryMode: "simple" } as pg.QueryConfig)
    return result.rows
  } finally {
    await client.end().catch(() => undefined)
  }
}
