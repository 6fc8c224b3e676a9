/**
 * `fenced` inside an app transaction (issue 17, item 2): it becomes a savepoint, and the timeouts it
 * sets for its server-side backstop must not leak into the rest of the app's transaction. And the
 * commit-time check then runs at the app's own COMMIT.
 */
import { expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Option } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture } from "./support.js"

it.live("inside an app transaction, the app's timeouts are as they were after fenced: on success, failure and stale", () =>
  Effect.gen(function*() {
    const t = yield* fixture("fence-nested")
    const [{ has17 }] = (yield* t.sql<{ has17: boolean }>`
      SELECT current_setting('transaction_timeout', true) IS NOT NULL AS has17`) as [{ has17: boolean }]
    const read = Effect.map(
      t.sql<{ st: string; idle: string; tx: string | null }>`
        SELECT current_setting('statement_timeout') AS st,
               current_setting('idle_in_transaction_session_timeout') AS idle,
               current_setting('transaction_timeout', true) AS tx`,
      (rows) => rows[0]!
    )
    const app = { st: "7s", idle: "8s", tx: has17 ? "9s" : null }
    const seen = yield* t.sql.withTransaction(Effect.gen(function*() {
      yield* t.sql`SET LOCAL statement_timeout = '7s'`
      yield* t.sql`SET LOCAL idle_in_transaction_session_timeout = '8s'`
      if (has17) yield* t.sql`SELECT set_config('transaction_timeout', '9s', true)`
      const inside = yield* Fenced.fencedWith(t.target, read, { timeout: "3 seconds" })
      const afterSuccess = yield* read
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
      return { inside, afterSuccess, failed, afterFailure, stale, afterStale, timedOut, afterTimeout }
    }))
    // Inside the fence: its backstop, timeout + 1 s.
    expect(seen.inside).toEqual({ st: "4s", idle: "4s", tx: has17 ? "4s" : null })
    expect(seen.afterSuccess).toEqual(app)
    expect(seen.failed).toBe("app error")
    expect(seen.afterFailure).toEqual(app)
    expect(seen.stale._tag).toBe("StaleAssignment")
    expect(seen.afterStale).toEqual(app)
    expect(seen.timedOut._tag).toBe("FenceTimeout")
    expect(seen.afterTimeout).toEqual(app)
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
