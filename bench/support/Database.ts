/**
 * A database of the benchmark's own: on `DATABASE_URL`'s server when set, else on an embedded
 * PostgreSQL started here. A dedicated database keeps pg_stat_database counters clean.
 */
import { PgClient } from "@effect/sql-pg"
import { Effect, Redacted } from "effect"
import * as fs from "node:fs"
import pg from "pg"
import * as Migrations from "../../src/Migrations.js"
import { removeDataDir, startThrowaway } from "../../cli/src/embedded/index.js"

export interface BenchDatabase {
  readonly url: string
  /** Where it runs, for the report: "DATABASE_URL" or "embedded PostgreSQL". */
  readonly server: string
  readonly version: string
  readonly close: () => Promise<void>
}

export const benchDatabase = async (name: string): Promise<BenchDatabase> => {
  let base = process.env["DATABASE_URL"]
  let stop = async () => {}
  let server = "DATABASE_URL"
  if (base === undefined || base === "") {
    const embedded = await startThrowaway()
    base = embedded.url
    stop = async () => {
      await embedded.stop()
      await removeDataDir(embedded.dataDir)
    }
    server = "embedded PostgreSQL (fsync off)"
  }
  const admin = new pg.Client({ connectionString: base })
  await admin.connect()
  const version = (await admin.query("SHOW server_version")).rows[0].server_version as string
  await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`)
  await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`)
  await admin.end()
  const url = new URL(base)
  url.pathname = `/${name}`
  return {
    url: url.toString(),
    server,
    version,
    close: async () => {
      const c = new pg.Client({ connectionString: base })
      await c.connect()
      await c.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`)
      await c.end()
      await stop()
    }
  }
}

const withClient = async <A>(url: string, f: (c: pg.Client) => Promise<A>): Promise<A> => {
  const c = new pg.Client({ connectionString: url, application_name: "modulo-group-bench-probe" })
  c.on("error", () => undefined)
  await c.connect()
  try {
    return await f(c)
  } finally {
    await c.end().catch(() => undefined)
  }
}

export interface Counters {
  /** Committed plus rolled-back transactions in the database so far. */
  readonly transactions: number
  /** CPU time of the whole PostgreSQL server so far, where /proc shows it (else NaN). */
  readonly serverCpuMs: number
  /** Statements seen by pg_stat_statements in this database (NaN when it is not loaded). */
  readonly serverStatements: number
  /** Transactions this probe itself ran (counted by the next probe: subtract them from a window). */
  readonly own: number
}

const clockTick = 100 // USER_HZ on Linux

/** Fields of /proc/<pid>/stat after the name (state, ppid, ... utime at 11, stime 12, cutime 13, cstime 14), and the name. */
const procStat = (pid: string): { readonly name: string; readonly f: Array<string> } | undefined => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return { name: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")), f: stat.slice(stat.lastIndexOf(")") + 2).split(" ") }
  } catch {
    return undefined // exited meanwhile
  }
}

/**
 * CPU time (user + system, ms) of the PostgreSQL server on this machine, from /proc: every `postgres`
 * process, plus what the postmaster's exited children used (its cutime/cstime), so backends that came
 * and went count too. Read again if a backend was reaped during the read. NaN where /proc does not
 * show the server (another machine).
 */
export const serverCpuMs = (): number => {
  let pids: Array<string> = []
  try {
    pids = fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d))
  } catch {
    return NaN
  }
  const postgres = pids.filter((pid) => procStat(pid)?.name === "postgres")
  const postmaster = postgres.find((pid) => procStat(procStat(pid)?.f[1] ?? "")?.name !== "postgres")
  if (postmaster === undefined) return NaN
  const cpu = (f: Array<string>, children: boolean) =>
    Number(f[11]) + Number(f[12]) + (children ? Number(f[13]) + Number(f[14]) : 0)
  for (let attempt = 0;; attempt++) {
    const before = procStat(postmaster)
    if (before === undefined) return NaN
    let ticks = 0
    for (const pid of pids) {
      const s = procStat(pid)
      if (s?.name === "postgres" && s.f[1] === postmaster) ticks += cpu(s.f, false)
    }
    const after = procStat(postmaster)
    if (after === undefined) return NaN
    if (cpu(before.f, true) === cpu(after.f, true) || attempt >= 5) return ((ticks + cpu(after.f, true)) * 1000) / clockTick
    pids = fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d))
  }
}

/**
 * Counters of one database. The probe's own transactions are counted by the next probe (`own`).
 * Backends flush their counters to pg_stat_database at most once a second, and an idle backend
 * only after up to 10 s: let a group settle 12 s before a window opens, and make windows long.
 */
export const counters = (url: string, pgss: boolean): Promise<Counters> =>
  withClient(url, async (c) => {
    await c.query("SELECT pg_stat_clear_snapshot()")
    const t = await c.query(
      "SELECT (xact_commit + xact_rollback)::bigint AS n FROM pg_stat_database WHERE datname = current_database()"
    )
    let serverStatements = NaN
    if (pgss) {
      const s = await c.query(
        "SELECT coalesce(sum(calls), 0)::bigint AS n FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
      )
      serverStatements = Number(s.rows[0].n)
    }
    return {
      transactions: Number(t.rows[0].n),
      serverCpuMs: serverCpuMs(),
      serverStatements,
      own: pgss ? 4 : 3
    }
  })

/** Whether pg_stat_statements can be used here, and if not, why. */
export const statStatements = (url: string): Promise<{ readonly available: boolean; readonly note: string }> =>
  withClient(url, async (c) => {
    const preload = (await c.query("SHOW shared_preload_libraries")).rows[0].shared_preload_libraries as string
    if (!preload.split(",").map((s) => s.trim()).includes("pg_stat_statements")) {
      return { available: false, note: `pg_stat_statements is not in shared_preload_libraries ("${preload}") on this server` }
    }
    try {
      await c.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
      await c.query("SELECT count(*) FROM pg_stat_statements")
      return { available: true, note: "pg_stat_statements" }
    } catch (e) {
      return { available: false, note: `pg_stat_statements: ${(e as Error).message}` }
    }
  })

/** Connections to this database right now (to watch the server's connection limit). */
export const connections = (url: string): Promise<{ readonly here: number; readonly max: number; readonly all: number }> =>
  withClient(url, async (c) => {
    const r = await c.query(
      "SELECT count(*) FILTER (WHERE datname = current_database()) AS here, count(*) AS all, current_setting('max_connections')::int AS max FROM pg_stat_activity"
    )
    return { here: Number(r.rows[0].here), all: Number(r.rows[0].all), max: Number(r.rows[0].max) }
  })

/** Applies the library's migrations (members then only check the schema). */
export const migrate = (url: string): Promise<unknown> =>
  Effect.runPromise(
    Migrations.run.pipe(Effect.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 1 })), Effect.scoped)
  )

export const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

/** Nearest-rank percentile. */
export const percentile = (xs: ReadonlyArray<number>, p: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!
}
