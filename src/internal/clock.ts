/**
 * Time as the library measures durations: the `Clock`'s monotonic reading (`currentTimeNanos`), in
 * milliseconds. A step of the host's wall clock (NTP) moves none of it; the TestClock drives it.
 * The wall clock (`currentTimeMillis`) is only ever a time to show or to hand the database in tests.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"

/** Milliseconds on the current `Clock`'s monotonic reading. */
export const monotonicMillis: Effect.Effect<number> = Effect.map(Clock.currentTimeNanos, (n) => Number(n / 1_000_000n))

/** Milliseconds on `clock`'s monotonic reading (a clock captured once, for fibers of its own). */
export const monotonicMillisOf = (clock: Clock.Clock): Effect.Effect<number> =>
  Effect.sync(() => Number(clock.unsafeCurrentTimeNanos() / 1_000_000n))
