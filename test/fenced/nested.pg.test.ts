/**
 * `fenced` inside an app transaction (issue 17, item 2): it becomes a savepoint; the timeouts it sets
 * for its server-side backstop do not leak into the rest of the app's transaction when the block
 * fails, and after a block that succeeded (its locks then held until the app's COMMIT) they are at
 * most the backstop. And the commit-time check then runs at the app's own COMMIT.
 */
import type { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Option } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture } from "./support.js"

const hasTransactionTimeout = (sql: SqlClient.SqlClient) =>
  Effect.map(
    sql<{ has17: boolean }>`SELECT current_setting('transaction_timeout', true) IS NOT NULL AS has17`,
    (rows) => rows[0]!.has17
  )

const readTimeouts = (sql: SqlClient.SqlClient) =>
  Effect.map(
    sql<{ st: string; idle: string; tx: string | null }>`
      SELECT current_setting('statement_timeout') AS st,
             current_setting('idle_in_transaction_session_timeout') AS idle,
             current_setting('transaction_timeout', true) AS tx`,
    (rows) => rows[0]!
  )

it.live("inside an app transaction, the app's timeouts are as they were after a fenced block that failed, was stale or timed out", () =>
  Effect.gen(function*() {
    const t = yield* fixture("fence-nested")
    const has17 = yield* hasTransactionTimeout(t.sql)
    const read = readTimeouts(t.sql)
    const app = { st: "7s", idle: "8s", tx: has17 ? "9s" : null }
    const seen = yield* t.sql.withTransaction(Effect.gen(function*() {
      yield* t.sql`SET LOCAL statement_timeout = '7s'`
      yield* t.sql`SET LOCAL idle_in_transaction_session_timeout = '8s'`
      if (has17) yield* t.sql`SELECT set_config('transaction_timeout', '9s', true)`
      const failed = yield* Fenced.fencedWith(t.target, Effect.zipRight(read, Effect.fail("app error" as const))).pipe(
        Effect.flip
      )
      const afterFailure = yield* read
      const stale = yield* Fenced.fencedWith({ ...t.target, epoch: 6 }, read).pipe(Effect.flip)
      const afterStale = yield* read
      const timedOut = yield* Fenced.fencedWith(t.target, t.sql`SELECT pg_sleep(1)`, { timeout: "200 millis" }).pipe(
        Effect.flip
      )
      const afterTimeout = yield* read
      return { failed, afterFailure, stale, afterStale, timedOut, afterTimeout }
    }))
    expect(seen.failed).toBe("app error")
    expect(seen.afterFailure).toEqual(app)
    expect(seen.stale._tag).toBe("StaleAssignment")
    expect(seen.afterStale).toEqual(app)
    expect(seen.timedOut._tag).toBe("FenceTimeout")
    expect(seen.afterTimeout).toEqual(app)
  }).pipe(Effect.scoped, Effect.provide(PgLive)))

// The block's locks stay held until the app's transaction ends, and every change of the group waits
// for them: the rest of the transaction is bounded by the backstop (test/fenced/nestedBound.pg.test.ts
// shows what for).
it.live("inside an app transaction, after a fenced block that succeeded, the app's timeouts are at most the backstop; tighter ones are kept", () =>
  Effect.gen(function*() {
    const t = yield* fixture("fence-nested-bound")
    const has17 = yield* hasTransactionTimeout(t.sql)
    const read = readTimeouts(t.sql)
    const run = (st: string, idle: string) =>
      t.sql.withTransaction(Effect.gen(function*() {
        yield* t.sql`SELECT set_config('statement_timeout', ${st}, true)`
        yield* t.sql`SELECT set_config('idle_in_transaction_session_timeout', ${idle}, true)`
        if (has17) yield* t.sql`SELECT set_config('transaction_timeout', '9s', true)`
        const inside = yield* Fenced.fencedWith(t.target, read, { timeout: "3 seconds" })
        const after = yield* read
        // A second block starts from the bounded values and leaves them as they are.
        yield* Fenced.fencedWith(t.target, read, { timeout: "3 seconds" })
        return { inside, after, afterSecond: yield* read }
      }))
    const tx = has17 ? "9s" : null // transaction_timeout (PostgreSQL 17+): the app's, put back
    // Inside the fence: its backstop, timeout + 1 s.
    const looser = yield* run("7s", "8s")
    expect(looser.inside).toEqual({ st: "4s", idle: "4s", tx: has17 ? "4s" : null })
    expect(looser.after).toEqual({ st: "4s", idle: "4s", tx })
    expect(looser.afterSecond).toEqual({ st: "4s", idle: "4s", tx })
    // 0 (no bound, the server's default) becomes the backstop.
    const off = yield* run("0", "0")
    expect(off.after).toEqual({ st: "4s", idle: "4s", tx })
    // The app's own tighter values are kept.
    const tighter = yield* run("700ms", "3s")
    expect(tighter.after).toEqual({ st: "700ms", idle: "3s", tx })
    expect(tighter.afterSecond).toEqual({ st: "700ms", idle: "3s", tx })
    const mixed = yield* run("0", "2500ms")
    expect(mixed.after).toEqual({ st: "4s", idle: "2500ms", tx })
  }).pipe(Effect.scoped, Effect.provide(PgLive)))

it.live("inside an app transaction, the commit-time check runs at the app's COMMIT: a lease that expired by then fails it", () =>
  Effect.gen(function*() {
    const t = yield* fixture("fence-nested-commit")
    // Control: a nested fenced write commits with the app's transaction.
    yield* t.sql.withTransaction(Fenced.fencedWith(t.target, t.insert("control")))
    expect(yield* t.notes).toEqual(["control"])
    yield* t.setLease(300)
    const exit = yield* t.sql.withTransaction(
      Effect.zipRight(Fenced.fencedWith(t.target, t.insert("nested")), t.sql`SELECT pg_sleep(0.5)`)
    ).pipe(Effect.exit)
    // @effect/sql's withTransaction turns a failed COMMIT into a defect; its SQLSTATE is the fence's.
    expect(Exit.isFailure(exit)).toBe(true)
    const defect = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.dieOption(exit.cause)) : undefined
    expect((defect as { cause?: { code?: string } } | undefined)?.cause?.code).toBe(Fenced.commitCheckSqlState)
    expect(yield* t.notes).toEqual(["control"])
  }).pipe(Effect.scoped, Effect.provide(PgLive)))
