/**
 * Two local PostgreSQL 15 servers, a primary and a streaming standby, for the failover suite: the
 * Debian server binaries (/usr/lib/postgresql/15/bin) run as the `postgres` OS user (runuser), in a
 * temp dir of their own, on random free loopback ports, trust auth. The standby is made with
 * `pg_basebackup -R` on a physical replication slot; with `sync`, the primary waits for it on every
 * commit (synchronous_standby_names = '*', synchronous_commit = on).
 *
 * Failover as an HA manager does it: `killPrimary` (pg_ctl stop -m immediate: no shutdown checkpoint,
 * connections cut), then `promoteStandby` (pg_ctl promote -w). `cutReplication` stops the standby's
 * WAL receiver (primary_conninfo emptied, reloaded), so what the primary commits from then on never
 * reaches it: asynchronous replication's lag, made as long as a test needs.
 */
import { spawn, spawnSync } from "node:child_process"
import { existsSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"

export const binDir = "/usr/lib/postgresql/15/bin"
const runuser = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"].find((p) => existsSync(p))

/** Why the suite cannot run here, or undefined when it can. */
export const unavailable = (): string | undefined => {
  const missing = ["initdb", "pg_ctl", "pg_basebackup", "postgres"].filter((b) => !existsSync(path.join(binDir, b)))
  if (missing.length > 0) {
    return `PostgreSQL 15 server binaries missing in ${binDir} (${missing.join(", ")}): apt-get install -y postgresql-15`
  }
  if (process.getuid?.() !== 0) return "needs root to run the servers as the postgres OS user (run the tests as root)"
  if (runuser === undefined) return "runuser not found (apt-get install -y util-linux)"
  return undefined
}

/** Runs a command as the postgres OS user; rejects with its output when it fails. */
const asPostgres = (bin: string, args: ReadonlyArray<string>, timeoutMs = 60_000): Promise<string> =>
  new Promise((resolve, reject) => {
    // stdin ignored, and "exit" (not "close") awaited: a server pg_ctl starts keeps no pipe of ours.
    const child = spawn(runuser!, ["-u", "postgres", "--", path.join(binDir, bin), ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, LC_ALL: "C.UTF-8", LANG: "C.UTF-8" }
    })
    let out = ""
    child.stdout.on("data", (d: Buffer) => (out += d.toString()))
    child.stderr.on("data", (d: Buffer) => (out += d.toString()))
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs)
    child.on("error", (e) => {
      clearTimeout(timer)
      reject(e)
    })
    child.on("exit", (code, signal) => {
      clearTimeout(timer)
      if (code === 0) resolve(out)
      else reject(new Error(`${bin} ${args.join(" ")} failed (${code ?? signal}): ${out}`))
    })
  })

const idOf = (flag: "-u" | "-g"): Promise<number> =>
  new Promise((resolve, reject) => {
    const child = spawn("id", [flag, "postgres"], { stdio: ["ignore", "pipe", "ignore"] })
    let out = ""
    child.stdout.on("data", (d: Buffer) => (out += d.toString()))
    child.on("error", reject)
    child.on("exit", (code) => (code === 0 ? resolve(Number(out.trim())) : reject(new Error("no postgres OS user"))))
  })

export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })

export const urlOf = (port: number): string => `postgres://postgres@127.0.0.1:${port}/postgres`

/** One query on a fresh connection (the servers come and go: no pool). */
export const query = async <R extends pg.QueryResultRow>(
  port: number,
  text: string,
  values: ReadonlyArray<unknown> = []
): Promise<Array<R>> => {
  const client = new pg.Client({ connectionString: urlOf(port), connectionTimeoutMillis: 5_000 })
  client.on("error", () => undefined)
  await client.connect()
  try {
    return (await client.query<R>(text, values as Array<unknown>)).rows
  } finally {
    await client.end().catch(() => undefined)
  }
}

/** Polls `check` every 20 ms until it holds; rejects after `maxMs`. */
export const until = async (what: string, check: () => Promise<boolean>, maxMs = 30_000): Promise<number> => {
  const start = Date.now()
  for (;;) {
    if (await check().catch(() => false)) return Date.now() - start
    if (Date.now() - start > maxMs) throw new Error(`${what}: not within ${maxMs} ms`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

export interface Pair {
  readonly dir: string
  readonly sync: boolean
  readonly primaryPort: number
  readonly standbyPort: number
  /** pg_ctl stop -m immediate on the primary: every connection cut, no checkpoint. */
  readonly killPrimary: () => Promise<void>
  /** pg_ctl promote -w on the standby; resolves once it accepts writes, with the time it took (ms). */
  readonly promoteStandby: () => Promise<number>
  /** Stops the standby's WAL receiver and keeps it stopped: the primary's later commits never reach it. */
  readonly cutReplication: () => Promise<void>
  /** Waits until the standby has replayed everything the primary has written so far. */
  readonly caughtUp: () => Promise<void>
  /** The last lines of both servers' logs, for a failure message. */
  readonly logs: () => Promise<string>
  /** Stops both servers (immediate) and removes the temp dir. */
  readonly stop: () => Promise<void>
}

const conf = (port: number, dir: string, extra: Record<string, string>) =>
  Object.entries({
    port: String(port),
    listen_addresses: "'127.0.0.1'",
    unix_socket_directories: `'${dir}'`,
    max_connections: "100",
    shared_buffers: "'16MB'",
    fsync: "off",
    wal_level: "replica",
    max_wal_senders: "5",
    max_replication_slots: "5",
    hot_standby: "on",
    wal_receiver_status_interval: "'1s'",
    log_min_messages: "warning",
    ...extra
  }).map(([k, v]) => `${k} = ${v}\n`).join("")

/** Starts a primary and a standby streaming from it, and waits until the standby is streaming. */
export const startPair = async (options: { readonly sync: boolean }): Promise<Pair> => {
  const uid = await idOf("-u")
  const gid = await idOf("-g")
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "mg-failover-"))
  await fs.chown(dir, uid, gid)
  const primaryDir = path.join(dir, "primary")
  const standbyDir = path.join(dir, "standby")
  const primaryLog = path.join(dir, "primary.log")
  const standbyLog = path.join(dir, "standby.log")
  const primaryPort = await freePort()
  const standbyPort = await freePort()
  const ctl = (dataDir: string, ...args: Array<string>) => asPostgres("pg_ctl", ["-D", dataDir, ...args])

  // If this process exits with the servers still up (a test's scope never closed), stop them anyway.
  const onExit = () => {
    for (const d of [primaryDir, standbyDir]) {
      if (existsSync(path.join(d, "postmaster.pid"))) {
        spawnSync(runuser!, ["-u", "postgres", "--", path.join(binDir, "pg_ctl"), "-D", d, "-m", "immediate", "stop"])
      }
    }
  }
  process.once("exit", onExit)
  const stop = async () => {
    process.removeListener("exit", onExit)
    for (const d of [primaryDir, standbyDir]) {
      if (existsSync(path.join(d, "postmaster.pid"))) await ctl(d, "-m", "immediate", "-w", "stop").catch(() => undefined)
    }
    await fs.rm(dir, { recursive: true, force: true })
  }
  const logs = async () => {
    const tail = async (f: string) => (await fs.readFile(f, "utf8").catch(() => "")).split("\n").slice(-15).join("\n")
    return `--- primary.log\n${await tail(primaryLog)}\n--- standby.log\n${await tail(standbyLog)}`
  }

  try {
    await asPostgres("initdb", ["-D", primaryDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
    await fs.appendFile(
      path.join(primaryDir, "postgresql.conf"),
      conf(primaryPort, dir, options.sync ? { synchronous_standby_names: "'*'", synchronous_commit: "on" } : {})
    )
    await ctl(primaryDir, "-l", primaryLog, "-w", "-t", "60", "start")
    await query(primaryPort, "SELECT pg_create_physical_replication_slot('standby')")
    await asPostgres("pg_basebackup", [
      "-h", "127.0.0.1", "-p", String(primaryPort), "-U", "postgres", "-D", standbyDir,
      "-R", "-S", "standby", "-X", "stream", "--checkpoint=fast", "--no-sync"
    ])
    // The standby's own port; and once promoted it has no standby of its own, so it must not wait
    // for one (a new primary with synchronous_standby_names = '*' and no standby blocks every commit).
    await fs.appendFile(
      path.join(standbyDir, "postgresql.conf"),
      conf(standbyPort, dir, { synchronous_standby_names: "''" })
    )
    await ctl(standbyDir, "-l", standbyLog, "-w", "-t", "60", "start")
    await until("standby streaming", async () => {
      const rows = await query<{ state: string; sync_state: string }>(
        primaryPort,
        "SELECT state, sync_state FROM pg_stat_replication"
      )
      return rows.some((r) => r.state === "streaming" && (options.sync ? r.sync_state === "sync" : true))
    })
  } catch (cause) {
    const tail = await logs()
    await stop()
    throw new Error(`could not start the primary and standby: ${String(cause)}\n${tail}`, { cause })
  }

  return {
    dir,
    sync: options.sync,
    primaryPort,
    standbyPort,
    killPrimary: () => ctl(primaryDir, "-m", "immediate", "-w", "stop").then(() => undefined),
    promoteStandby: async () => {
      const start = Date.now()
      await ctl(standbyDir, "-w", "-t", "60", "promote")
      await until("standby promoted", async () => {
        const [r] = await query<{ recovery: boolean }>(standbyPort, "SELECT pg_is_in_recovery() AS recovery")
        return r?.recovery === false
      })
      return Date.now() - start
    },
    cutReplication: async () => {
      await query(standbyPort, "ALTER SYSTEM SET primary_conninfo = ''")
      await query(standbyPort, "SELECT pg_reload_conf()")
      await until("WAL receiver stopped", async () => {
        const [r] = await query<{ n: string }>(standbyPort, "SELECT count(*) AS n FROM pg_stat_wal_receiver")
        return Number(r?.n) === 0
      })
    },
    caughtUp: async () => {
      const [p] = await query<{ lsn: string }>(primaryPort, "SELECT pg_current_wal_lsn()::text AS lsn")
      await until("standby caught up", async () => {
        const [r] = await query<{ behind: boolean }>(
          standbyPort,
          "SELECT pg_last_wal_replay_lsn() < $1::pg_lsn AS behind",
          [p!.lsn]
        )
        return r?.behind === false
      })
    },
    logs,
    stop
  }
}
