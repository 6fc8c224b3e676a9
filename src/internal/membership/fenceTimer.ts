/**
 * The fence timer: wakes at the local lease deadline and hands a `DeadlineCheck` to
 * `Transition.step`, which decides whether the fence fires (the work is then interrupted at once,
 * without waiting for the driver, which may be blocked on a hung call).
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Ref from "effect/Ref"
import * as Transition from "../../Transition.js"
import type { Observation } from "../../Transition.js"
import type { MemberContext } from "./context.js"
import { nowMillis } from "./context.js"

export const fenceTimer = (ctx: MemberContext, observe: (o: Observation) => Effect.Effect<void>) => {
  const heartbeatMs = ctx.timing.heartbeatMs
  return Effect.gen(function*() {
    let { deadline } = yield* Ref.get(ctx.member)
    if (deadline === undefined) {
      // No lease: wait until the step that gives the member one (`stepNow`), then watch its deadline
      // from then on. Slept a heartbeat instead, a join whose view came back late and started work
      // at once went unwatched for up to a heartbeat: past its local deadline, and with a heartbeat
      // longer than the fence margin past its lease on the database clock, beside the next epoch (an
      // adversarial review). Registered before the deadline is read again: none set in between is
      // missed. A heartbeat at most, as before, whatever happens.
      const set = yield* Deferred.make<void>()
      ctx.deadlineSet.current = set
      deadline = (yield* Ref.get(ctx.member)).deadline
      if (deadline === undefined) {
        yield* Effect.raceFirst(Deferred.await(set), Effect.sleep(heartbeatMs))
        return
      }
      ctx.deadlineSet.current = undefined
    }
    const now = yield* nowMillis
    // Before the deadline: sleep until it.
    if (now < deadline) return yield* Effect.sleep(deadline - now)
    yield* observe(Transition.Observation.DeadlineCheck())
    // Past it: look again soon (a renewal may have moved it, or the lease may be gone).
    yield* Effect.sleep(Math.max(1, Math.min(heartbeatMs, 50)))
  }).pipe(Effect.forever)
}
