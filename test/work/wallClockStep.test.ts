/**
 * `runEvery` when the host's wall clock steps (an NTP step, a VM restored from a snapshot, a manual
 * correction), under the TestClock: the wall-clock reading (`Clock.currentTimeMillis`) steps while
 * the monotonic reading and the timers go on (`steppedClock`). docs/protocol.md ("Clocks"): a step of
 * the member host's wall clock does nothing. Before the fix a step back of 30 s stopped the periodic
 * work for 30 s (the next wait was `interval + step`, measured on the wall clock); an adversarial
 * review's reproduction on PostgreSQL found it.
 */
import { expect, it } from "@effect/vitest"
import { Duration, Effect, FastCheck as fc, TestClock } from "effect"
import * as Membership from "../../src/Membership.js"
import * as Work from "../../src/Work.js"
import { steppedClock } from "../support/SteppedClock.js"
import { assignment, stubMembership } from "./stub.js"

/** Gaps between consecutive runs (monotonic ms) that end after `from`. */
const gapsAfter = (runs: ReadonlyArray<number>, from: number) =>
  runs.flatMap((at, i) => (i > 0 && at > from ? [at - runs[i - 1]!] : []))

const setup = Effect.gen(function*() {
  const base = yield* Effect.clock // the TestClock: its reading is the monotonic time here
  const { clock, step } = yield* steppedClock
  const m = yield* stubMembership([assignment(1, 0, 1)])
  const runs: Array<number> = []
  const dueAts: Array<number> = []
  yield* Work.runEvery("1 second", (tick) =>
    Effect.sync(() => {
      runs.push(base.unsafeCurrentTimeMillis())
      dueAts.push(tick.dueAt)
    }), { modulo: "1 second", offset: "250 millis" }).pipe(
      Effect.provideService(Membership.Membership, m),
      Effect.withClock(clock)
    )
  const now = () => base.unsafeCurrentTimeMillis()
  return { runs, dueAts, step, now }
})

for (const stepMs of [-30_000, -1_500, -3_600_000]) {
  it.scoped(`a wall-clock step back of ${stepMs / -1000} s delays no run by more than one interval`, () =>
    Effect.gen(function*() {
      const { runs, dueAts, step, now } = yield* setup
      yield* TestClock.adjust(Duration.millis(5_000))
      expect(runs.length).toBe(5)
      const steppedAt = now()
      step(stepMs)
      yield* TestClock.adjust(Duration.millis(10_000))
      // Before the fix: no run at all in these 10 s (the wait was 1 s + the step).
      expect(runs.filter((at) => at > steppedAt).length).toBeGreaterThanOrEqual(9)
      // No gap longer than about one interval, no burst (runs at least ~one interval apart, less only
      // once, where the one run in flight at the step lands on the old reading's grid).
      const gaps = gapsAfter(runs, steppedAt)
      expect(Math.max(...gaps)).toBeLessThanOrEqual(1_000)
      expect(gaps.filter((g) => g < 1_000).length).toBeLessThanOrEqual(1)
      // After the step the runs are again on the grid (t mod 1000 = 250 on the wall clock as it now reads).
      for (const due of dueAts.slice(-5)) expect(((due % 1_000) + 1_000) % 1_000).toBe(250)
    }))
}

it.scoped("a wall-clock step forward causes no burst of runs and delays none", () =>
  Effect.gen(function*() {
    const { runs, dueAts, step, now } = yield* setup
    yield* TestClock.adjust(Duration.millis(5_000))
    expect(runs.length).toBe(5)
    const steppedAt = now()
    step(3_600_000 + 400) // an hour and 400 ms: off the grid's phase
    yield* TestClock.adjust(Duration.millis(10_000))
    const after = runs.filter((at) => at > steppedAt).length
    expect(after).toBeGreaterThanOrEqual(9)
    // One run per interval, plus one where the run in flight at the step kept the old reading's phase.
    expect(after).toBeLessThanOrEqual(11)
    const gaps = gapsAfter(runs, steppedAt)
    expect(Math.max(...gaps)).toBeLessThanOrEqual(1_000)
    // Missed grid times are skipped, not run back to back.
    expect(Math.min(...gaps)).toBeGreaterThan(0)
    expect(gaps.filter((g) => g < 1_000).length).toBeLessThanOrEqual(1)
    for (const due of dueAts.slice(-5)) expect(((due % 1_000) + 1_000) % 1_000).toBe(250)
  }))

it.prop("resumeAt: on due's grid, at or after now, at most one interval after it, whichever way now stepped", [
  fc.integer({ min: 0, max: 4_102_444_800_000 }),
  fc.integer({ min: -4_000_000_000, max: 4_000_000_000 }),
  fc.integer({ min: 1, max: 3_600_000 })
], ([due, shift, interval]) => {
  const now = due + shift
  const next = Work.resumeAt(due, now, interval)
  expect(next).toBeGreaterThanOrEqual(now)
  expect(next - now).toBeLessThanOrEqual(interval)
  expect(Number.isInteger((next - due) / interval)).toBe(true)
  // Where catchUp's answer is already within one interval, it is kept (no run is moved earlier).
  const caught = Work.catchUp(due, now, interval)
  if (caught - now <= interval) expect(next).toBe(caught)
}, { fastCheck: { numRuns: 2_000 } })
