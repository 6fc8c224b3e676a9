/**
 * Waiting in real time for a condition that a live test observes (members as fibers against a real
 * database, where no TestClock can be advanced): polls every 5 ms, dies after `max`.
 */
import { Duration, Effect } from "effect"

/** Polls `done` every 5 ms of real time; returns the milliseconds it took, or dies after `max`. */
export const waitFor = (done: () => boolean, max: Duration.DurationInput = Duration.seconds(10)) =>
  Effect.gen(function*() {
    const start = Date.now()
    const limit = Duration.toMillis(Duration.decode(max))
    yield* Effect.sleep(Duration.millis(5)).pipe(
      Effect.repeat({ until: () => done() || Date.now() - start > limit })
    )
    if (!done()) return yield* Effect.dieMessage(`not done within ${Duration.format(Duration.decode(max))}`)
    return Date.now() - start
  })
