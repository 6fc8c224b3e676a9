/**
 * A database of the benchmark's own: on `DATABASE_URL`'s server when set, else on an embedded
 * PostgreSQL started here. A dedicated database keeps pg_stat_database counters clean.
 */
import pg from "pg"
import { startEmbeddedPostgres } from "../../src/internal/EmbeddedPostgres.js"

export interface BenchDatabase {
  readonly url: string
  readonly server: string
  readonly close: () => Promise<void>
}

export const benchDatabase = async (name: string): Promise<BenchDatabase> => {
  let base = process.env["DATABASE_URL"]
  let stop = async () => {}
  let server = "DATABASE_URL"
  if (base === undefined || base === "") {
    const embedded = await startEmbeddedPostgres()
    base = embedded.url
    stop = embedded.stop
    server = "embedded PostgreSQL"
  }
  const admin = new pg.Client({ connectionString: base })
  await admin.connect()
  const version = (await admin.query("SHOW server_version")).rows[0].server_version
  await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`)
  await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`)
  await admin.end()
  const url = new URL(base)
  url.pathname = `/${name}`
  return {
    url: url.toString(),
    server: `${server} (PostgreSQL ${version})`,
    close: async () => {
      const c = new pg.Client({ connectionString: base })
      await c.connect()
      await c.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`)
      await c.end()
      await stop()
    }
  }
}

/** Committed transactions and statements so far in one database (pg_stat views lag: force a flush). */
export const xactCommits = async (url: string): Promise<number> => {
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  const r = await c.query("SELECT xact_commit::bigint AS n FROM pg_stat_database WHERE datname = current_database()")
  await c.end()
  return Number(r.rows[0].n)
}

export const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

export const percentile = (xs: ReadonlyArray<number>, p: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!
}
