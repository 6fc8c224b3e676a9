/**
 * A fenced body that rolls back past the fence's start: `ROLLBACK TO SAVEPOINT` of an app savepoint
 * taken before a nested fenced block, or of the fence's own savepoint. The fence's locks, backstop
 * settings and first check row go with it, and the body's later writes ran unfenced. An adversarial
 * review (suspected, then reproduced here): with the app's own timeouts tight (at most the backstop)
 * the fence's end saw nothing wrong, and a change of the group could commit beside the rest of the
 * app's transaction. The fence now marks its start with a setting of its own, local to the
 * transaction, and fails with `FenceBroken` when the body's end finds it undone. A body's own nested
 * transaction (a savepoint inside the block) that rolls back, and a fenced block nested in another's
 * body, are not that.
 */
import { SqlClient } from "@effect/sql"
import type { Connection } from "@effect/sql/SqlConnection"
import { expect, it } from "@effect/vitest"
import { PgClient } from "@effect/sql-pg"
import { Cause, Effect, Either, Exit, Layer, Redacted } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { databaseUrl, PgLive } from "../support/Database.js"
import { fixture } from "./support.js"
import { gated } from "./interleave.js"

type Fixture = Effect.Effect.Success<ReturnType<typeof fixture>>

/** A body that writes, rolls back to the app's savepoint `before_block` (taken before the block), writes again, then `after`. */
const pastTheBlock = <E = never>(t: Fixture, after: Effect.Effect<unknown, E> = Effect.void) =>
  Effect.gen(function*() {
    yield* t.insert("inside")
    yield* t.sql`ROLLBACK TO SAVEPOINT before_block`
    yield* t.insert("after the rollback")
    yield* after
  })

it.live("a body that rolls back to an app savepoint from before the block: the block is refused, nothing of the app's transaction commits", () =>
  Effect.gen(function*() {
    const t = yield* fixture("fence-rollback-app")
    const seen: Array<string> = []
    const exit = yield* t.sql.withTransaction(Effect.gen(function*() {
      // Tight app timeouts, within the backstop: the settings alone do not tell.
      yield* t.sql`SET LOCAL statement_timeout = '500ms'`
      yield* t.sql`SET LOCAL idle_in_transaction_session_timeout = '500ms'`
      yield* t.sql`SAVEPOINT before_block`
      const result = yield* Effect.either(Fenced.fencedWith(
        t.target,
        pastTheBlock(t),
        { timeout: "300 millis" }
      ))
      seen.push(Either.isLeft(result) ? result.left._tag : "committed")
    })).pipe(Effect.exit)
    // The fence says FenceBroken, then @effect/sql's rollback to the block's savepoint, which the body's
    // rollback removed, fails: the fence ends the connection, and the app's transaction dies (its own
    // ROLLBACK fails on the ended connection). Before: the block succeeded and "after the rollback"
    // committed, written outside the fence's locks.
    expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
    expect(seen).toEqual([])
    expect(yield* t.notes).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive)))

it.live("a body that rolls back to the fence's own savepoint fails with FenceBroken", () =>
  Effect.gen(function*() {
    const t = yield* fixture("fence-rollback-own")
    // The block's savepoint has a name of its own (internal/pg/transaction.ts): seen on its way out.
    let savepoint: string | undefined
    const result = yield* t.sql.withTransaction(Effect.gen(function*() {
      yield* t.sql`SET LOCAL statement_timeout = '500ms'`
      yield* t.sql`SET LOCAL idle_in_transaction_session_timeout = '500ms'`
      const [conn, depth] = yield* SqlClient.TransactionConnection
      const seen = gated(conn, (statement) =>
        Effect.sync(() => {
          if (statement.startsWith("SAVEPOINT ")) savepoint ??= statement.slice("SAVEPOINT ".length)
        }))
      return yield* Effect.either(Fenced.fencedWith(
        t.target,
        Effect.zipRight(t.insert("inside"), Effect.suspend(() => t.sql.unsafe(`ROLLBACK TO SAVEPOINT ${savepoint}`))),
        { timeout: "300 millis" }
      )).pipe(Effect.provideService(SqlClient.TransactionConnection, [seen, depth] as const))
    }))
    expect(savepoint).toMatch(/^modulo_group_/)
    expect(Either.isLeft(result) && result.left._tag).toBe("FenceBroken")
    expect(yield* t.notes).toEqual([])
    // (TransactionConnection is there inside withTransaction; its type does not say so.)
  }).pipe(Effect.scoped, Effect.provide(PgLive)) as Effect.Effect<void, unknown>)

it.live("a body's own nested transaction that rolls back, and a block nested in a block, still commit", () =>
  Effect.gen(function*() {
    const t = yield* fixture("fence-rollback-inner")
    yield* Fenced.fencedWith(
      t.target,
      Effect.gen(function*() {
        yield* t.insert("kept")
        yield* Effect.either(t.sql.withTransaction(Effect.zipRight(t.insert("undone"), Effect.fail("no"))))
        yield* Fenced.fencedWith(t.target, t.insert("inner block"))
        yield* t.insert("after the inner block")
      })
    )
    expect(yield* t.notes).toEqual(["after the inner block", "inner block", "kept"])
  }).pipe(Effect.scoped, Effect.provide(PgLive)))

it.live("a body that rolls back past the block, caught by the app inside its transaction: the app's transaction cannot commit", () =>
  Effect.gen(function*() {
    const t = yield* fixture("fence-rollback-caught")
    // Two misuses at once (docs/fencing.md): the body rolls back past the block's start and writes,
    // then takes a savepoint of its own; the app catches the block's defect (its rollback to the
    // block's savepoint fails, 3B001) and rolls back to that savepoint, which makes the transaction
    // healthy again with the body's write in it. Before: "after the rollback" committed, written
    // without the fence's locks. Now the fence ends the connection when its savepoint is gone.
    const caught: Array<string> = []
    const exit = yield* t.sql.withTransaction(Effect.gen(function*() {
      yield* t.sql`SAVEPOINT before_block`
      const block = yield* Effect.exit(Fenced.fencedWith(
        t.target,
        pastTheBlock(t, t.sql`SAVEPOINT app_after`)
      ))
      caught.push(Exit.isFailure(block) ? "failed" : "succeeded")
      yield* t.sql`ROLLBACK TO SAVEPOINT app_after`
    })).pipe(Effect.exit)
    expect(caught).toEqual(["failed"])
    expect(Exit.isFailure(exit)).toBe(true)
    expect(yield* t.notes).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive)))

/** An app's wrapper of a connection (statement logging, as tracing would): a plain object, no `pg` client on it. */
const wrapperOf = (conn: Connection, logged: Array<string>): Connection => ({
  execute: (sql, params, transformRows) => (logged.push(sql), conn.execute(sql, params, transformRows)),
  executeRaw: (sql, params) => (logged.push(sql), conn.executeRaw(sql, params)),
  executeStream: (sql, params, transformRows) => (logged.push(sql), conn.executeStream(sql, params, transformRows)),
  executeValues: (sql, params) => (logged.push(sql), conn.executeValues(sql, params)),
  executeUnprepared: (sql, params, transformRows) => (logged.push(sql), conn.executeUnprepared(sql, params, transformRows))
})

/** A pool of one connection: whatever the block does when its savepoint is lost needs no other one. */
const poolOfOne = Layer.unwrapEffect(Effect.sync(() =>
  PgClient.layer({ url: Redacted.make(databaseUrl()), applicationName: `modulo-group-test-${process.pid}`, maxConnections: 1 })
))

it.live("the same on an app's wrapper of the transaction connection (no pg client to end), on a pool of one connection", () =>
  Effect.gen(function*() {
    // A review of the fix above: it ended @effect/sql-pg's client, which a wrapper (statement logging,
    // tracing: a plain object forwarding `Connection`'s methods) does not carry; nothing was ended, the
    // log said it was, and "after the rollback" committed again. The next version terminated the
    // backend from another connection of the pool: with the pool's only connection held by the
    // transaction, that failed (and the write committed) or waited for ever (the next review). Now the
    // block rolls the transaction back on that connection and leaves a new one aborted.
    const t = yield* fixture("fence-rollback-wrapped")
    const logged: Array<string> = []
    const wrap = (conn: Connection) => wrapperOf(conn, logged)
    const caught: Array<string> = []
    const exit = yield* t.sql.withTransaction(Effect.gen(function*() {
      const [conn, depth] = yield* SqlClient.TransactionConnection
      yield* Effect.gen(function*() {
        yield* t.sql`SAVEPOINT before_block`
        const block = yield* Effect.exit(Fenced.fencedWith(t.target, pastTheBlock(t, t.sql`SAVEPOINT app_after`)))
        caught.push(Exit.isFailure(block) ? "failed" : "succeeded")
        // The app's rollback to its own savepoint fails now (the transaction it was in is gone).
        yield* Effect.exit(t.sql`ROLLBACK TO SAVEPOINT app_after`)
        yield* t.insert("after the catch")
      }).pipe(Effect.provideService(SqlClient.TransactionConnection, [wrap(conn), depth] as const))
    })).pipe(Effect.exit)
    expect(caught).toEqual(["failed"])
    expect(Exit.isFailure(exit)).toBe(true)
    expect(yield* t.notes).toEqual([])
    // In one message: nothing of another fiber between the ROLLBACK and the BEGIN.
    expect(logged.filter((l) => l.startsWith("ROLLBACK AND CHAIN; RESET SESSION AUTHORIZATION; RESET ROLE; "))).toHaveLength(1)
    expect(logged).not.toContain("ROLLBACK AND CHAIN") // not one statement at a time
  }).pipe(Effect.scoped, Effect.provide(poolOfOne)) as Effect.Effect<void, unknown>, 30_000)

it.live("a block nested in a fenced body that rolls back past it, on a pool of one connection: the outer block fails, nothing commits", () =>
  Effect.gen(function*() {
    // The same review: the outer body's connection is the library's own wrapper (statements run to
    // their end), which carried no client either, and the inner block needed a second connection.
    const t = yield* fixture("fence-rollback-nested")
    const inner: Array<string> = []
    const outer = yield* Effect.exit(Fenced.fencedWith(t.target, Effect.gen(function*() {
      yield* t.sql`SAVEPOINT before_block`
      const block = yield* Effect.exit(Fenced.fencedWith(t.target, pastTheBlock(t)))
      inner.push(Exit.isFailure(block) ? "failed" : "succeeded")
    })))
    expect(inner).toEqual(["failed"])
    expect(Exit.isFailure(outer)).toBe(true)
    expect(yield* t.notes).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(poolOfOne)) as Effect.Effect<void, unknown>, 30_000)

it.live("on an app's wrapper, an app that catches the block's failure and sends nothing more is told its transaction failed", () =>
  Effect.gen(function*() {
    // A review: the block left the transaction aborted, whose COMMIT PostgreSQL answers with ROLLBACK
    // and no error: the app's withTransaction succeeded, its own write from before the block gone. On
    // @effect/sql-pg's own connection (client ended) it failed. The backend now ends itself too.
    const t = yield* fixture("fence-rollback-told")
    const exit = yield* t.sql.withTransaction(Effect.gen(function*() {
      const [conn, depth] = yield* SqlClient.TransactionConnection
      const wrapped = wrapperOf(conn, [])
      yield* Effect.gen(function*() {
        yield* t.insert("the app's own row, before the block")
        yield* t.sql`SAVEPOINT before_block`
        yield* Effect.exit(Fenced.fencedWith(t.target, pastTheBlock(t)))
      }).pipe(Effect.provideService(SqlClient.TransactionConnection, [wrapped, depth] as const))
    })).pipe(Effect.exit)
    expect(Exit.isFailure(exit)).toBe(true)
    expect(yield* t.notes).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive)) as Effect.Effect<void, unknown>, 30_000)
