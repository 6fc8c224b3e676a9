/**
 * Break 4: a fence always comes back. In-memory store and TestClock, default config (heartbeat 1 s,
 * lease 10 s, fence margin 2 s: the local deadline is the send time of the last successful renewal
 * + 8 s, and falls on a heartbeat tick).
 *
 * The old bug: the fence timer interrupts the work and queues DeadlinePassed; before the driver
 * takes that event, a renewal moves the deadline; the old driver dropped the event as stale, so the
 * member stayed Assigned with no work running, for good.
 *
 * Under the TestClock, sleepers due in the same instant are woken one at a time and every fiber runs
 * until it suspends before the next wakes, so "the renewal and the fence timer in the same instant"
 * resolves to one order or the other, never to the interleaving above: the first variants pin each
 * order down. The last variant forces the interleaving deterministically: the driver is busy in a
 * slow reap (waiting, say, on the group row lock) when the fence fires, so DeadlinePassed waits in
 * the queue while the first renewal after the outage moves the deadline.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import type { MemberState } from "../../src/MemberState.js"
import { at, HEARTBEAT, LEASE, MARGIN, now, setup, untilEffect } from "./support.js"

const groupId = (name: string) => `safety-fence-${name}`

/** `outageEnd`: relative to a's local deadline (send time of its last renewal before the outage + 8 s). */
const scenario = (name: string, options: { readonly outageEnd: number; readonly slowReap?: boolean }) =>
  Effect.gen(function*() {
    const g = groupId(name)
    const { control, injectExpired, join, lastRenewal, rec, setReapDelay } = yield* setup(g)
    const a = yield* join({ name: "a" })
    yield* at(300) // b renews between a's renewals
    yield* join({ name: "b" })
    const states: Array<{ t: number; tag: MemberState["_tag"] }> = []
    yield* Effect.forkScoped(Stream.runForEach(a.m.changes, (s) => Effect.map(now, (t) => void states.push({ t, tag: s._tag }))))
    yield* at(2_900)
    // a's next renewal is the last before the outage.
    if (options.slowReap === true) {
      // It says someone expired: a reaps, and the reap takes 9.5 s (the driver waits for it).
      yield* injectExpired(a.id)
      yield* setReapDelay(9_500)
    }
    yield* at(3_400)
    const t0 = lastRenewal(a.id)!
    expect(t0).toBeGreaterThan(2_900)
    const epoch = rec.working().find((w) => w.member === "a")!.epoch
    const starts = () => rec.marks.filter((m) => m.member === "a" && m.kind === "start").length
    const startsBefore = starts()
    yield* control.setOutage(true)
    const deadline = t0 + LEASE - MARGIN
    const outageEnd = deadline + options.outageEnd
    yield* at(outageEnd)
    yield* control.setOutage(false)
    yield* at(deadline) // no-op when the outage ended after the deadline
    const resumed = yield* untilEffect(
      Effect.map(a.m.state, (s) =>
        s._tag === "Assigned" && rec.working().some((w) => w.member === "a")),
      3 * HEARTBEAT,
      10
    ).pipe(Effect.catchAllDefect(() => Effect.succeed(undefined)))
    const after = yield* a.m.state
    // Says what a was doing if its work did not come back.
    const stuckAt = `a is ${after._tag} at ${yield* now}, working: ${rec.working().some((w) => w.member === "a")}`
    return { a, rec, states, deadline, epoch, starts, startsBefore, resumed, outageEnd, t0, stuckAt }
  })

const aMarks = (r: { readonly rec: { readonly marks: ReadonlyArray<{ member: string; kind: string; at: number; epoch: number }> } }) =>
  r.rec.marks.filter((m) => m.member === "a")

describe("Break 4: a fence always comes back", () => {
  it.scoped("outage ends 1 ms before the deadline: at the deadline the renewal wins the instant, the fence never fires", () =>
    Effect.gen(function*() {
      const r = yield* scenario("renewal-first", { outageEnd: -1 })
      expect(r.t0).toBe(3_300)
      // The renewal at the deadline succeeded first and moved it: the work never stopped.
      expect(aMarks(r).filter((m) => m.at > r.t0)).toEqual([])
      expect(r.states.filter((s) => s.t > r.t0)).toEqual([])
      expect(r.resumed, r.stuckAt).toBe(r.deadline)
      expect(yield* r.a.m.state).toMatchObject({ _tag: "Assigned", epoch: r.epoch })
      expect(r.rec.violations).toEqual([])
    }))

  for (const [name, end] of [["at the deadline", 0], ["1 ms after the deadline", 1]] as const) {
    it.scoped(`outage ends ${name}: the fence fires first; the next renewal starts the work again in the same epoch`, () =>
      Effect.gen(function*() {
        const r = yield* scenario(`fence-first-${end}`, { outageEnd: end })
        expect(r.t0).toBe(3_300)
        expect(r.resumed, `a's work did not come back within 3 heartbeats: ${r.stuckAt}`).toBeDefined()
        expect(r.resumed! - r.outageEnd).toBeLessThanOrEqual(2 * HEARTBEAT)
        expect(aMarks(r).filter((m) => m.at > r.t0).map((m) => [m.kind, m.at, m.epoch])).toEqual([
          ["end", r.deadline, r.epoch],
          ["start", r.deadline + HEARTBEAT, r.epoch]
        ])
        expect(r.states.filter((s) => s.t > r.t0).map((s) => [s.tag, s.t])).toEqual([
          ["Fenced", r.deadline], // stopping
          ["Fenced", r.deadline], // stopped
          ["Assigned", r.deadline + HEARTBEAT]
        ])
        expect(r.starts()).toBe(r.startsBefore + 1)
        expect(yield* r.a.m.state).toMatchObject({ _tag: "Assigned", epoch: r.epoch })
        expect(r.rec.violations).toEqual([])
      }))
  }

  it.scoped("the fence fires while the driver is busy (a slow reap) and a renewal moves the deadline before DeadlinePassed is taken: the work still comes back", () =>
    Effect.gen(function*() {
      const r = yield* scenario("slow-reap", { outageEnd: 1, slowReap: true })
      expect(r.t0).toBe(3_300)
      expect(r.resumed, `a's work did not come back within 3 heartbeats: ${r.stuckAt}`).toBeDefined()
      expect(r.resumed! - r.outageEnd).toBeLessThanOrEqual(2 * HEARTBEAT)
      // The fence timer stopped the work at the deadline, though the driver was busy reaping...
      expect(aMarks(r).filter((m) => m.at > r.t0)[0]).toMatchObject({ kind: "end", at: r.deadline })
      // ... the first renewal after the outage (deadline + 1 s) moved the deadline; the reap came
      // back at t0 + 9.5 s; only then did the driver take DeadlinePassed, whose deadline had moved.
      // It still went through Fenced and started the work again at once, in the same epoch.
      const reapBack = r.t0 + 9_500
      expect(r.states.filter((s) => s.t > r.t0).map((s) => [s.tag, s.t])).toEqual([
        ["Fenced", reapBack],
        ["Fenced", reapBack],
        ["Assigned", reapBack]
      ])
      expect(aMarks(r).filter((m) => m.at > r.deadline).map((m) => [m.kind, m.at, m.epoch])).toEqual([
        ["start", reapBack, r.epoch]
      ])
      expect(r.starts()).toBe(r.startsBefore + 1)
      expect(yield* r.a.m.state).toMatchObject({ _tag: "Assigned", epoch: r.epoch })
      expect(r.rec.violations).toEqual([])
    }))
})
