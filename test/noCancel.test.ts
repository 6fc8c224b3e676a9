/**
 * internal/pg/noCancel.ts, on the TestClock: a caller stops *waiting* at its timeout while the
 * statement it started runs to its end (never interrupted: `@effect/sql-pg` would cancel it with
 * `pg_cancel_backend`, unsafe behind a pooler), and nothing after that statement is sent (one renewal
 * per member at a time, up to a patience, is the batcher's: test/batch/). The same on real PgBouncer:
 * test/pgbouncer/nocancel.pg.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Fiber, Ref, TestClock } from "effect"
import { awaitAtMost } from "../src/internal/pg/noCancel.js"

/** A "statement": uninterruptible, takes `ms` of (Test)Clock time, records its start and end. */
const statement = (log: Ref.Ref<Array<string>>, name: string, ms: number) =>
  Effect.uninterruptible(
    Effect.zipRight(
      Ref.update(log, (l) => [...l, `${name} sent`]),
      Effect.zipRight(Effect.sleep(ms), Ref.update(log, (l) => [...l, `${name} ended`]))
    )
  )

describe("awaitAtMost", () => {
  it.effect("returns at the timeout; the statement in flight runs to its end, the next one is never sent", () =>
    Effect.gen(function*() {
      const log = yield* Ref.make<Array<string>>([])
      const op = Effect.zipRight(statement(log, "first", 1_000), statement(log, "second", 10))
      const caller = yield* Effect.fork(Effect.either(awaitAtMost(op, 300, () => "timed out" as const)))
      yield* TestClock.adjust(300)
      expect(yield* Fiber.join(caller)).toEqual(Either.left("timed out"))
      expect(yield* Ref.get(log)).toEqual(["first sent"])
      yield* TestClock.adjust(1_000)
      expect(yield* Ref.get(log)).toEqual(["first sent", "first ended"])
    }))

  it.effect("an interrupted caller returns at once, and the statement in flight still ends", () =>
    Effect.gen(function*() {
      const log = yield* Ref.make<Array<string>>([])
      const caller = yield* Effect.fork(awaitAtMost(statement(log, "only", 1_000), 5_000, () => "timed out" as const))
      yield* TestClock.adjust(100)
      yield* Fiber.interrupt(caller)
      expect(yield* Ref.get(log)).toEqual(["only sent"])
      yield* TestClock.adjust(1_000)
      expect(yield* Ref.get(log)).toEqual(["only sent", "only ended"])
    }))

  it.effect("in time, the result (or failure) is the operation's", () =>
    Effect.gen(function*() {
      const ok = yield* Effect.fork(awaitAtMost(Effect.as(Effect.sleep(10), 42), 300, () => "timed out" as const))
      const failed = yield* Effect.fork(Effect.either(awaitAtMost(Effect.fail("boom" as const), 300, () => "timed out" as const)))
      yield* TestClock.adjust(10)
      expect(yield* Fiber.join(ok)).toBe(42)
      expect(yield* Fiber.join(failed)).toEqual(Either.left("boom"))
    }))
})
