/**
 * A fenced block whose savepoint is lost (its body rolled back past it; a concurrent block's rollback
 * took it), on an app's wrapper of the transaction connection (no @effect/sql-pg client on it to
 * end): the block ends the transaction on that connection itself (internal/pg/transaction.ts,
 * `endTransaction`). Two adversarial reviews of that, each a test here that failed before its fix:
 *
 * - a wrapper that prepares every statement (the extended protocol takes one statement per message):
 *   with `ROLLBACK` and `BEGIN` sent one by one, a concurrent block's write queued meanwhile ran
 *   between them, outside any transaction, and committed without its block's locks (G6). Now
 *   `ROLLBACK AND CHAIN` ends the transaction and opens the next in one step;
 * - a session whose role was set (`SET ROLE`, as `options=-c role=...` or `ALTER ROLE ... SET role`
 *   do) may not terminate the login's backend: the termination failed, the backend lived on in an
 *   aborted transaction, whose COMMIT PostgreSQL answers with ROLLBACK and no error: the app was told
 *   its transaction committed. Now the session's own user is put back first.
 */
import { SqlClient } from "@effect/sql"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Layer, Redacted } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { databaseUrl, randomGroupId } from "../support/Database.js"
import { serialised } from "../support/Grants.js"
import { fixture } from "./support.js"

type PgLike = { query: (q: object, cb: (err: unknown, res: { rows?: Array<unknown> }) => void) => void }

/** A wrapper that sends every statement prepared (the extended protocol), carrying no `pg`. */
const extendedWrapper = (conn: Connection, onStatement: (sql: string) => void): Connection => {
  const client = (conn as unknown as { pg: PgLike }).pg
  const extended = (sql: string, params: ReadonlyArray<unknown>) =>
    Effect.async<ReadonlyArray<any>, SqlError>((resume) => {
      onStatement(sql)
      client.query({ text: sql, values: params, queryMode: "extended" }, (err, res) => {
        if (err) resume(Effect.fail(new SqlError({ cause: err, message: "Failed to execute statement" })))
        else resume(Effect.succeed(res.rows ?? []))
      })
    })
  return {
    execute: (sql, params, transformRows) => transformRows ? Effect.map(extended(sql, params), transformRows) : extended(sql, params),
    executeRaw: (sql, params) => extended(sql, params),
    executeStream: (sql, params, transformRows) => conn.executeStream(sql, params, transformRows),
    executeValues: (sql, params) => conn.executeValues(sql, params),
    executeUnprepared: (sql, params, transformRows) =>
      transformRows ? Effect.map(extended(sql, params), transformRows) : extended(sql, params)
  } as Connection
}

const plainWrapper = (conn: Connection): Connection => ({
  execute: (sql, params, transformRows) => conn.execute(sql, params, transformRows),
  executeRaw: (sql, params) => conn.executeRaw(sql, params),
  executeStream: (sql, params, transformRows) => conn.executeStream(sql, params, transformRows),
  executeValues: (sql, params) => conn.executeValues(sql, params),
  executeUnprepared: (sql, params, transformRows) => conn.executeUnprepared(sql, params, transformRows)
})

const pool = (maxConnections: number) =>
  Layer.unwrapEffect(Effect.sync(() =>
    PgClient.layer({ url: Redacted.make(databaseUrl()), applicationName: `modulo-group-test-${process.pid}`, maxConnections })
  ))

it.live("one statement per message: a concurrent block's write queued while the transaction ends commits nothing", () =>
  Effect.gen(function*() {
    const t = yield* fixture("lost-extended")
    const sql = t.sql
    // The transaction's end has begun (its first statement is on its way): block A's write is queued then.
    const ending = yield* Deferred.make<void>()
    const exit = yield* sql.withTransaction(Effect.gen(function*() {
      const [conn, depth] = yield* SqlClient.TransactionConnection
      const wrapped = extendedWrapper(conn, (s) => {
        if (s === "ROLLBACK AND CHAIN" || s === "ROLLBACK") Deferred.unsafeDone(ending, Exit.void)
      })
      yield* Effect.gen(function*() {
        yield* sql`SAVEPOINT before_block`
        yield* Effect.all([
          Effect.exit(Fenced.fencedWith(t.target, Effect.zipRight(Deferred.await(ending), t.insert("A, written in block A")), { timeout: "5 seconds" })),
          // Block B, once A's locks are in: its body rolls back past its start (and A's).
          Effect.zipRight(Effect.sleep("300 millis"), Effect.exit(Fenced.fencedWith(t.target, Effect.gen(function*() {
            yield* t.insert("B inside")
            yield* sql`ROLLBACK TO SAVEPOINT before_block`
          }))))
        ], { concurrency: 2 })
      }).pipe(Effect.provideService(SqlClient.TransactionConnection, [wrapped, depth] as const))
    })).pipe(Effect.exit)
    expect(Exit.isFailure(exit)).toBe(true)
    expect(yield* t.notes).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(pool(10))) as Effect.Effect<void, unknown>, 30_000)

it.live("a session whose role was set: the app that catches the block's failure is still told its transaction failed", () =>
  Effect.gen(function*() {
    const t = yield* fixture("lost-role")
    const sql = t.sql
    const role = randomGroupId("app").replace(/-/g, "_")
    yield* Effect.acquireRelease(
      Effect.gen(function*() {
        yield* sql.unsafe(`CREATE ROLE ${role}`)
        yield* sql.unsafe(serialised(`GRANT USAGE ON SCHEMA modulo_group TO ${role}`))
        yield* sql.unsafe(serialised(`GRANT ALL ON ALL TABLES IN SCHEMA modulo_group TO ${role}`))
        yield* sql.unsafe(serialised(`GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA modulo_group TO ${role}`))
        yield* sql.unsafe(serialised(`GRANT ALL ON TABLE "${t.table}" TO ${role}`))
      }),
      () => Effect.orDie(Effect.zipRight(sql.unsafe(serialised(`DROP OWNED BY ${role}`)), sql.unsafe(`DROP ROLE ${role}`)))
    )
    // On the pool's one connection, for the session (not the transaction).
    yield* sql.unsafe(`SET ROLE ${role}`)
    const exit = yield* sql.withTransaction(Effect.gen(function*() {
      const [conn, depth] = yield* SqlClient.TransactionConnection
      yield* Effect.gen(function*() {
        yield* t.insert("the app's own row, before the block")
        yield* sql`SAVEPOINT before_block`
        yield* Effect.exit(Fenced.fencedWith(t.target, Effect.gen(function*() {
          yield* t.insert("inside")
          yield* sql`ROLLBACK TO SAVEPOINT before_block`
          yield* t.insert("after the rollback")
        })))
      }).pipe(Effect.provideService(SqlClient.TransactionConnection, [plainWrapper(conn), depth] as const))
    })).pipe(Effect.exit)
    yield* Effect.ignore(sql`RESET ROLE`)
    expect(Exit.isFailure(exit)).toBe(true)
    expect(yield* t.notes).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(pool(1))) as Effect.Effect<void, unknown>, 30_000)
