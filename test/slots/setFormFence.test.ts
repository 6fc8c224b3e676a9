/**
 * The fence's deadline interrupt takes the work runner's lock. A set form's restart (`stopSlots`,
 * `startSlot`) used to interrupt the old set forms one after another and wait for each under that
 * lock: every set form's cleanup fitting in fenceMargin (as docs/work.md asks), the member's other
 * work (per-slot work that stops at once, `whileAssigned`) was interrupted only when all of them had
 * stopped, past the member's lease, while another member, which had reaped it, worked the same slot;
 * a set form that would not stop held the fence back for as long as it ran (an adversarial review;
 * both tests failed before). Now the old set forms are interrupted together and waited for outside
 * the lock (by the stops of the slots they cover).
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Exit, Option, Scope } from "effect"
import * as InMemoryMembershipStore from "../../src/InMemoryMembershipStore.js"
import { StoreError } from "../../src/MembershipError.js"
import type { MembershipStoreService } from "../../src/MembershipStore.js"
import { at, collectLogs, until } from "../safety/support.js"
import { memberOn } from "./support.js"

interface Run {
  readonly member: string
  readonly slot: number
  readonly start: number
  end?: number
}


/** Records a run's start and, when interrupted, its end (it stops at once). */
const recorded = (runs: Array<Run>, member: string, slot: number) =>
  Effect.gen(function*() {
    const r: Run = { member, slot, start: yield* Clock.currentTimeMillis }
    runs.push(r)
    yield* Effect.never.pipe(Effect.onInterrupt(() =>
      Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => void (r.end = t)))
    ))
  })

/**
 * a works 4 slots (each slot's work stops at once), with `sets` set forms whose cleanups take
 * `cleanupMs` once b has joined (and, with `assigned`, member-level work); b joins, and the renewal
 * that tells a of it is a's last. Returns a's work still running past a's lease on the store, and
 * b's slot starts while a still ran that slot.
 */
const scenario = (groupId: string, sets: number, cleanupMs: number, assigned: boolean) =>
  Effect.gen(function*() {
    const { store: base } = yield* InMemoryMembershipStore.make
    let aId = ""
    let cutAfterEpoch: number | undefined = undefined
    let cut = false
    let lastGoodSend = 0
    const store: MembershipStoreService = {
      ...base,
      heartbeat: (...args: Parameters<MembershipStoreService["heartbeat"]>) =>
        Effect.gen(function*() {
          if (args[1] === aId && cut) return yield* Effect.fail(new StoreError({ operation: "heartbeat", reason: "cut (test)" }))
          const sent = yield* Clock.currentTimeMillis
          const view = yield* base.heartbeat(...args)
          if (args[1] === aId && Option.isSome(view)) {
            lastGoodSend = sent
            // a's connection is lost right after the renewal that told it of b's join.
            if (cutAfterEpoch !== undefined && view.value.epoch > cutAfterEpoch) cut = true
          }
          return view
        })
    }
    const runs: Array<Run> = []
    const join = (name: string) =>
      Effect.gen(function*() {
        const { m, scope } = yield* memberOn(store, groupId, name)
        yield* m.whileOwning((o) => recorded(runs, name, o.slot)).pipe(Scope.extend(scope))
        return { m, scope }
      })
    const a = yield* join("a")
    aId = a.m.memberId
    let slow = false
    for (let set = 0; set < sets; set++) {
      yield* a.m.whileOwningAll(() =>
        Effect.never.pipe(Effect.onInterrupt(() => (slow ? Effect.sleep(cleanupMs) : Effect.void)))
      ).pipe(Scope.extend(a.scope))
    }
    const member: Array<Run> = []
    if (assigned) yield* a.m.whileAssigned(() => recorded(member, "a", -1)).pipe(Scope.extend(a.scope))
    yield* until(() => runs.filter((r) => r.member === "a" && r.end === undefined).length === 4, 10_000, 10)
    const epoch = (yield* a.m.guard).epoch
    slow = true
    cutAfterEpoch = epoch
    const b = yield* join("b")
    yield* until(() => cut, 5_000, 1)
    const lastSend = lastGoodSend
    const leaseEnd = lastSend + 5_300
    yield* at(lastSend + 15_000)
    // Every a's work must have stopped by the end of a's lease (deadline + fenceMargin): it stops
    // at once when interrupted.
    const late = [...runs.filter((r) => r.member === "a" && r.start < lastSend), ...member]
      .filter((r) => r.end === undefined || r.end > leaseEnd)
    const overlaps = runs.filter((rb) => rb.member === "b").filter((rb) =>
      runs.some((ra) => ra.member === "a" && ra.slot === rb.slot && ra.start <= rb.start && (ra.end ?? Infinity) > rb.start)
    )
    yield* Scope.close(b.scope, Exit.void)
    return { late: late.map((r) => ({ slot: r.slot, end: r.end })), overlaps }
  })

describe("a set form's restart does not hold the fence back (slots mode, in memory)", () => {
  it.scoped("two set forms, each cleaning up within fenceMargin, do not delay the fence of the other slot work past the lease", () =>
    Effect.map(scenario("set-restart-fence", 2, 4_000, false), (r) => expect(r).toEqual({ late: [], overlaps: [] })))

  it.scoped("one set form that will not stop, restarted, does not hold back the fence of the other slot work and of whileAssigned work for as long as it runs", () => {
    const logs = collectLogs()
    return Effect.gen(function*() {
      // The set form will not stop for 60 s (the failure model).
      const r = yield* scenario("set-restart-stuck", 1, 60_000, true)
      // And loudly, at least: the fence's alarm that interrupted work has not stopped by the lease's end.
      const leaseEndAlarm = logs.lines.some((l) => /work interrupted at the lease deadline has not stopped/.test(l.message))
      expect({ ...r, leaseEndAlarm }).toEqual({ late: [], overlaps: [], leaseEndAlarm: true })
    }).pipe(Effect.provide(logs.layer))
  })
})
