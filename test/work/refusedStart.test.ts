/**
 * A start the work runner refuses (the lease deadline passed between the step that decided it and
 * the start, test/work/runner.test.ts) fences the member, so its next renewal in time starts the
 * work. Regression (an adversarial review of 0f063d4): the refusal went unsaid, and a renewal that
 * moved the deadline before the fence timer looked left the member `Assigned`, its lease fine, with
 * no work running, for good. The driver with a work runner that refuses the first start.
 */
import { expect, it } from "@effect/vitest"
import { Effect, Fiber, Ref, Scope } from "effect"
import * as InMemoryMembershipStore from "../../src/InMemoryMembershipStore.js"
import { makeContext } from "../../src/internal/membership/context.js"
import { makeDriver } from "../../src/internal/membership/driver.js"
import type { WorkRunner } from "../../src/internal/membership/workRunner.js"
import * as MembershipConfig from "../../src/MembershipConfig.js"
import type { GroupView } from "../../src/MembershipStore.js"
import * as Transition from "../../src/Transition.js"
import { advanceUntil } from "../support/TestClock.js"

const view = (v: Partial<GroupView> = {}): GroupView => ({
  epoch: 5,
  index: 0,
  size: 1,
  acked: 5,
  allAcked: true,
  expired: false,
  incarnation: 1,
  clock: 0,
  ...v
})

it.scoped("a refused start fences the member; its next renewal in time starts the work", () =>
  Effect.gen(function*() {
    const { store } = yield* InMemoryMembershipStore.make
    const config = yield* MembershipConfig.make({ groupId: "refused" })
    const scope = yield* Scope.make()
    const ctx = yield* makeContext({ config, store, info: { memberId: crypto.randomUUID(), host: "h", pid: 1, name: "m" }, scope })
    const starts: Array<boolean> = []
    const work: WorkRunner = {
      // The first start comes too late (refused), the others in time.
      start: () => Effect.sync(() => starts.push(starts.length > 0)).pipe(Effect.map(() => starts.at(-1)!)),
      interrupt: Effect.void,
      awaitStopped: Effect.void,
      stoppedNow: Effect.succeed(true),
      register: () => Effect.void,
      startSlot: () => Effect.succeed(true),
      stopSlots: () => Effect.succeed(new Map()),
      slots: Effect.succeed([]),
      registerSlot: () => Effect.void,
      registerSlotSet: () => Effect.void,
      batch: (effect) => effect
    }
    const driver = makeDriver(ctx, work)
    const running = yield* Effect.fork(driver.run)
    const state = Effect.map(Ref.get(ctx.member), (m) => m.state)
    yield* driver.offer(Transition.Event.Joined({ view: view(), sentAt: 0, receivedAt: 0 }))
    yield* advanceUntil(() => Effect.map(state, (s) => s._tag === "Fenced" && !s.stopping))
    expect(starts).toEqual([false])
    // The next renewal in time (what the lease keeper would apply): the work starts.
    yield* driver.offer(Transition.Event.Renewed({ view: view(), term: 1, sentAt: 0 }))
    yield* advanceUntil(() => Effect.map(state, (s) => s._tag === "Assigned"))
    expect(starts).toEqual([false, true])
    yield* Fiber.interrupt(running)
  }))
