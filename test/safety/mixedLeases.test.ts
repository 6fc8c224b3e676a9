/**
 * Members of one group with different leases, and a forward step of the database clock (in memory, on
 * the TestClock, as test/safety/clockStep.test.ts). An adversarial review: a member that saw the step
 * held off reaping for one lease of its own, and a member whose row vanished early rejoined after one
 * lease of its own, by when a member of a longer lease (or a slower heartbeat) could still be working:
 * with leases of 2 s and 30 s, 810 ms of two epochs worked at once; with 6 s and 30 s, 2.8 s. Now both
 * wait out the longest lease of the group's live rows as the member's last renewal read them
 * (`GroupView.longestLeaseMs`). Members that also differ in `fenceMargin` are not covered (docs/
 * configuration.md, "One configuration per group").
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { exactCover } from "../support/Recorder.js"
import { at, now, setup, until } from "./support.js"

describe("members with different leases, a forward step of the database clock", () => {
  it.scoped("G2: a short-lease member whose row the step expired rejoins only after the longest lease, not beside a slow member still working", () =>
    Effect.gen(function*() {
      const s = yield* setup("mixed-leases-rejoin")
      yield* s.join({ name: "a", heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "500 millis", statementTimeout: "500 millis" })
      yield* at((yield* now) + 300)
      yield* s.join({ name: "b", heartbeat: "5 seconds", lease: "30 seconds", fenceMargin: "2 seconds", statementTimeout: "2 seconds", notifications: false })
      yield* until(() => exactCover(s.rec.working(), 2), 60_000, 10)
      // b renews every 5 s; the step comes just after one of its renewals, so its next is ~5 s away.
      yield* at((yield* now) + 7_000)
      yield* s.control.stepClock(60_000)
      yield* until(() => false, 40_000, 10).pipe(Effect.catchAllDefect(() => Effect.void))
      // Before: a rejoined 2 s after the step and formed a new epoch alone while b worked until its
      // next renewal (G2).
      expect(s.rec.violations).toEqual([])
    }))

  it.scoped("G2: after a step a member holds off reaping for the longest lease, so a hung member of a longer lease is not reaped while it works", () =>
    Effect.gen(function*() {
      const s = yield* setup("mixed-leases-reap")
      yield* s.join({ name: "a", heartbeat: "200 millis", lease: "6 seconds", fenceMargin: "1 second", statementTimeout: "1 second" })
      yield* at((yield* now) + 300)
      const c = yield* s.join({ name: "c", heartbeat: "1 second", lease: "30 seconds", fenceMargin: "1 second", statementTimeout: "2 seconds", notifications: false })
      yield* until(() => exactCover(s.rec.working(), 2), 60_000, 10)
      yield* at((yield* now) + 3_000)
      // c hangs (its work goes on until its own deadline, ~29 s after its last renewal) as the database
      // clock steps 4 s forward: more than c's fence margin, less than a's lease.
      yield* s.control.hang(c.id)
      yield* s.control.stepClock(4_000)
      yield* until(() => false, 40_000, 10).pipe(Effect.catchAllDefect(() => Effect.void))
      // Before: a reaped c 6 s (its own lease) after the step and started a new epoch 2.8 s before
      // c's deadline stopped c's work (G2).
      expect(s.rec.violations).toEqual([])
      // And the group re-forms without c once its lease is waited out.
      expect(exactCover(s.rec.working(), 1)).toBe(true)
    }))
})
