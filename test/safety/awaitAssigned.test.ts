/**
 * `awaitAssigned` hands out an assignment that work may run under when it returns, as `guard` does:
 * assigned, and the lease deadline ahead. The state that `state` and `changes` publish is the
 * driver's, and lags while the driver is busy: the fence timer interrupts the work at the deadline
 * without waiting for it, and the driver publishes `Fenced` only once it takes the fence's event. The
 * old `awaitAssigned` resolved on the first published `Assigned` state, so while the driver was busy
 * (here a reap that takes 9.5 s, as one waiting on the group row lock would) it returned, well after
 * the deadline, an assignment the member had been fenced out of.
 *
 * In-memory store and TestClock, default config (heartbeat 1 s, lease 10 s, fence margin 2 s).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Option } from "effect"
import { at, HEARTBEAT, LEASE, MARGIN, now, setup, until } from "./support.js"

describe("awaitAssigned", () => {
  it.scoped("past the lease deadline, with the driver busy and the published state still Assigned, it waits until a renewal has moved the deadline", () =>
    Effect.gen(function*() {
      const { control, injectExpired, join, lastRenewal, rec, setReapDelay } = yield* setup("safety-await-assigned")
      const a = yield* join({ name: "a" })
      yield* at(300) // b renews between a's renewals
      yield* join({ name: "b" })
      yield* at(2_900)
      // a's next renewal says someone expired: a reaps, and the reap takes 9.5 s.
      yield* injectExpired(a.id)
      yield* setReapDelay(9_500)
      yield* at(3_400)
      const t0 = lastRenewal(a.id)!
      const epoch = rec.working().find((w) => w.member === "a")!.epoch
      // Cut off from the database until just past the deadline.
      yield* control.setOutage(true)
      const deadline = t0 + LEASE - MARGIN
      yield* at(deadline + 1)
      yield* control.setOutage(false)
      yield* at(deadline + 100)
      // The fence has stopped the work; the driver, still in the reap, has not published it.
      expect(rec.working().some((w) => w.member === "a")).toBe(false)
      expect(yield* a.m.state).toMatchObject({ _tag: "Assigned", epoch })
      expect(yield* a.m.assignment).toEqual(Option.none())

      let resolvedAt: number | undefined
      const waiter = yield* Effect.fork(Effect.tap(a.m.awaitAssigned, () => Effect.map(now, (t) => void (resolvedAt = t))))
      yield* at(deadline + 200)
      expect(resolvedAt, "awaitAssigned returned an assignment past its lease deadline").toBeUndefined()

      // It returns once a renewal has moved the deadline (the first after the outage, a heartbeat
      // on), though the driver, still in the reap, starts the work again only at t0 + 9.5 s.
      const back = yield* until(() => resolvedAt !== undefined, 5 * HEARTBEAT)
      const renewed = lastRenewal(a.id)!
      expect(renewed).toBeGreaterThan(deadline)
      expect(back).toBeGreaterThanOrEqual(renewed)
      const assignment = yield* Fiber.join(waiter)
      expect(assignment.epoch).toBe(epoch)
      // What it returned is what `guard` allows at that instant.
      expect(yield* a.m.guard).toEqual(assignment)
      expect(rec.violations).toEqual([])
    }))

  it.scoped("it returns at once when assigned, and fails once the member has left", () =>
    Effect.gen(function*() {
      const { join } = yield* setup("safety-await-assigned-plain")
      const a = yield* join({ name: "a" })
      const assignment = yield* a.m.awaitAssigned
      expect(assignment).toMatchObject({ index: 0, size: 1 })
      yield* a.m.leave
      const left = yield* Effect.flip(a.m.awaitAssigned)
      expect(left._tag).toBe("MembershipClosed")
    }))
})
