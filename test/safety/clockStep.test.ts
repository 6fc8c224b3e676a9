/**
 * Break 8: steps of the database clock (the clock leases are judged by) against the members' own
 * monotonic clocks. In-memory store (`control.stepClock`) and TestClock, default config: heartbeat
 * 1 s, lease 10 s, fence margin 2 s. A step is detected at a member's next renewal when the database
 * time between two renewals disagrees with the member's own elapsed time by more than
 * fenceMargin / 2 + the two round trips (here 1 s).
 *
 * What each step costs (as these tests measure it):
 * - Forward by less than the detection threshold (fenceMargin / 2 + round trips): nothing is
 *   detected; every lease is shortened by the step on the database clock, which the fence margin
 *   absorbs (members still stop before their lease can expire, as long as the step < fenceMargin).
 * - Forward by more than fenceMargin but less than lease − heartbeat (here 5 s): work goes on,
 *   renewals succeed; each member counts the step (`modulo_group_clock_steps_total`) and logs an
 *   error once. No member reaps for one lease of its own clock after it noticed the step, so a
 *   member that crashes at the step (whose lease now looks expired early) is reaped one lease after
 *   the step (+ up to one heartbeat), not before its own local deadline has stopped its work: the
 *   others lose up to lease + heartbeat of its share instead of lease. No overlap (G2).
 * - Forward by more than the lease (here 3.5 leases): every lease looks expired. Each member finds
 *   its row gone at its next renewal (within one heartbeat) while its own deadline is still ahead: it
 *   stops its work at once, logs an error (an alarm), and rejoins only after one lease of its own
 *   clock, by when every member of the lost epoch has stopped too. The whole group does no work for
 *   about one lease; it re-forms within lease + 2 heartbeats of the step. No overlap (G2).
 * - Backward, by any amount beyond the threshold (here 5 s): counted and logged; nothing else changes
 *   at once, but every lease now looks longer by the step, so a member that crashes is noticed up to
 *   lease + step after its last renewal.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Metric, Option } from "effect"
import * as Metrics from "../../src/MembershipMetrics.js"
import type { MemberRow } from "../../src/MembershipStore.js"
import { exactCover } from "../support/Recorder.js"
import { at, collectLogs, HEARTBEAT, LEASE, MARGIN, now, setup, until } from "./support.js"

const clockSteps = (groupId: string) =>
  Effect.map(Metric.value(Metrics.clockSteps.pipe(Metric.tagged("group", groupId))), (s) => s.count)

const alarms = (groupId: string) =>
  Effect.map(Metric.value(Metrics.alarms.pipe(Metric.tagged("group", groupId))), (s) => s.count)

const isNone = (result: unknown) => Option.isOption(result) && Option.isNone(result)
const isSome = (result: unknown) => Option.isOption(result) && Option.isSome(result)

/** Three members, a working group, their renewals staggered. */
const threeWorking = (groupId: string) =>
  Effect.gen(function*() {
    const s = yield* setup(groupId)
    const members = []
    for (const name of ["a", "b", "c"]) {
      members.push(yield* s.join({ name }))
      yield* at((yield* now) + 300)
    }
    yield* until(() => exactCover(s.rec.working(), 3))
    return { ...s, members }
  })

describe("Break 8: the database clock steps", () => {
  it.scoped("forward by several leases mid-epoch: each member stops at its next renewal, rejoins after a lease of its own clock; no overlap", () => {
    const logs = collectLogs()
    return Effect.gen(function*() {
      const groupId = "safety-clock-forward-big"
      const { control, members, of, rec } = yield* threeWorking(groupId)
      yield* at(5_500)
      const epoch = rec.working()[0]!.epoch
      const alarmsBefore = yield* alarms(groupId)
      const T = yield* now
      yield* control.stepClock(3 * LEASE + 5_000)

      const reformed = yield* until(
        () => exactCover(rec.working(), 3) && rec.working()[0]!.epoch > epoch,
        LEASE + 3 * HEARTBEAT,
        10
      )
      expect(reformed - T).toBeLessThanOrEqual(LEASE + 2 * HEARTBEAT)

      for (const m of members) {
        // Its first renewal after the step found its row gone, with its own deadline still ahead...
        const beat = of("heartbeat", m.id).find((c) => c.at >= T)!
        expect(beat.at - T).toBeLessThan(HEARTBEAT)
        expect(isNone(beat.result), `${m.name}'s renewal at ${beat.at}`).toBe(true)
        // ... so it stopped its work at once (that instant) ...
        const end = rec.marks.find((x) => x.member === m.name && x.kind === "end" && x.at >= T)!
        expect(end).toMatchObject({ at: beat.at, epoch })
        // ... and rejoined only after one lease of its own clock.
        const joins = of("join", m.id)
        expect(joins).toHaveLength(2)
        expect(joins[1]!.at).toBe(beat.done! + LEASE)
        // Nobody worked in the new epoch before every member had stopped in the old one.
        const firstNew = rec.marks.find((x) => x.kind === "start" && x.epoch > epoch)!
        expect(firstNew.at).toBeGreaterThanOrEqual(end.at)
      }
      // Loudly: one alarm per member, logged as an error.
      expect((yield* alarms(groupId)) - alarmsBefore).toBe(3)
      const errors = logs.lines.filter((l) => l.level === "ERROR" && /lease deadline was still ahead/.test(l.message))
      expect(errors).toHaveLength(3)
      expect(rec.violations).toEqual([])
    }).pipe(Effect.provide(logs.layer))
  })

  it.scoped("forward by more than fenceMargin, less than lease − heartbeat: renewals go on, the step is counted, a member that crashes at the step is not reaped for a lease", () => {
    const logs = collectLogs()
    return Effect.gen(function*() {
      const groupId = "safety-clock-forward-small"
      const { control, lastRenewal, members, of, rec, store } = yield* threeWorking(groupId)
      const [a, b, c] = members as [typeof members[0], typeof members[0], typeof members[0]]
      yield* at(5_500)
      const epoch = rec.working()[0]!.epoch
      const stepsBefore = yield* clockSteps(groupId)
      const T = yield* now
      const STEP = 5_000
      expect(STEP).toBeGreaterThan(MARGIN)
      expect(STEP).toBeLessThan(LEASE - HEARTBEAT)
      // c crashes (its calls hang from now on) right at the step.
      yield* control.hang(c.id)
      yield* control.stepClock(STEP)
      const cLast = lastRenewal(c.id)!
      const cLeaseOnDbClock = cLast + LEASE - STEP // when c's lease looks expired, in member time

      // Just before one lease after the step: nobody reaped; c still has its row; a and b renew fine.
      yield* at(T + LEASE - 1)
      expect(of("reap").filter((x) => x.at < T + LEASE)).toEqual([])
      const rows = yield* store.members(groupId)
      const cRow = rows.find((r: MemberRow) => r.memberId === c.id)
      expect(cRow, "c's row was reaped within a lease of the step").toBeDefined()
      expect(cRow!.leaseLeftMs).toBeLessThan(0) // it does look expired on the stepped clock
      for (const m of [a, b]) {
        const beats = of("heartbeat", m.id).filter((x) => x.at >= T)
        expect(beats.length).toBeGreaterThanOrEqual(9)
        expect(beats.every((x) => isSome(x.result))).toBe(true)
      }
      expect(rec.working().filter((w) => w.member !== "c").map((w) => w.epoch)).toEqual([epoch, epoch])
      // c stopped its own work at its local deadline, long before anyone may reap it.
      const cEnd = rec.marks.find((x) => x.member === "c" && x.kind === "end")!
      expect(cEnd.at).toBe(cLast + LEASE - MARGIN)
      expect(cLeaseOnDbClock).toBeLessThan(cEnd.at) // without the suppression, c would be reaped while working

      // Each of a and b counted the step once (c never renewed again), and logged it.
      expect((yield* clockSteps(groupId)) - stepsBefore).toBe(2)
      expect(logs.lines.filter((l) => l.level === "ERROR" && /database clock moved ahead/.test(l.message))).toHaveLength(2)
      expect(logs.lines.some((l) => /not reaping: the database clock stepped recently/.test(l.message))).toBe(true)

      // Then c is reaped, and a and b go on as two.
      const done = yield* until(() => exactCover(rec.working(), 2), 3 * HEARTBEAT, 10)
      expect(done - T).toBeLessThanOrEqual(LEASE + 2 * HEARTBEAT)
      const reaped = of("reap").find((x) => x.result === 1)!
      expect(reaped.at).toBeGreaterThanOrEqual(T + LEASE)
      expect(rec.violations).toEqual([])
    }).pipe(Effect.provide(logs.layer))
  })

  it.scoped("backward: the step is detected and counted by every member; work goes on in the same epoch", () => {
    const logs = collectLogs()
    return Effect.gen(function*() {
      const groupId = "safety-clock-backward"
      const { control, members, of, rec } = yield* threeWorking(groupId)
      yield* at(5_500)
      const epoch = rec.working()[0]!.epoch
      const stepsBefore = yield* clockSteps(groupId)
      const T = yield* now
      yield* control.stepClock(-5_000)
      yield* at(T + 2 * LEASE)
      expect((yield* clockSteps(groupId)) - stepsBefore).toBe(3)
      expect(logs.lines.filter((l) => l.level === "ERROR" && /database clock moved back/.test(l.message))).toHaveLength(3)
      for (const m of members) {
        expect(of("heartbeat", m.id).filter((x) => x.at >= T).every((x) => isSome(x.result))).toBe(true)
      }
      expect(exactCover(rec.working(), 3)).toBe(true)
      expect(rec.working().every((w) => w.epoch === epoch)).toBe(true)
      expect(rec.marks.filter((x) => x.at >= T)).toEqual([])
      expect(rec.violations).toEqual([])
    }).pipe(Effect.provide(logs.layer))
  })
})
