/**
 * A clock whose wall-clock reading (`currentTimeMillis`) can step, as NTP steps a host's clock, while
 * its monotonic reading (`currentTimeNanos`) and its sleeps go on as the clock under it (the
 * TestClock, or the live clock) has them.
 */
import { Clock, Effect } from "effect"

export const steppedClock: Effect.Effect<{ readonly clock: Clock.Clock; readonly step: (ms: number) => void }> = Effect
  .map(Effect.clock, (base) => {
    let offsetMs = 0
    const clock: Clock.Clock = {
      [Clock.ClockTypeId]: Clock.ClockTypeId,
      unsafeCurrentTimeMillis: () => base.unsafeCurrentTimeMillis() + offsetMs,
      unsafeCurrentTimeNanos: () => base.unsafeCurrentTimeNanos(),
      currentTimeMillis: Effect.sync(() => base.unsafeCurrentTimeMillis() + offsetMs),
      currentTimeNanos: base.currentTimeNanos,
      sleep: (duration) => base.sleep(duration)
    }
    return { clock, step: (ms: number) => void (offsetMs += ms) }
  })
