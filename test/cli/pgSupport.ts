/**
 * Plain `pg` helpers for the CLI tests that need a database of their own (schema states that would
 * disturb other test files on the shared one) and for choreographing concurrent transactions.
 */
import { randomBytes } from "node:crypto"
import pg from "pg"
import { databaseUrl } from "../support/Database.js"
import { serialised } from "../support/Grants.js"

export const connect = async (url: string): Promise<pg.Client> => {
  const client = new pg.Client({ connectionString: url, application_name: "modulo-group-test" })
  client.on("error", () => undefined)
  await client.connect()
  return client
}

/** Drops test roles and what they own, on `admin`; best effort (a role may not exist). */
export const dropRoles = async (admin: pg.Client, ...roles: ReadonlyArray<string>): Promise<void> => {
  for (const role of roles) {
    await admin.query(serialised(`DROP OWNED BY "${role}"`)).catch(() => undefined)
    await admin.query(`DROP ROLE IF EXISTS "${role}"`).catch(() => undefined)
  }
}

export interface ScratchDatabase {
  readonly name: string
  readonly url: string
  readonly drop: () => Promise<void>
}

/** A database of its own on the test server, dropped by `drop`. */
export const scratchDatabase = async (): Promise<ScratchDatabase> => {
  const name = `mg_cli_${randomBytes(6).toString("hex")}`
  const admin = await connect(databaseUrl())
  try {
    await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(name)}`)
  } finally {
    await admin.end()
  }
  const url = new URL(databaseUrl())
  url.pathname = `/${name}`
  return {
    name,
    url: url.toString(),
    drop: async () => {
      const c = await connect(databaseUrl())
      try {
        await c.query(`DROP DATABASE IF EXISTS ${c.escapeIdentifier(name)} WITH (FORCE)`)
      } finally {
        await c.end()
      }
    }
  }
}

/** Polls until `predicate` holds (or throws after `timeoutMs`). */
export const eventually = async (what: string, predicate: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Whether a backend of the CLI (`application_name` modulo-group-cli) on `database` waits on a lock. */
export const cliWaitsOnLock = async (client: pg.Client, database: string): Promise<boolean> => {
  const r = await client.query(
    `SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = $1 AND application_name = 'modulo-group-cli' AND wait_event_type = 'Lock'`,
    [database]
  )
  return r.rows[0].n > 0
}
