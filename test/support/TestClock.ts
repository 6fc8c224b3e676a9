import { Chunk, Duration, Effect, TestClock } from "effect"

/**
 * Advances the TestClock by `step` ms, or, when no fiber sleeps until later than that, straight to
 * the next instant a fiber sleeps until (never past `limit`, absolute ms).
 *
 * Called when every fiber of the test is suspended (after an `adjust`, which returns only once they
 * are; a loop's first step is a plain `adjust`), nothing can happen before the next sleep's
 * instant: one `adjust` there passes through the same states as `step` ms at a time, and a check
 * after it sees each state the small steps would have. Each `adjust` costs a few real timer turns
 * (the TestClock waits with `setTimeout(0)` until the test's fibers are suspended, ~1 ms each), so a
 * wait of 40 s in 10 ms steps took 15 s of real time where the members sleep 100-200 ms at a time
 * (docs/testing.md).
 *
 * Only for checks of state the fibers change (a recorder, a ref): a check that reads the clock itself
 * (a lease over by now, with no fiber waking at its end) is not seen between wake-ups.
 */
export const stepToNextWake = (step: number, limit = Number.POSITIVE_INFINITY) =>
  Effect.gen(function*() {
    const now = yield* TestClock.currentTimeMillis
    const next = Chunk.reduce(yield* TestClock.sleeps(), Number.POSITIVE_INFINITY, (a, b) => Math.min(a, b))
    const to = Math.max(now + step, Math.min(next, limit))
    yield* TestClock.adjust(Duration.millis(to - now))
  })

/**
 * Advances the TestClock in steps until `done` holds; fails after `max`. Returns the time it took.
 * A plain boolean check skips the instants at which no fiber wakes (`stepToNextWake`); an
 * effectful one (which may read the clock) is checked every `step`.
 */
export const advanceUntil = (
  done: () => Effect.Effect<boolean> | boolean,
  max = Duration.seconds(60),
  step = Duration.millis(10)
) =>
  Effect.gen(function*() {
    const start = yield* TestClock.currentTimeMillis
    const maxMs = Duration.toMillis(max)
    for (let first = true;; first = false) {
      const ok = done()
      if (typeof ok === "boolean" ? ok : yield* ok) return (yield* TestClock.currentTimeMillis) - start
      if ((yield* TestClock.currentTimeMillis) - start > maxMs) {
        return yield* Effect.dieMessage(`not done within ${Duration.format(max)}`)
      }
      if (typeof ok === "boolean" && !first) yield* stepToNextWake(Duration.toMillis(step), start + maxMs + 1)
      else yield* TestClock.adjust(step)
    }
  })

/** `advanceUntil` in ms, returning when `done` held (absolute ms) rather than how long it took. */
export const stepUntil = (done: () => boolean, max = 60_000, step = 1) =>
  Effect.gen(function*() {
    const start = yield* TestClock.currentTimeMillis
    return start + (yield* advanceUntil(done, Duration.millis(max), Duration.millis(step)))
  })
