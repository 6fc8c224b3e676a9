/**
 * A stand-in membership for `Work` tests that need exact control of the epochs: it is assigned in
 * each of `epochs` in turn, for `every` each, starting every registered work afresh in each (as the
 * real membership does at a change) and interrupting it at the end. `guard` passes for the current
 * epoch. After the last epoch it stays assigned in it. Like the real one, it runs the work in a scope
 * of its own (the one `stubMembership` is made in), not in the caller's.
 */
import { Duration, Effect, Fiber, Option, Ref, Stream } from "effect"
import type * as Scope from "effect/Scope"
import type * as Membership from "../../src/Membership.js"
import * as MembershipConfig from "../../src/MembershipConfig.js"
import type { Assignment } from "../../src/MemberState.js"
import { MemberState } from "../../src/MemberState.js"

export const assignment = (epoch: number, index: number, size: number): Assignment => ({
  epoch,
  index,
  size,
  incarnation: 1,
  isLeader: index === 0
})

export const stubMembership = (
  epochs: ReadonlyArray<Assignment>,
  every: Duration.DurationInput = Duration.infinity
): Effect.Effect<Membership.MembershipService, never, Scope.Scope> =>
  Effect.gen(function*() {
    const own = yield* Effect.scope
    const current = yield* Ref.make(epochs[0]!)
    const config = yield* Effect.orDie(MembershipConfig.make({ groupId: "stub" }))
    const stateOf = (a: Assignment) => MemberState.Assigned({ epoch: a.epoch, index: a.index, size: a.size, incarnation: a.incarnation })
    const service: Membership.MembershipService = {
      memberId: "stub",
      config,
      state: Effect.map(Ref.get(current), stateOf),
      changes: Stream.fromEffect(Effect.map(Ref.get(current), stateOf)),
      assignment: Effect.map(Ref.get(current), Option.some),
      awaitAssigned: Ref.get(current),
      guard: Ref.get(current),
      whileAssigned: (work) =>
        Effect.asVoid(Effect.forkIn(Effect.gen(function*() {
          for (const [i, a] of epochs.entries()) {
            yield* Ref.set(current, a)
            const fiber = yield* Effect.fork(Effect.ignore(Effect.scoped(work(a))))
            if (i === epochs.length - 1) return yield* Fiber.join(fiber)
            yield* Effect.sleep(every)
            yield* Fiber.interrupt(fiber)
          }
        }), own)),
      whileOwning: () => Effect.void,
      whileOwningAll: () => Effect.void,
      owned: Effect.succeed({ slots: [], generations: [], count: 0 }),
      leave: Effect.void
    }
    return service
  })
