/**
 * internal/pg/noCancel.ts, on the TestClock: a caller stops *waiting* at its timeout while the
 * statement it started runs to its end (never interrupted: `@effect/sql-pg` would cancel it with
 * `pg_cancel_backend`, unsafe behind a pooler), nothing after that statement is sent, and one
 * renewal per member runs at a time, up to a patience. The same on real PgBouncer:
 * test/pgbouncer/nocancel.pg.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Fiber, Ref, TestClock } from "effect"
import { awaitAtMost, oneAtATime } from "../src/internal/pg/noCancel.js"

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

describe("oneAtATime", () => {
  it.effect("a renewal waits for the member's previous one, still running on the server, then runs", () =>
    Effect.gen(function*() {
      const log = yield* Ref.make<Array<string>>([])
      const one = oneAtATime(2_000)
      // The first, whose caller stopped waiting after 300 ms, runs 1 s.
      yield* Effect.either(awaitAtMost(one("m", statement(log, "a", 1_000)), 300, () => "timed out" as const)).pipe(
        Effect.fork
      )
      yield* TestClock.adjust(500)
      const second = yield* Effect.fork(one("m", statement(log, "b", 10)))
      // Another member is not held up.
      const other = yield* Effect.fork(one("n", statement(log, "c", 10)))
      yield* TestClock.adjust(10)
      yield* Fiber.join(other)
      expect(yield* Ref.get(log)).toEqual(["a sent", "c sent", "c ended"])
      yield* TestClock.adjust(500)
      yield* TestClock.adjust(10)
      yield* Fiber.join(second)
      expect(yield* Ref.get(log)).toEqual(["a sent", "c sent", "c ended", "a ended", "b sent", "b ended"])
    }))

  it.effect("a caller that stops waiting before its turn never sends its statement", () =>
    Effect.gen(function*() {
      const log = yield* Ref.make<Array<string>>([])
      const one = oneAtATime(2_000)
      yield* Effect.fork(one("m", statement(log, "a", 1_000)))
      yield* TestClock.adjust(1)
      const late = yield* Effect.fork(Effect.either(awaitAtMost(one("m", statement(log, "b", 10)), 300, () => "timed out" as const)))
      yield* TestClock.adjust(300)
      expect(yield* Fiber.join(late)).toEqual(Either.left("timed out"))
      yield* TestClock.adjust(2_000)
      expect(yield* Ref.get(log)).toEqual(["a sent", "a ended"])
    }))

  it.effect("a predecessor that outlives the patience (a dead connection) is not waited for any longer", () =>
    Effect.gen(function*() {
      const log = yield* Ref.make<Array<string>>([])
      const never = yield* Deferred.make<void>()
      const one = oneAtATime(2_000)
      // A daemon: it never ends (the test's own end would wait for it, uninterruptible as it is).
      yield* Effect.forkDaemon(one("m", Effect.zipRight(Ref.update(log, (l) => [...l, "hung sent"]), Deferred.await(never))))
      yield* TestClock.adjust(500)
      const next = yield* Effect.fork(one("m", statement(log, "next", 10)))
      yield* TestClock.adjust(1_000)
      expect(yield* Ref.get(log)).toEqual(["hung sent"])
      yield* TestClock.adjust(500)
      yield* TestClock.adjust(10)
      yield* Fiber.join(next)
      expect(yield* Ref.get(log)).toEqual(["hung sent", "next sent", "next ended"])
    }))
})
