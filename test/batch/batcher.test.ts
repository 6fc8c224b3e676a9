/**
 * The batcher's bound on a caller's wait (internal/pg/batcher.ts `submit`'s `bound`), which the
 * PostgreSQL store's heartbeat uses in place of `awaitAtMost`: past the bound the caller gets its
 * timeout, a request not yet sent is dropped, a statement in flight runs on; a call answered in time
 * leaves nothing behind; and the one watchdog fiber that ends the waits ends each at its own deadline,
 * on the batcher's monotonic clock (a step of the wall clock, or a caller on a clock of its own, moves
 * nothing). Under the TestClock, no database.
 */
import { expect, it } from "@effect/vitest"
import { Clock, Deferred, Duration, Effect, Exit, Fiber, TestClock } from "effect"
import * as Batcher from "../../src/internal/pg/batcher.js"
import { steppedClock } from "../support/SteppedClock.js"

class TimedOut {
  readonly _tag = "TimedOut"
}

/**
 * A batcher whose statements wait for `release` (requests named in `open` answer at once); records
 * every batch it sends.
 */
const arrange = (options: { readonly clock?: Clock.Clock; readonly flightMs?: number } = {}) => Effect.gen(function*() {
  const release = yield* Deferred.make<void>()
  const open = new Set<string>()
  const sent: Array<ReadonlyArray<string>> = []
  const batcher = Batcher.make<string, string, TimedOut>(
    (reqs) =>
      Effect.sync(() => sent.push(reqs)).pipe(
        Effect.zipRight(reqs.every((r) => open.has(r)) ? Effect.void : Deferred.await(release)),
        Effect.as(reqs.map((r): Batcher.Outcome<string, TimedOut> => ({ _tag: "Done", value: `${r} renewed` })))
      ),
    { flightMs: options.flightMs ?? 60_000, patienceMs: 120_000, clock: options.clock ?? (yield* Effect.clock) }
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
    const { batcher, bound, release, timeouts } = yield* arrange()
    yield* Deferred.succeed(release, undefined)
    expect(yield* batcher.submit("a", "a", 0, bound(2_000))).toBe("a renewed")
    // A bound that outlived its call (a timer forked under `submit`'s uninterruptible mask, which
    // its interruption could not stop) would fire here.
    yield* TestClock.adjust("10 seconds")
    expect(timeouts()).toBe(0)
  }))

it.effect("past its bound the caller gets its timeout; the statement in flight runs on, its answer goes nowhere", () =>
  Effect.gen(function*() {
    const { batcher, bound, release, sent, timeouts } = yield* arrange()
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
    const { batcher, bound, release, sent } = yield* arrange()
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
    const { batcher, bound, open, timeouts } = yield* arrange()
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
    const { batcher, bound, timeouts } = yield* arrange()
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

/**
 * `test` with the stepped clock as its own `Clock` (its callers') and the batcher's; `adjust` moves
 * the TestClock under it (`TestClock.adjust` needs the TestClock as the current `Clock`).
 */
const stepping = <A, E>(
  test: (
    step: (ms: number) => void,
    clock: Clock.Clock,
    adjust: (d: Duration.DurationInput) => Effect.Effect<void>
  ) => Effect.Effect<A, E>
) =>
  Effect.flatMap(steppedClock, ({ clock, step }) =>
    Effect.flatMap(TestClock.testClock(), (base) => Effect.withClock(test(step, clock, (d) => base.adjust(d)), clock)))

it.effect("a step of the wall clock back moves no bound: the wait still ends at its bound", () =>
  stepping((step, clock, adjust) => Effect.gen(function*() {
    const { batcher, bound, timeouts } = yield* arrange({ clock })
    // a's statement hangs; the wall clock steps back a minute.
    const a = yield* Effect.fork(batcher.submit("a", "a", 0, bound(1_000)))
    yield* Effect.yieldNow()
    step(-60_000)
    yield* adjust("999 millis")
    expect(a.unsafePoll()).toBeNull()
    yield* adjust("1 millis")
    expect(Exit.isFailure(yield* Fiber.await(a))).toBe(true)
    expect(timeouts()).toBe(1)
  })))

it.effect("a step of the wall clock forward moves no bound: a wait ends at its own bound, not at the step", () =>
  stepping((step, clock, adjust) => Effect.gen(function*() {
    const { batcher, bound, release, timeouts } = yield* arrange({ clock })
    // a's statement is in flight (bound 1 s); b waits behind it with a bound of 100 ms, which wakes
    // the watchdog after the wall clock stepped forward a minute.
    const a = yield* Effect.fork(batcher.submit("a", "a", 0, bound(1_000)))
    yield* Effect.yieldNow()
    const b = yield* Effect.fork(batcher.submit("b", "b", 0, bound(100)))
    yield* Effect.yieldNow()
    step(60_000)
    yield* adjust("100 millis")
    expect(Exit.isFailure(yield* Fiber.await(b))).toBe(true)
    expect(a.unsafePoll()).toBeNull()
    yield* Deferred.succeed(release, undefined)
    expect(yield* Fiber.join(a)).toBe("a renewed")
    expect(timeouts()).toBe(1)
  })))

it.effect("a step of the wall clock back holds no request behind a hung batch longer than flightMs", () =>
  stepping((step, clock, adjust) => Effect.gen(function*() {
    const { batcher, open, sent } = yield* arrange({ clock, flightMs: 1_000 })
    // a's batch hangs; b comes while it is in flight, then the wall clock steps back a minute.
    yield* Effect.fork(batcher.submit("a", "a", 0))
    yield* Effect.yieldNow()
    open.add("b")
    const b = yield* Effect.fork(batcher.submit("b", "b", 0))
    yield* Effect.yieldNow()
    step(-60_000)
    yield* adjust("1 second")
    expect(sent).toEqual([["a"], ["b"]])
    expect(yield* Fiber.join(b)).toBe("b renewed")
  })))

it.effect("callers on clocks of their own (skewed members) wait by the batcher's clock", () =>
  Effect.gen(function*() {
    const { batcher, bound, timeouts } = yield* arrange()
    const { clock: ahead, step } = yield* steppedClock
    step(3_600_000)
    // Two callers whose statements hang, the second on a clock an hour ahead of the first's.
    const a = yield* Effect.fork(batcher.submit("a", "a", 0, bound(1_000)))
    yield* Effect.yieldNow()
    const b = yield* Effect.fork(Effect.withClock(batcher.submit("b", "b", 0, bound(1_000)), ahead))
    yield* Effect.yieldNow()
    yield* TestClock.adjust("1 second")
    expect(Exit.isFailure(yield* Fiber.await(a))).toBe(true)
    expect(Exit.isFailure(yield* Fiber.await(b))).toBe(true)
    expect(timeouts()).toBe(2)
  }))
