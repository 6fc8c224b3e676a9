/**
 * The fence timer: wakes at the local lease deadline and hands a `DeadlineCheck` to
 * `Transition.step`, which decides whether the fence fires (the work is then interrupted at once,
 * without waiting for the driver, which may be blocked on a hung call).
 */
import * as Effect from "effect/Effect"
import * as Ref from "effect/Ref"
import * as Transition from "../../Transition.js"
import type { Observation } from "../../Transition.js"
import type { MemberContext } from "./context.js"
import { nowMillis } from "./context.js"

export const fenceTimer = (ctx: MemberContext, observe: (o: Observation) => Effect.Effect<void>) => {
  const heartbeatMs = ctx.timing.heartbeatMs
  return Effect.gen(function*() {
    const { deadline } = yield* Ref.get(ctx.member)
    const now = yield* nowMillis
    // No lease: look again in a heartbeat. Before the deadline: sleep until it.
    if (deadline === undefined) return yield* Effect.sleep(heartbeatMs)
    if (now < deadline) return yield* Effect.sleep(deadline - now)
    yield* observe(Transition.Observation.DeadlineCheck())
    // Past it: look again soon (a renewal may have moved it, or the lease may be gone).
    yield* Effect.sleep(Math.max(1, Math.min(heartbeatMs, 50)))
  }).pipe(Effect.forever)
}
