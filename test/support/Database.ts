/**
 * The database every test file shares, as a layer, plus unique group ids so
 * files running in parallel against it never see each other's rows.
 */
import { PgClient } from "@effect/sql-pg"
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql"
import { Duration, Effect, Layer, ManagedRuntime, Redacted, Schedule } from "effect"
import { randomBytes } from "node:crypto"
import pg from "pg"
import { afterAll, inject } from "vitest"

/** URL chosen by `test/setup/globalSetup.ts`; the env fallback serves spawned processes. */
export const databaseUrl = (): string => {
  const url = inject("databaseUrl") ?? process.env["DATABASE_URL_RESOLVED"]
  if (url === undefined || url === "") {
    throw new Error("no test database: run the tests through vitest (test/setup/globalSetup.ts provides it)")
  }
  return url
}

/**
 * A pooled client on the test database; read lazily so importing this module needs no database. Its
 * application name carries the test process's pid: files run in parallel forks, and a test that looks
 * at pg_stat_activity can see only its own fork's backends.
 */
export const PgLive: Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, SqlError.SqlError> = Layer.unwrapEffect(
  Effect.sync(() =>
    PgClient.layer({
      url: Redacted.make(databaseUrl()),
      applicationName: `modulo-group-test-${process.pid}`,
      connectTimeout: "10 seconds"
    })
  )
)

/**
 * A fresh pool on the test database (or `url`) whose every session starts with `options`
 * (`-c name=value`, as a database's or role's default would set them), named `applicationName`; read
 * lazily, as `PgLive`.
 */
export const clientWithOptions = (
  options: string,
  applicationName: string,
  extra: { readonly url?: string; readonly maxConnections?: number } = {}
): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, SqlError.SqlError> =>
  Layer.unwrapEffect(Effect.sync(() => {
    const url = new URL(extra.url ?? databaseUrl())
    url.searchParams.set("options", options)
    return Layer.fresh(PgClient.layer({ url: Redacted.make(url.toString()), applicationName, maxConnections: extra.maxConnections }))
  }))

/**
 * One pool for the tests of a file or `describe` block (`Effect.provide(db)` in each), closed after
 * them. What `it.layer(PgLive)` gives, without its side effect on vitest's shared `it`
 * (test/setup/pristineIt.ts). Built on first use.
 */
export const sharedRuntime = (): ManagedRuntime.ManagedRuntime<PgClient.PgClient | SqlClient.SqlClient, SqlError.SqlError> => {
  const runtime = ManagedRuntime.make(PgLive)
  afterAll(() => runtime.dispose())
  return runtime
}

/**
 * How many backends of this pool's application (files run in parallel: each fork's pool has its
 * own application name) wait for a lock in a statement whose text matches `pattern` (LIKE).
 */
export const ownLockWaiters = (pattern: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<{ n: string }>`
        SELECT count(*) AS n FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'
           AND application_name = current_setting('application_name')
           AND query LIKE ${pattern}`,
      ([r]) => Number(r!.n)
    ))

/** Polls (every 5 ms, for 10 s at most) until `ownLockWaiters(pattern)` is not 0: the interleaving a test forces has happened. */
export const untilOwnLockWait = (pattern: string) =>
  ownLockWaiters(pattern).pipe(
    Effect.flatMap((n) => (n > 0 ? Effect.void : Effect.fail("not yet"))),
    Effect.retry(Schedule.spaced(Duration.millis(5)).pipe(Schedule.upTo(Duration.seconds(10)))),
    Effect.orDie
  )

/**
 * The store that wrote a member's row (migration 0012: `writer`), for a test that sends the store's
 * statements itself on that row; a row without one takes any.
 */
export const writerOf = (memberId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<{ writer: string | null }>`SELECT writer::text AS writer FROM modulo_group.members WHERE member_id = ${memberId}`,
      (rows) => rows[0]?.writer ?? "00000000-0000-0000-0000-000000000000"
    ))

/** A group id no other test (or earlier run) uses: `test-<prefix>-<random hex>`. */
export const randomGroupId = (prefix: string): string => `test-${prefix}-${randomBytes(6).toString("hex")}`

/**
 * A database of a suite's own on the test server (`mg_<prefix>_<random hex>`), with a client layer
 * for it; dropped (connections forced out) when the scope closes.
 */
export const ownDatabase = (
  prefix: string,
  options: { readonly maxConnections: number; readonly applicationName?: string }
) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const name = `mg_${randomGroupId(prefix).replace(/-/g, "_")}`
      yield* sql`CREATE DATABASE ${sql(name)}`
      const url = new URL(databaseUrl())
      url.pathname = `/${name}`
      return {
        name,
        url: url.toString(),
        layer: PgClient.layer({ url: Redacted.make(url.toString()), ...options })
      }
    }),
    ({ name }) =>
      Effect.flatMap(SqlClient.SqlClient, (sql) => sql`DROP DATABASE IF EXISTS ${sql(name)} WITH (FORCE)`).pipe(Effect.orDie)
  )

/** A group's epoch and size now (undefined: no such group). */
export const groupEpoch = (groupId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<{ epoch: string; size: number }>`SELECT epoch, size FROM modulo_group.groups WHERE group_id = ${groupId}`,
      (r) => (r[0] === undefined ? undefined : { epoch: Number(r[0].epoch), size: Number(r[0].size) })
    ))

/** The member row of `memberId` as the identity tests compare it (group, index, name, writer, live). */
export const memberRowOf = (memberId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<{ group_id: string; idx: number | null; name: string; writer: string | null; live: boolean }>`
        SELECT group_id, idx, name, writer::text AS writer, lease_expires_at > now() AS live
          FROM modulo_group.members WHERE member_id = ${memberId}`,
      (rows) => rows[0]
    ))

/**
 * A raw `pg` session of a test's own (a lock holder, a watcher, a notifier), outside every pool and
 * every library wrapper: connected in the scope, ended when it closes, and its connection's `error`
 * events swallowed (a test that terminates backends must not crash its fork with an unhandled one).
 */
export const rawSession = (options: { readonly url?: string; readonly name?: string } = {}) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const client = new pg.Client({ connectionString: options.url ?? databaseUrl(), application_name: options.name })
      client.on("error", () => undefined)
      await client.connect()
      return client
    }),
    (client) => Effect.promise(() => client.end().catch(() => undefined))
  )

/** `client.query` as an effect (a failure is a defect: the test's own statement). */
export const rawQuery = <R extends pg.QueryResultRow = pg.QueryResultRow>(
  client: pg.Client,
  text: string,
  values?: ReadonlyArray<unknown>
) => Effect.promise(() => client.query<R>(text, values as Array<unknown> | undefined))
