/**
 * Slots mode: a fence with work that will not stop (the third review of the night's fixes). A member's
 * renewals fail for 8.5 s: its deadline passes (it fences: its slots' work is interrupted and stops no
 * slot for 15 s) while its lease, on the store's clock, has not ended when they work again; two members
 * join and the table gives some of its slots away. Before, the fence's interrupt had cleared the slots
 * started, so the stop that followed found no run, reported each slot stopped at once, and the member
 * released it: the new owner started it beside the work still running (G2 per slot). Now a slot is
 * released only once its work has stopped. In-memory store, TestClock, default config (heartbeat 1 s,
 * lease 10 s, fence margin 2 s, stop timeout 5 s).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import * as Membership from "../../src/Membership.js"
import type { MembershipConfigInput } from "../../src/MembershipConfig.js"
import { StoreError } from "../../src/MembershipError.js"
import type { MembershipStoreService } from "../../src/MembershipStore.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import { makeSlotRecorder } from "../support/SlotRecorder.js"
import type { WorkRun } from "../safety/support.js"
import { at, collectLogs, now, recordingStore, stuckWork, until } from "../safety/support.js"

interface Run extends WorkRun {
  readonly slot: number
  readonly generation: number
}

describe("slots mode: a fence with work that will not stop", () => {
  it.scoped("a fenced member's slot is released only once its work has stopped: nobody starts it beside that work", () => {
    const logs = collectLogs()
    return Effect.gen(function*() {
      const groupId = "slots-fence-stuck"
      const s = yield* recordingStore
      const failing = new Set<string>()
      const store: MembershipStoreService = {
        ...s.store,
        heartbeat: (...args: Parameters<MembershipStoreService["heartbeat"]>) =>
          failing.has(args[1])
            ? Effect.fail(new StoreError({ operation: "heartbeat", reason: "connection lost (test)" }))
            : s.store.heartbeat(...args)
      }
      const rec = yield* makeSlotRecorder(store, groupId)
      const join = (input: Partial<MembershipConfigInput>) =>
        Effect.gen(function*() {
          const scope = yield* Scope.make()
          const m = yield* Membership.make({ groupId, ...input }).pipe(
            Effect.provideService(MembershipStore, store),
            Scope.extend(scope)
          )
          return { m, scope, id: m.memberId, close: Scope.close(scope, Exit.void) }
        })
      const a = yield* join({ name: "a", slots: 6 })
      yield* rec.track(a.m, "a").pipe(Scope.extend(a.scope))
      const b = yield* join({ name: "b", slots: 6 })
      yield* rec.track(b.m, "b").pipe(Scope.extend(b.scope))
      const c = yield* join({ name: "c", slots: 6 })
      const runs: Array<Run> = []
      let stuck = true
      yield* c.m.whileOwning((o) => stuckWork(runs, (start) => ({ slot: o.slot, generation: o.generation, start }), () => stuck))
        .pipe(Scope.extend(c.scope))
      const running = () => runs.filter((r) => r.end === undefined)
      yield* until(() => rec.covered() === 4 && running().length === 2, 10_000, 10)
      const cSlots = running().map((r) => r.slot)
      const t0 = yield* now
      // c's renewals fail for 8.5 s (a lost connection, a slow database): its deadline (8 s after its
      // last renewal) passes, it fences; its row's lease (10 s) has not ended when they work again.
      failing.add(c.id)
      yield* at(t0 + 8_500)
      failing.delete(c.id)
      // A fourth and a fifth member join: the table gives away some of c's slots.
      const d = yield* join({ name: "d", slots: 6 })
      yield* rec.track(d.m, "d").pipe(Scope.extend(d.scope))
      const e = yield* join({ name: "e", slots: 6 })
      yield* rec.track(e.m, "e").pipe(Scope.extend(e.scope))
      const from = t0
      yield* at((yield* now) + 5_000)
      const overlaps = rec.events.filter((ev) =>
        ev.kind === "start" && ev.at >= from &&
        runs.some((r) => r.slot === ev.slot && r.start <= ev.at && (r.end === undefined || r.end > ev.at))
      )
      stuck = false
      expect(overlaps).toEqual([])
      expect(rec.violations).toEqual([])
      // Loudly: the slot's work did not stop within the stop timeout.
      expect(logs.lines.some((l) => l.level === "ERROR" && /did not stop within stopTimeout/.test(l.message))).toBe(true)
      // Once c's work has stopped, the slots it gave away are started by their new owners, after it.
      yield* at(t0 + 30_000)
      const cEnd = Math.max(...runs.filter((r) => r.start < t0).map((r) => r.end ?? Infinity))
      expect(cEnd).toBeLessThan(t0 + 30_000)
      const handedOver = rec.events.filter((ev) => ev.kind === "start" && ev.at >= from && cSlots.includes(ev.slot))
      expect(handedOver.length).toBeGreaterThan(0)
      expect(handedOver.every((ev) => ev.at >= cEnd)).toBe(true)
      expect(rec.violations).toEqual([])
    }).pipe(Effect.provide(logs.layer))
  })
})
