/**
 * Slots mode end to end on the in-memory store, under the TestClock: members with `whileOwning`
 * work join, leave, crash and hang. Checked at every slot start (SlotRecorder): nobody else runs the
 * slot, and the store says the starter holds it at that generation. And: members whose slots do not
 * move never stop any work; a slot given up is stopped before its new owner starts it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Metric, Option, Scope, TestClock } from "effect"
import * as Metrics from "../../src/MembershipMetrics.js"
import * as InMemoryMembershipStore from "../../src/InMemoryMembershipStore.js"
import * as Membership from "../../src/Membership.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import { makeSlotRecorder } from "../support/SlotRecorder.js"
import { advanceUntil } from "../support/TestClock.js"

const groupId = "g"

const setup = (slots: number) =>
  Effect.gen(function*() {
    const store = yield* MembershipStore
    const control = yield* InMemoryMembershipStore.InMemoryStoreControl
    const rec = yield* makeSlotRecorder(store, groupId)
    const join = (name: string, input: Partial<Parameters<typeof Membership.make>[0]> = {}) =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const m = yield* Membership.make({ groupId, name, slots, ...input }).pipe(Scope.extend(scope))
        yield* rec.track(m, name).pipe(Scope.extend(scope))
        return { m, name, close: Scope.close(scope, Exit.void) }
      })
    return { store, control, rec, join }
  })

const inMemory = <A, E>(
  effect: Effect.Effect<A, E, MembershipStore | InMemoryMembershipStore.InMemoryStoreControl | Scope.Scope>
) => Effect.provide(Effect.scoped(effect), InMemoryMembershipStore.layer)

const sizes = (running: Map<string, Array<number>>) => [...running.values()].map((s) => s.length).sort((a, b) => a - b)

describe("slots mode, in memory", () => {
  it.effect("a join: the newcomer starts only the slots the others stopped and released; the slots that stay never stop", () =>
    inMemory(Effect.gen(function*() {
      const { join, rec } = yield* setup(8)
      const a = yield* join("a")
      yield* advanceUntil(() => rec.covered() === 8)
      expect(rec.running().get(a.m.memberId)).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
      const from = rec.events.length
      const b = yield* join("b")
      yield* advanceUntil(() => rec.running().get(b.m.memberId)?.length === 4, Duration.seconds(5))
      expect(rec.running().get(a.m.memberId)).toEqual([0, 1, 2, 3])
      expect(rec.running().get(b.m.memberId)).toEqual([4, 5, 6, 7])
      // a stopped exactly the four slots it gave up, each before b started it; nothing else stopped.
      expect(rec.stopsOf(a.m.memberId, from).map((e) => e.slot).sort()).toEqual([4, 5, 6, 7])
      for (const start of rec.startsOf(b.m.memberId, from)) {
        const stop = rec.events.findIndex((e) => e.kind === "stop" && e.member === a.m.memberId && e.slot === start.slot)
        expect(stop).toBeGreaterThanOrEqual(0)
        expect(stop).toBeLessThan(rec.events.indexOf(start))
        expect(start.generation).toBe(2)
      }
      expect(rec.startsOf(a.m.memberId, from)).toEqual([])
      expect(rec.violations).toEqual([])
      // Membership.owned follows.
      expect(yield* a.m.owned).toEqual({ slots: [0, 1, 2, 3], generations: [1, 1, 1, 1], count: 8, owner: { groupId: a.m.config.groupId, memberId: a.m.memberId } })
      expect((yield* a.m.state)._tag).toBe("Assigned")
    })))

  it.effect("a leave hands the leaver's slots over at once; a crash's only after its lease; nobody else stops", () =>
    inMemory(Effect.gen(function*() {
      const { control, join, rec } = yield* setup(12)
      const a = yield* join("a")
      const b = yield* join("b")
      const c = yield* join("c")
      yield* advanceUntil(() => rec.covered() === 12 && sizes(rec.running()).join() === "4,4,4", Duration.seconds(10))
      // c leaves: its four slots go to a and b, who stop nothing.
      let from = rec.events.length
      const held = rec.running().get(c.m.memberId)!
      yield* c.close
      const took = yield* advanceUntil(() => rec.covered() === 12 && sizes(rec.running()).join() === "6,6", Duration.seconds(5))
      expect(took).toBeLessThan(1_000)
      expect(rec.stopsOf(a.m.memberId, from)).toEqual([])
      expect(rec.stopsOf(b.m.memberId, from)).toEqual([])
      expect([...rec.startsOf(a.m.memberId, from), ...rec.startsOf(b.m.memberId, from)].map((e) => e.slot).sort((x, y) => x - y))
        .toEqual(held)
      // b crashes (its calls hang): its slots stay unworked until its lease (10 s) has run out.
      from = rec.events.length
      const lost = rec.running().get(b.m.memberId)!
      yield* control.hang(b.m.memberId)
      const crashedAt = yield* TestClock.currentTimeMillis
      // b fences itself (G3): its slots stop before its lease can expire.
      yield* advanceUntil(() => rec.stopsOf(b.m.memberId, from).length === 6, Duration.seconds(10))
      expect((yield* TestClock.currentTimeMillis) - crashedAt).toBeLessThan(10_000)
      yield* advanceUntil(() => rec.running().get(a.m.memberId)?.length === 12, Duration.seconds(20))
      const firstStart = rec.startsOf(a.m.memberId, from)[0]!
      expect(firstStart.at - crashedAt).toBeGreaterThanOrEqual(9_000)
      expect(rec.startsOf(a.m.memberId, from).map((e) => e.slot).sort((x, y) => x - y)).toEqual(lost)
      expect(rec.stopsOf(a.m.memberId, from)).toEqual([])
      expect(rec.violations).toEqual([])
      yield* control.resume(b.m.memberId)
    })))

  it.effect("work of a slot that will not stop keeps that slot held (never released) until it stops; the member's other slots go on", () =>
    inMemory(Effect.gen(function*() {
      const { join, rec } = yield* setup(2)
      const a = yield* join("a")
      // Slot 1's work ignores interruption for 20 s (past the 5 s stop timeout).
      yield* a.m.whileOwning((owned) =>
        owned.slot === 1 ? Effect.zipRight(Effect.never, Effect.void).pipe(Effect.onInterrupt(() => Effect.sleep("20 seconds"))) : Effect.never
      )
      yield* advanceUntil(() => rec.covered() === 2)
      const from = rec.events.length
      const startedAt = yield* TestClock.currentTimeMillis
      const alarms = Metrics.alarms.pipe(Metric.tagged("group", groupId))
      const alarmsBefore = (yield* Metric.value(alarms)).count
      const b = yield* join("b")
      yield* advanceUntil(() => rec.running().get(b.m.memberId)?.length === 1, Duration.seconds(40), Duration.millis(100))
      const took = (yield* TestClock.currentTimeMillis) - startedAt
      expect(took).toBeGreaterThanOrEqual(20_000)
      // Said once, past the stop timeout.
      expect((yield* Metric.value(alarms)).count - alarmsBefore).toBe(1)
      // a's slot 0 never stopped; slot 1 stopped (its recorder's run at once, the stuck run after 20 s).
      expect(rec.stopsOf(a.m.memberId, from).map((e) => e.slot)).toEqual([1])
      expect(rec.running().get(a.m.memberId)).toEqual([0])
      expect(rec.violations).toEqual([])
      expect((yield* a.m.state)._tag).toBe("Assigned")
    })))

  it.effect("the set form runs under the whole set and restarts when it changes; whileAssigned runs once", () =>
    inMemory(Effect.gen(function*() {
      const { join, rec } = yield* setup(4)
      const a = yield* join("a")
      const sets: Array<ReadonlyArray<number>> = []
      let assignedRuns = 0
      yield* a.m.whileOwningAll((owned) => Effect.sync(() => sets.push(owned.slots)).pipe(Effect.zipRight(Effect.never)))
      yield* a.m.whileAssigned(() => Effect.sync(() => assignedRuns++).pipe(Effect.zipRight(Effect.never)))
      yield* advanceUntil(() => sets.length > 0 && sets[sets.length - 1]!.length === 4)
      yield* join("b")
      yield* advanceUntil(() => sets[sets.length - 1]!.length === 2 && rec.covered() === 4, Duration.seconds(5))
      expect(sets[sets.length - 1]).toEqual([0, 1])
      // No barrier in slots mode: the member-level work started once and was never restarted.
      expect(assignedRuns).toBe(1)
      expect(rec.violations).toEqual([])
    })))

  it.effect("at the lease deadline every slot stops: the set form is not started again under the slots left (G3)", () =>
    inMemory(Effect.gen(function*() {
      const { control, join } = yield* setup(8)
      const a = yield* join("a")
      const runs: Array<{ readonly at: number; readonly slots: ReadonlyArray<number> }> = []
      yield* a.m.whileOwningAll((owned) =>
        Effect.flatMap(TestClock.currentTimeMillis, (at) => Effect.sync(() => runs.push({ at, slots: owned.slots }))).pipe(
          // Its stop takes a moment (as real work's does).
          Effect.zipRight(Effect.never.pipe(Effect.onInterrupt(() => Effect.sleep("50 millis"))))
        )
      )
      yield* advanceUntil(() => runs.length > 0 && runs[runs.length - 1]!.slots.length === 8)
      // a's calls hang: its lease deadline passes and every slot must stop.
      yield* control.hang(a.m.memberId)
      const hungAt = yield* TestClock.currentTimeMillis
      const before = runs.length
      yield* advanceUntil(() => (a.m.owned.pipe(Effect.runSync)).slots.length === 0, Duration.seconds(15))
      yield* TestClock.adjust(Duration.seconds(2))
      // No set-form run starts past the deadline (restarts check that work may start).
      expect(runs.slice(before)).toEqual([])
      expect(runs.every((r) => r.at <= hungAt)).toBe(true)
      yield* control.resume(a.m.memberId)
    })))

  it.effect("a set form that will not stop does not hold up the lease deadline's stop of the member's other slot work (G2)", () =>
    inMemory(Effect.gen(function*() {
      const { control, join, rec } = yield* setup(8)
      const a = yield* join("a", { lease: Duration.seconds(10) })
      const setRuns: Array<ReadonlyArray<number>> = []
      // The set form ignores its interruption for 60 s (the app's fault: it alone runs on).
      yield* a.m.whileOwningAll((owned) =>
        Effect.sync(() => setRuns.push(owned.slots)).pipe(
          Effect.zipRight(Effect.never.pipe(Effect.onInterrupt(() => Effect.sleep("60 seconds"))))
        )
      )
      yield* advanceUntil(() => rec.covered() === 8 && setRuns.length > 0)
      // b joins: a gives up four slots, and its set form is restarted (it will not stop for 60 s).
      const b = yield* join("b", { lease: Duration.seconds(10) })
      yield* TestClock.adjust(Duration.seconds(1))
      // a's calls hang: at its lease deadline every slot work of a must stop, the set form's
      // stubbornness notwithstanding; b takes the slots over once a's lease has run out.
      yield* control.hang(a.m.memberId)
      const hungAt = yield* TestClock.currentTimeMillis
      yield* advanceUntil(() => rec.running().get(b.m.memberId)?.length === 8, Duration.seconds(40), Duration.millis(100))
      const tookOver = (yield* TestClock.currentTimeMillis) - hungAt
      // Well before the set form stops (60 s): the lease (10 s), then b's reap.
      expect(tookOver).toBeLessThan(20_000)
      expect(rec.running().get(a.m.memberId)).toBeUndefined()
      expect(rec.violations).toEqual([])
      // Every stop of a's slot work came before its lease ran out.
      for (const stop of rec.stopsOf(a.m.memberId)) expect(stop.at).toBeLessThan(hungAt + 10_000)
      yield* control.resume(a.m.memberId)
    })))

  it.effect("slots given up together stop together: the set form restarts once per change, not once per slot", () =>
    inMemory(Effect.gen(function*() {
      const { join, rec } = yield* setup(16)
      const a = yield* join("a")
      const calls: Array<number> = []
      yield* a.m.whileOwningAll((owned) => {
        calls.push(owned.slots.length)
        return Effect.never
      })
      yield* advanceUntil(() => rec.covered() === 16 && calls[calls.length - 1] === 16)
      const before = calls.length
      const b = yield* join("b")
      yield* advanceUntil(() => rec.running().get(b.m.memberId)?.length === 8, Duration.seconds(5))
      // One restart under the 8 slots a keeps (before: 7 more, under 15, 14, ... 9).
      expect(calls.slice(before)).toEqual([8])
    })))

  it.effect("metrics: slots working, slot starts and releases follow the handoffs", () =>
    inMemory(Effect.gen(function*() {
      const { join, rec } = yield* setup(8)
      const tagged = <M extends Metric.Metric<any, any, any>>(m: M) => m.pipe(Metric.tagged("group", groupId)) as M
      const working = tagged(Metrics.slotsWorking)
      const starts = tagged(Metrics.slotStarts)
      const releases = tagged(Metrics.slotReleases)
      const read = Effect.all({
        working: Effect.map(Metric.value(working), (s) => s.value),
        starts: Effect.map(Metric.value(starts), (s) => s.count),
        releases: Effect.map(Metric.value(releases), (s) => s.count)
      })
      const before = yield* read
      const delta = Effect.map(read, (now) => ({
        working: now.working - before.working,
        starts: now.starts - before.starts,
        releases: now.releases - before.releases
      }))
      const a = yield* join("a")
      yield* advanceUntil(() => rec.covered() === 8)
      expect(yield* delta).toEqual({ working: 8, starts: 8, releases: 0 })
      const b = yield* join("b")
      yield* advanceUntil(() => rec.running().get(b.m.memberId)?.length === 4, Duration.seconds(5))
      // a stopped and released 4 (one process: the gauge is the sum over its members).
      expect(yield* delta).toEqual({ working: 8, starts: 12, releases: 4 })
      yield* b.close
      yield* advanceUntil(() => rec.running().get(a.m.memberId)?.length === 8, Duration.seconds(5))
      expect((yield* delta).working).toBe(8)
      yield* a.close
      expect((yield* delta).working).toBe(0)
    })))

  it.effect("the database goes back (a restore, a failover that lost the last commits): a slot released before is not started again from the older view", () =>
    inMemory(Effect.gen(function*() {
      // Found by an adversarial review on PostgreSQL: the older view showed a's released slot as
      // held and owned by a at its old generation, and a started it while b still worked it.
      const { control, join, rec } = yield* setup(2)
      const a = yield* join("a")
      yield* advanceUntil(() => rec.covered() === 2)
      const restore = yield* control.snapshot
      const b = yield* join("b")
      yield* advanceUntil(() => rec.running().get(b.m.memberId)?.length === 1, Duration.seconds(5))
      const from = rec.events.length
      yield* restore
      // Well past b's next renewals (it finds its row gone, stops, rejoins a lease later) and a's.
      yield* TestClock.adjust(Duration.seconds(3))
      expect(rec.startsOf(a.m.memberId, from)).toEqual([])
      expect(rec.violations).toEqual([])
    })))

  it.effect("the database goes back past a leave: the survivors give the leaver's slots back, and a later join hands them out without overlap", () =>
    inMemory(Effect.gen(function*() {
      // A second review: when views of an older epoch were ignored altogether, the survivors kept
      // the leaver's slots the database had given back to it, nobody reaped its row, and the next
      // join handed those slots out at the generations the survivors worked under.
      const { control, join, rec } = yield* setup(6)
      yield* join("a")
      yield* join("b")
      const c = yield* join("c")
      yield* advanceUntil(() => rec.covered() === 6 && sizes(rec.running()).join() === "2,2,2", Duration.seconds(5))
      const restore = yield* control.snapshot
      yield* c.close
      yield* advanceUntil(() => rec.covered() === 6 && sizes(rec.running()).join() === "3,3", Duration.seconds(5))
      yield* restore
      // Past c's lease (10 s): its row is expired, and the next change reaps it.
      yield* TestClock.adjust(Duration.seconds(12))
      yield* join("d")
      yield* advanceUntil(() => rec.covered() === 6 && rec.running().size === 3, Duration.seconds(20))
      expect(rec.violations).toEqual([])
    })))

  it.effect("a member asking for another slot count, or for modulo mode, is refused and never works", () =>
    inMemory(Effect.gen(function*() {
      const { join, rec } = yield* setup(8)
      yield* join("a")
      yield* advanceUntil(() => rec.covered() === 8)
      const wrong = yield* join("b", { slots: 16 })
      const modulo = yield* join("c", { slots: undefined })
      yield* TestClock.adjust(Duration.seconds(5))
      expect((yield* wrong.m.state)._tag).toBe("Joining")
      expect((yield* modulo.m.state)._tag).toBe("Joining")
      expect(Option.isNone(yield* wrong.m.assignment)).toBe(true)
      expect(rec.covered()).toBe(8)
    })))
})
