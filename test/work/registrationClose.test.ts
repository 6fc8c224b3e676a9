/**
 * `whileAssigned`, `whileOwning` and `whileOwningAll` run their work "for as long as the caller's scope
 * lives". An adversarial review found the run going on after that scope closed: the close only forgot
 * the registration, and the run, in the member's own set of work fibers, went on (with the resources
 * of the closed scope) until the next change or fence, 48 more ticks in a second. Now the close
 * interrupts the run and waits for it (at most the stop timeout). In memory, on the TestClock.
 */
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Scope } from "effect"
import * as InMemoryMembershipStore from "../../src/InMemoryMembershipStore.js"
import * as Membership from "../../src/Membership.js"
import { advanceUntil } from "../support/TestClock.js"

const config = {
  heartbeat: Duration.millis(50),
  lease: Duration.millis(1000),
  fenceMargin: Duration.millis(200),
  statementTimeout: Duration.millis(200),
  stopTimeout: Duration.millis(300)
} as const

/** Work that counts its ticks while it runs, and records whether it runs. */
const ticking = () => {
  const seen = { running: 0, ticks: 0 }
  const work = Effect.acquireRelease(Effect.sync(() => void seen.running++), () => Effect.sync(() => void seen.running--)).pipe(
    Effect.zipRight(Effect.forever(Effect.zipRight(Effect.sleep("20 millis"), Effect.sync(() => void seen.ticks++)))),
    Effect.scoped
  )
  return { seen, work }
}

const forms = {
  whileAssigned: { slots: undefined, register: (m: Membership.MembershipService, work: Effect.Effect<void>) => m.whileAssigned(() => work) },
  whileOwning: { slots: 4, register: (m: Membership.MembershipService, work: Effect.Effect<void>) => m.whileOwning(() => work) },
  whileOwningAll: { slots: 4, register: (m: Membership.MembershipService, work: Effect.Effect<void>) => m.whileOwningAll(() => work) }
} as const

for (const [name, form] of Object.entries(forms)) {
  it.scoped(`${name}: the run stops when the scope that registered it closes; the member works on`, () =>
    Effect.gen(function*() {
      const m = yield* Membership.make({ groupId: `registration-close-${name}`, ...config, ...(form.slots === undefined ? {} : { slots: form.slots }) })
      const { seen, work } = ticking()
      const scope = yield* Scope.make()
      yield* form.register(m, work).pipe(Scope.extend(scope))
      yield* advanceUntil(() => seen.running > 0 && seen.ticks > 3, Duration.seconds(10))
      yield* Scope.close(scope, Exit.void)
      // Stopped by the time the close returns, and it stays stopped: no more ticks.
      expect(seen.running).toBe(0)
      const ticks = seen.ticks
      yield* advanceUntil(() => false, Duration.seconds(1)).pipe(Effect.exit)
      expect(seen.ticks).toBe(ticks)
      // The member is still assigned: another registration starts at once.
      const again = ticking()
      yield* form.register(m, again.work)
      yield* advanceUntil(() => again.seen.running > 0, Duration.seconds(5))
    }).pipe(Effect.provide(InMemoryMembershipStore.layer)))
}
