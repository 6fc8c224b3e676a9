/**
 * G2 end to end (in memory, TestClock): a set form interrupted by a restart that gave nothing up (a
 * slot gained: `startSlot`), still cleaning up, is waited for by the next stop of a slot it covers:
 * the next owner starts the slot only once it has stopped. Before, the member gave the slot up at
 * once, and its next owner started it while the old set form ran (a review; both tests failed before).
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Exit, Scope, TestClock } from "effect"
import * as InMemoryMembershipStore from "../../src/InMemoryMembershipStore.js"
import { until } from "../safety/support.js"
import { memberOn } from "./support.js"

interface Run {
  readonly member: string
  readonly slots: ReadonlyArray<number>
  readonly start: number
  end?: number
}


/**
 * Members of one group in memory, each with per-slot work (stops at once) and a set form whose
 * cleanup takes 3 s once `slow` is set; the runs as they started and ended, and the overlaps of
 * other members' slot starts with a's set forms covering that slot.
 */
const group = (groupId: string) =>
  Effect.gen(function*() {
    const { store } = yield* InMemoryMembershipStore.make
    const runs: Array<Run> = []
    const sets: Array<Run> = []
    const slow = { on: false }
    const join = (name: string) =>
      Effect.gen(function*() {
        const { m, scope } = yield* memberOn(store, groupId, name)
        const recorded = (into: Array<Run>, slots: ReadonlyArray<number>, cleanup: Effect.Effect<void>) =>
          Effect.gen(function*() {
            const r: Run = { member: name, slots, start: yield* Clock.currentTimeMillis }
            into.push(r)
            yield* Effect.never.pipe(Effect.onInterrupt(() =>
              Effect.zipRight(cleanup, Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => void (r.end = t))))
            ))
          })
        yield* m.whileOwning((o) => recorded(runs, [o.slot], Effect.void)).pipe(Scope.extend(scope))
        // A cleanup of 3 s, within fenceMargin.
        yield* m.whileOwningAll((owned) => recorded(sets, owned.slots, Effect.suspend(() => slow.on ? Effect.sleep("3 seconds") : Effect.void)))
          .pipe(Scope.extend(scope))
        return { m, scope }
      })
    const live = (name: string) => runs.filter((r) => r.member === name && r.end === undefined).length
    // Every other member's slot start while an "a" set form covering that slot ran.
    const overlaps = () =>
      runs.filter((rc) => rc.member !== "a").flatMap((rc) =>
        sets.filter((s) =>
          s.member === "a" && s.slots.includes(rc.slots[0]!) && s.start <= rc.start && (s.end ?? Infinity) > rc.start
        ).map((s) => ({ slot: rc.slots[0], cStart: rc.start, aSet: s.slots, aSetEnd: s.end }))
      )
    return { runs, sets, slow, join, live, overlaps }
  })

describe("a set form still stopping from an earlier restart (slots mode, in memory)", () => {
  it.scoped("is waited for by the stop of a slot it covers", () =>
    Effect.gen(function*() {
      const { join, live, overlaps, sets, slow } = yield* group("set-stopping-twice")
      const b = yield* join("b")
      yield* until(() => live("b") === 4, 10_000, 10)
      const a = yield* join("a")
      yield* until(() => live("a") === 2 && live("b") === 2, 10_000, 10)
      yield* until(() => sets.filter((s) => s.end === undefined).length === 2, 10_000, 10)
      slow.on = true
      // b leaves: a gains b's slots (startSlot: its set form restarted, cleaning up for 3 s)
      yield* Effect.fork(Scope.close(b.scope, Exit.void))
      yield* until(() => live("a") === 4, 10_000, 10)
      // c joins at once: a gives up two slots
      const c = yield* join("c")
      yield* until(() => live("c") === 2, 10_000, 10)
      yield* until(() => sets.every((s) => s.end !== undefined || s.member !== "a" || s.slots.length === 2), 20_000, 10)
      const found = overlaps()
      slow.on = false
      yield* Effect.fork(Scope.close(c.scope, Exit.void))
      yield* Effect.fork(Scope.close(a.scope, Exit.void))
      yield* TestClock.adjust("30 seconds")
      expect(found).toEqual([])
    }))

  it.scoped("is waited for by the stop of a slot it covers (two joins in a row: two stops)", () =>
    Effect.gen(function*() {
      const { join, live, overlaps, runs, sets, slow } = yield* group("set-stopping-joins")
      const a = yield* join("a")
      yield* until(() => live("a") === 4, 10_000, 10)
      yield* until(() => sets.filter((s) => s.end === undefined).length === 1, 10_000, 10)
      slow.on = true
      // b joins: a gives up two slots (its set form under {0,1,2,3} cleaning up for 3 s)
      const b = yield* join("b")
      yield* until(() => runs.some((r) => r.member === "a" && r.end !== undefined), 10_000, 10)
      // c and d join at once: a gives up one more slot (its stop the second one while the set form cleans up)
      const c = yield* join("c")
      const d = yield* join("d")
      yield* until(() => live("d") >= 1 && live("c") >= 1, 20_000, 10)
      yield* TestClock.adjust("10 seconds")
      const found = overlaps()
      slow.on = false
      for (const m of [c, b, d, a]) yield* Effect.fork(Scope.close(m.scope, Exit.void))
      yield* TestClock.adjust("30 seconds")
      expect(found).toEqual([])
    }))
})
