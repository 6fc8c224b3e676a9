/**
 * Clocks for tests. `steppedClock`: the current clock, whose wall-clock reading (`currentTimeMillis`)
 * can step as NTP steps a host's clock, while its monotonic reading (`currentTimeNanos`) and its
 * sleeps go on as the clock under it (the TestClock, or the live clock) has them. `skewedClock`: a
 * host whose clock is off by a fixed amount.
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

/** `base` with both readings moved by `offsetMs` (a host whose clock is that far off); its sleeps are `base`'s. */
export const skewedClock = (base: Clock.Clock, offsetMs: number): Clock.Clock => ({
  ...base,
  [Clock.ClockTypeId]: Clock.ClockTypeId,
  unsafeCurrentTimeMillis: () => base.unsafeCurrentTimeMillis() + offsetMs,
  currentTimeMillis: Effect.sync(() => base.unsafeCurrentTimeMillis() + offsetMs),
  unsafeCurrentTimeNanos: () => base.unsafeCurrentTimeNanos() + BigInt(offsetMs) * 1_000_000n,
  currentTimeNanos: Effect.sync(() => base.unsafeCurrentTimeNanos() + BigInt(offsetMs) * 1_000_000n),
  sleep: (d) => base.sleep(d)
})
