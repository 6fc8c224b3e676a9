import { Duration, Effect, TestClock } from "effect"

/** Advances the TestClock in steps until `done` holds; fails after `max`. Returns the time it took. */
export const advanceUntil = (
  done: () => Effect.Effect<boolean> | boolean,
  max = Duration.seconds(60),
  step = Duration.millis(10)
) =>
  Effect.gen(function*() {
    const start = yield* TestClock.currentTimeMillis
    while (true) {
      const ok = done()
      if (typeof ok === "boolean" ? ok : yield* ok) return (yield* TestClock.currentTimeMillis) - start
      if ((yield* TestClock.currentTimeMillis) - start > Duration.toMillis(max)) {
        return yield* Effect.dieMessage(`not done within ${Duration.format(max)}`)
      }
      yield* TestClock.adjust(step)
    }
  })
