/**
 * `runEvery`'s schedule at its limits (issue 17, item 7): intervals longer than a JavaScript timer
 * can hold, epochs as short as one interval (no member starves, whatever its index), and durations
 * it refuses.
 */
import { expect, it } from "@effect/vitest"
import type { Clock } from "effect"
import { Duration, Effect, FastCheck as fc, TestClock } from "effect"
import * as Membership from "../../src/Membership.js"
import * as Work from "../../src/Work.js"
import { assignment, stubMembership } from "./stub.js"

const maxTimer = 2 ** 31 - 1

it.prop("firstDueInEpoch: on the original's grid, at or after now, less than one interval after it", [
  fc.record({
    now: fc.integer({ min: 0, max: 4_102_444_800_000 }),
    interval: fc.integer({ min: 1, max: 3_600_000 }),
    modulo: fc.integer({ min: 1, max: 7_200_000 }),
    offset: fc.integer({ min: -60_000, max: 60_000 }),
    size: fc.integer({ min: 1, max: 64 })
  }).chain((r) => fc.integer({ min: 0, max: r.size - 1 }).map((index) => ({ ...r, index })))
], ([s]) => {
  const first = Work.firstDueInEpoch(s)
  expect(first).toBeGreaterThanOrEqual(s.now)
  expect(first - s.now).toBeLessThan(s.interval)
  // (the sums are around 1e12 ms: equal to a microsecond)
  const steps = (Work.firstDue(s) - first) / s.interval
  expect(Math.abs(steps - Math.round(steps))).toBeLessThan(1e-6)
}, { fastCheck: { numRuns: 2_000 } })

/**
 * The TestClock, except that a single sleep longer than 2^31 - 1 ms never ends: what `setTimeout`
 * and Effect's live clock do with such a timer.
 */
const clockWithJsTimers = Effect.map(TestClock.testClock(), (test) => {
  const requested: Array<number> = []
  const clock: Clock.Clock = Object.assign(Object.create(test) as TestClock.TestClock, {
    sleep: (duration: Duration.DurationInput) => {
      const ms = Duration.toMillis(Duration.decode(duration))
      requested.push(ms)
      return ms > maxTimer ? Effect.never : test.sleep(Duration.decode(duration))
    }
  })
  return { clock, requested }
})

it.effect("runEvery with an interval longer than a JavaScript timer can hold (30 days) still runs, on time", () =>
  Effect.gen(function*() {
    const { clock, requested } = yield* clockWithJsTimers
    yield* Effect.gen(function*() {
      const m = yield* stubMembership([assignment(1, 0, 1)])
      const ran: Array<number> = []
      yield* Work.runEvery("30 days", (tick) => Effect.sync(() => ran.push(tick.dueAt)), { modulo: "1 day" }).pipe(
        Effect.provideService(Membership.Membership, m)
      )
      for (let day = 0; day < 61; day++) yield* TestClock.adjust(Duration.days(1))
      const thirtyDays = Duration.toMillis(Duration.days(30))
      expect(ran).toEqual([0, thirtyDays, 2 * thirtyDays])
      expect(Math.max(...requested)).toBeLessThanOrEqual(maxTimer)
    }).pipe(Effect.withClock(clock), Effect.scoped)
  }))

it.effect("in epochs that last exactly one interval, every member runs once per epoch, whatever its index", () =>
  Effect.gen(function*() {
    // Epochs of 3 s, interval and modulo 3 s, offset 100 ms, N = 3: the original's first due time is
    // 3.1 s + k s after the epoch starts, after its end: nobody would run. Member k now runs
    // 0.1 + k seconds into every epoch.
    const epochs = [1, 2, 3, 4]
    const runs: Array<{ readonly index: number; readonly at: number; readonly epoch: number; readonly run: number }> = []
    for (const index of [0, 1, 2]) {
      const m = yield* stubMembership(epochs.map((e) => assignment(e, index, 3)), "3 seconds")
      yield* Work.runEvery("3 seconds", (tick) =>
        Effect.map(TestClock.currentTimeMillis, (at) => void runs.push({ index, at, epoch: tick.epoch, run: tick.run })), {
        modulo: "3 seconds",
        offset: "100 millis"
      }).pipe(Effect.provideService(Membership.Membership, m))
    }
    yield* TestClock.adjust(Duration.millis(11_999))
    for (const index of [0, 1, 2]) {
      expect(runs.filter((r) => r.index === index)).toEqual(
        epochs.map((epoch, i) => ({ index, at: i * 3_000 + 100 + index * 1_000, epoch, run: 0 }))
      )
    }
  }).pipe(Effect.scoped))

it.effect("durations runEvery and runAsLeader cannot honour fail with InvalidConfig naming the option", () =>
  Effect.gen(function*() {
    const m = yield* stubMembership([assignment(1, 0, 1)])
    const fails = <A, R>(effect: Effect.Effect<A, { readonly _tag: string; readonly message: string }, R>) =>
      Effect.flip(effect).pipe(Effect.provideService(Membership.Membership, m))
    const tooLong = "36501 days" // just over 100 years
    const cases = [
      [Work.runEvery(tooLong, () => Effect.void), /"interval".*at most 100 years/],
      [Work.runEvery("1 second", () => Effect.void, { modulo: tooLong }), /"modulo".*at most 100 years/],
      [Work.runEvery("1 second", () => Effect.void, { offset: tooLong }), /"offset".*at most 100 years/],
      [Work.runEvery(Duration.infinity, () => Effect.void), /"interval".*finite/],
      [Work.runAsLeader(Effect.void, { retryDelay: tooLong }), /"retryDelay".*at most 100 years/]
    ] as const
    for (const [effect, message] of cases) {
      const e = yield* fails(effect as Effect.Effect<void, { readonly _tag: string; readonly message: string }, Membership.Membership>)
      expect(e._tag).toBe("InvalidConfig")
      expect(e.message).toMatch(message)
    }
    // 100 years is accepted.
    yield* Work.runEvery("36500 days", () => Effect.void).pipe(Effect.provideService(Membership.Membership, m))
  }).pipe(Effect.scoped))
