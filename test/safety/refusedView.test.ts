/**
 * A refused view while the member's work will not stop. A view that no committed state gives (the
 * member's own epoch with another index; in slots mode a slot it works at another generation: an
 * edit by hand, a lost commit) is refused: the member stops its work and rejoins. It must keep its
 * row and its lease while that work still runs (PROTOCOL.md: "A member never gives up its row, nor
 * lets its lease lapse on purpose, while any of its work may still run"): before, it went `Lost` at
 * once and stopped renewing, so with work that ignored its interruption its lease ran out, the
 * others reaped it and started a new epoch beside that work. In-memory store and TestClock,
 * default config (heartbeat 1 s, lease 10 s, stop timeout 5 s); the stuck work ignores its
 * interruption for 3 × stopTimeout, longer than a lease.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Scope } from "effect"
import type { MemberRow } from "../../src/MembershipStore.js"
import { makeSlotRecorder } from "../support/SlotRecorder.js"
import type { WorkRun } from "./support.js"
import { at, collectLogs, HEARTBEAT, LEASE, now, setup, STOP, stuckWork, until } from "./support.js"

interface Run extends WorkRun {
  readonly label: string
}

const rowOf = (rows: ReadonlyArray<MemberRow>, id: string) => rows.find((r) => r.memberId === id)

describe("a refused view while the work will not stop", () => {
  it.scoped("modulo mode: the member keeps its row and lease until its work stops, then rejoins; nobody starts beside that work", () => {
    const logs = collectLogs()
    return Effect.gen(function*() {
      const groupId = "safety-refused-view-stuck"
      const { injectView, join, rec, store } = yield* setup(groupId)
      yield* join({ name: "a" })
      yield* join({ name: "b" })
      const c = yield* join({ name: "c" }, false)
      const runs: Array<Run> = []
      let stuck = true
      yield* c.m.whileAssigned((a) => stuckWork(runs, (start) => ({ label: `${a.epoch}:${a.index}/${a.size}`, start }), () => stuck)).pipe(
        Scope.extend(c.scope)
      )
      yield* until(() => rec.working().length === 2 && rec.working().every((w) => w.size === 3) && runs.length === 1)
      const oldEpoch = rec.working()[0]!.epoch
      yield* at(1_500)
      const t0 = yield* now
      // From now on c's renewals say its own epoch with another index (no committed state says both),
      // as after a hand edit of its row in that epoch.
      yield* injectView(c.id, (v) => (v.epoch === oldEpoch ? { ...v, index: (v.index + 1) % v.size } : v))
      // Sample every 100 ms while c's work refuses to stop (at most 30 s).
      const samples: Array<{ t: number; row: MemberRow | undefined }> = []
      yield* at(t0 + 100)
      while (runs[0]!.end === undefined && (yield* now) < t0 + 30_000) {
        samples.push({ t: yield* now, row: rowOf(yield* store.members(groupId), c.id) })
        yield* at((yield* now) + 100)
      }
      stuck = false
      const cEnd = runs[0]!.end
      expect(cEnd, "c's work was asked to stop").toBeDefined()
      // It was asked to stop at the refused view (within a heartbeat), and took 3 × stopTimeout.
      expect(cEnd! - t0).toBeGreaterThanOrEqual(3 * STOP)
      expect(cEnd! - t0).toBeLessThanOrEqual(3 * STOP + HEARTBEAT + 100)
      // Longer than a lease: the case where a lapsed lease lets the others move on.
      expect(cEnd! - t0).toBeGreaterThan(LEASE)
      for (const s of samples) {
        expect(s.row, `c's row at ${s.t}`).toBeDefined()
        expect(s.row!.leaseLeftMs, `c's lease at ${s.t}`).toBeGreaterThan(LEASE - 2 * HEARTBEAT)
        // It acknowledged nothing newer while its work ran.
        expect(s.row!.ackedEpoch, `c's ack at ${s.t}`).toBe(oldEpoch)
      }
      // Nobody started a newer epoch before c's old work had ended.
      const newer = rec.marks.filter((m) => m.kind === "start" && m.epoch > oldEpoch)
      expect(newer.filter((m) => m.at < cEnd!)).toEqual([])
      // Loudly: the refusal, and the stuck work.
      const errors = logs.lines.filter((l) => l.level === "ERROR" && l.at >= t0 && l.at <= cEnd!)
      expect(errors.some((l) => /refusing the view/.test(l.message))).toBe(true)
      expect(errors.some((l) => /did not stop within stopTimeout/.test(l.message))).toBe(true)

      // Then c rejoins (a new epoch) and the group converges: a, b and c in one 3-member epoch.
      yield* until(
        () =>
          rec.working().length === 2 && runs.length >= 2 && runs.at(-1)!.end === undefined &&
          rec.working().every((w) => w.epoch > oldEpoch && w.size === 3),
        4 * HEARTBEAT
      )
      const working = [...rec.working().map((w) => w.index), Number(runs.at(-1)!.label.split(":")[1]!.split("/")[0])]
      expect(working.sort()).toEqual([0, 1, 2])
      expect(rec.violations).toEqual([])
    }).pipe(Effect.provide(logs.layer))
  })

  it.scoped("slots mode: the member keeps its row and lease until its slots' work stops, then rejoins; nobody starts its slots beside that work", () => {
    const logs = collectLogs()
    return Effect.gen(function*() {
      const groupId = "safety-refused-view-stuck-slots"
      const { injectView, join, store } = yield* setup(groupId)
      const rec = yield* makeSlotRecorder(store, groupId)
      const a = yield* join({ name: "a", slots: 6 }, false)
      yield* rec.track(a.m, "a").pipe(Scope.extend(a.scope))
      const b = yield* join({ name: "b", slots: 6 }, false)
      yield* rec.track(b.m, "b").pipe(Scope.extend(b.scope))
      const c = yield* join({ name: "c", slots: 6 }, false)
      const runs: Array<Run> = []
      let stuck = true
      yield* c.m.whileOwning((o) => stuckWork(runs, (start) => ({ label: `${o.slot}@${o.generation}`, start }), () => stuck)).pipe(Scope.extend(c.scope))
      const running = () => runs.filter((r) => r.end === undefined)
      yield* until(() => rec.covered() === 4 && running().length === 2, 10_000, 10)
      const oldEpoch = (yield* c.m.state as Effect.Effect<{ readonly epoch?: number }>).epoch!
      const old = running()
      const cSlots = old.map((r) => Number(r.label.split("@")[0]))
      const first = cSlots[0]!
      yield* at((yield* now) + 500)
      const t0 = yield* now
      const from = rec.events.length
      // From now on c's renewals say one of the slots it works is at another generation, as after a
      // hand edit of that slot's row in this epoch.
      yield* injectView(c.id, (v) =>
        v.epoch === oldEpoch && v.slots !== undefined
          ? { ...v, slots: { ...v.slots, held: v.slots.held.map((h) => h.slot === first ? { ...h, generation: h.generation + 1 } : h) } }
          : v)
      const samples: Array<{ t: number; row: MemberRow | undefined }> = []
      yield* at(t0 + 100)
      while (old.some((r) => r.end === undefined) && (yield* now) < t0 + 30_000) {
        samples.push({ t: yield* now, row: rowOf(yield* store.members(groupId), c.id) })
        yield* at((yield* now) + 100)
      }
      stuck = false
      const ends = old.map((r) => r.end)
      expect(ends.every((e) => e !== undefined), "c's slot work was asked to stop").toBe(true)
      const cEnd = Math.max(...(ends as Array<number>))
      expect(cEnd - t0).toBeGreaterThanOrEqual(3 * STOP)
      expect(cEnd - t0).toBeGreaterThan(LEASE)
      for (const s of samples) {
        expect(s.row, `c's row at ${s.t}`).toBeDefined()
        expect(s.row!.leaseLeftMs, `c's lease at ${s.t}`).toBeGreaterThan(LEASE - 2 * HEARTBEAT)
      }
      // Nobody started one of c's slots before c's work on it had ended.
      expect(rec.events.slice(from).filter((e) => e.kind === "start" && cSlots.includes(e.slot) && e.at < cEnd)).toEqual([])
      const errors = logs.lines.filter((l) => l.level === "ERROR" && l.at >= t0 && l.at <= cEnd)
      expect(errors.some((l) => /refusing the view/.test(l.message))).toBe(true)

      // Then c rejoins and the group converges: every slot run, two by each member.
      yield* until(() => rec.covered() === 4 && running().length === 2, 4 * HEARTBEAT)
      const cNow = running().map((r) => Number(r.label.split("@")[0]))
      const all = [...[...rec.running().values()].flat(), ...cNow].sort((x, y) => x - y)
      expect(all).toEqual([0, 1, 2, 3, 4, 5])
      expect(rec.violations).toEqual([])
    }).pipe(Effect.provide(logs.layer))
  })
})
