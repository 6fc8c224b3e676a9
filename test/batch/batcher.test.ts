/**
 * The batcher's bound on a caller's wait (internal/pg/batcher.ts `submit`'s `bound`), which the
 * PostgreSQL store's heartbeat uses in place of `awaitAtMost`: past the bound the caller gets its
 * timeout, a request not yet sent is dropped, a statement in flight runs on; a call answered in time
 * leaves nothing behind; and the one watchdog fiber that ends the waits ends each at its own deadline.
 * Under the TestClock, no database.
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, TestClock } from "effect"
import * as Batcher from "../../src/internal/pg/batcher.js"

class TimedOut {
  readonly _tag = "TimedOut"
}

/**
 * A batcher whose statements wait for `release` (requests named in `open` answer at once); records
 * every batch it sends.
 */
const arrange = Effect.gen(function*() {
  const release = yield* Deferred.make<void>()
  const open = new Set<string>()
  const sent: Array<ReadonlyArray<string>> = []
  const batcher = Batcher.make<string, string, TimedOut>(
    (reqs) =>
      Effect.sync(() => sent.push(reqs)).pipe(
        Effect.zipRight(reqs.every((r) => open.has(r)) ? Effect.void : Deferred.await(release)),
        Effect.as(reqs.map((r): Batcher.Outcome<string, TimedOut> => ({ _tag: "Done", value: `${r} renewed` })))
      ),
    { flightMs: 60_000, patienceMs: 120_000 }
  )
  let timeouts = 0
  const bound = (ms: number) => ({
    ms,
    onTimeout: () => {
      timeouts++
      return new TimedOut()
    }
  })
  return { batcher, bound, open, release, sent, timeouts: () => timeouts }
})

it.effect("a call answered in time never times out later", () =>
  Effect.gen(function*() {
    const { batcher, bound, release, timeouts } = yield* arrange
    yield* Deferred.succeed(release, undefined)
    expect(yield* batcher.submit("a", "a", 0, bound(2_000))).toBe("a renewed")
    // A bound that outlived its call (a timer forked under `submit`'s uninterruptible mask, which
    // its interruption could not stop) would fire here.
    yield* TestClock.adjust("10 seconds")
    expect(timeouts()).toBe(0)
  }))

it.effect("past its bound the caller gets its timeout; the statement in flight runs on, its answer goes nowhere", () =>
  Effect.gen(function*() {
    const { batcher, bound, release, sent, timeouts } = yield* arrange
    const call = yield* Effect.fork(batcher.submit("a", "a", 0, bound(2_000)))
    yield* TestClock.adjust("1999 millis")
    expect(call.unsafePoll()).toBeNull()
    yield* TestClock.adjust("1 millis")
    const exit = yield* Fiber.await(call)
    expect(Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error).toBeInstanceOf(TimedOut)
    expect(timeouts()).toBe(1)
    // The statement was sent and is not interrupted: it ends when it ends.
    expect(sent).toEqual([["a"]])
    yield* Deferred.succeed(release, undefined)
    expect(yield* batcher.submit("a", "a again", 0, bound(2_000))).toBe("a again renewed")
    expect(sent).toEqual([["a"], ["a again"]])
  }))

it.effect("a request not yet sent when its bound runs out is dropped: nothing is sent for it", () =>
  Effect.gen(function*() {
    const { batcher, bound, release, sent } = yield* arrange
    // a's statement is in flight; b's request waits behind it (flightMs is a minute).
    const a = yield* Effect.fork(batcher.submit("a", "a", 0))
    yield* Effect.yieldNow()
    const b = yield* Effect.fork(batcher.submit("b", "b", 0, bound(2_000)))
    yield* TestClock.adjust("2 seconds")
    expect(Exit.isFailure(yield* Fiber.await(b))).toBe(true)
    yield* Deferred.succeed(release, undefined)
    expect(yield* Fiber.join(a)).toBe("a renewed")
    yield* TestClock.adjust("2 minutes")
    expect(sent).toEqual([["a"]])
  }))

it.effect("each bounded wait ends at its own deadline, also after earlier calls were answered in time", () =>
  Effect.gen(function*() {
    const { batcher, bound, open, timeouts } = yield* arrange
    open.add("a")
    expect(yield* batcher.submit("a", "a", 0, bound(2_000))).toBe("a renewed")
    yield* TestClock.adjust("1500 millis")
    // b's statement hangs: its deadline is 3,500 ms, after the 2,000 ms a's call armed for.
    const b = yield* Effect.fork(batcher.submit("b", "b", 0, bound(2_000)))
    yield* TestClock.adjust("1999 millis")
    expect(b.unsafePoll()).toBeNull()
    yield* TestClock.adjust("1 millis")
    expect(Exit.isFailure(yield* Fiber.await(b))).toBe(true)
    expect(timeouts()).toBe(1)
  }))

it.effect("a shorter bound after a longer one ends at its own deadline, not the longer one's", () =>
  Effect.gen(function*() {
    const { batcher, bound, timeouts } = yield* arrange
    const long = yield* Effect.fork(batcher.submit("a", "a", 0, bound(5_000)))
    yield* Effect.yieldNow()
    const short = yield* Effect.fork(batcher.submit("b", "b", 0, bound(1_000)))
    yield* TestClock.adjust("1 second")
    expect(Exit.isFailure(yield* Fiber.await(short))).toBe(true)
    expect(long.unsafePoll()).toBeNull()
    yield* TestClock.adjust("4 seconds")
    expect(Exit.isFailure(yield* Fiber.await(long))).toBe(true)
    expect(timeouts()).toBe(2)
  }))
