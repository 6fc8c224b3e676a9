/**
 * Waiting in real time for a condition that a live test observes (members as fibers against a real
 * database, where no TestClock can be advanced).
 */
import { Duration, Effect } from "effect"

/** Polls `done` every 5 ms of real time; returns the milliseconds it took, or dies after `max`. */
export const waitFor = (done: () => boolean, max: Duration.DurationInput = Duration.seconds(10), what = "condition") =>
  Effect.gen(function*() {
    const start = Date.now()
    const maxMs = Duration.toMillis(Duration.decode(max))
    while (!done()) {
      if (Date.now() - start > maxMs) return yield* Effect.dieMessage(`${what}: not done within ${maxMs} ms`)
      yield* Effect.sleep(Duration.millis(5))
    }
    return Date.now() - start
  })

/** Like `waitFor`, with an effectful condition polled every 20 ms. */
export const waitForEffect = <E, R>(
  done: Effect.Effect<boolean, E, R>,
  max: Duration.DurationInput = Duration.seconds(10),
  what = "condition"
) =>
  Effect.gen(function*() {
    const start = Date.now()
    const maxMs = Duration.toMillis(Duration.decode(max))
    while (!(yield* done)) {
      if (Date.now() - start > maxMs) return yield* Effect.dieMessage(`${what}: not done within ${maxMs} ms`)
      yield* Effect.sleep(Duration.millis(20))
    }
    return Date.now() - start
  })
