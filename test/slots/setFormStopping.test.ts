/**
 * G2 end to end (in memory, TestClock): a set form interrupted by a restart that gave nothing up (a
 * slot gained: `startSlot`), still cleaning up, is waited for by the next stop of a slot it covers:
 * the next owner starts the slot only once it has stopped. Before, the member gave the slot up at
 * once, and its next owner started it while the old set form ran (a review; both tests failed before).
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Exit, Scope, TestClock } from "effect"
import * as InMemoryMembershipStore from "../../src/InMemoryMembershipStore.js"
import * as Membership from "../../src/Membership.js"
import type { MembershipConfigInput } from "../../src/MembershipConfig.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import { until } from "../safety/support.js"

interface Run {
  readonly member: string
  readonly slots: ReadonlyArray<number>
  readonly start: number
  end?: number
}

const config: Partial<MembershipConfigInput> = {
  slots: 4,
  heartbeat: "100 millis",
  lease: "5300 millis",
  fenceMargin: "5 seconds",
  statementTimeout: "100 millis"
}

describe("a set form still stopping from an earlier restart (slots mode, in memory)", () => {
  it.scoped("is waited for by the stop of a slot it covers", () =>
    Effect.gen(function*() {
      const groupId = "set-stopping-twice"
      const { store } = yield* InMemoryMembershipStore.make
      const runs: Array<Run> = []
      const sets: Array<Run> = []
      let slow = false
      const join = (name: string) =>
        Effect.gen(function*() {
          const scope = yield* Scope.make()
          const m = yield* Membership.make({ groupId, name, ...config }).pipe(
            Effect.provideService(MembershipStore, store),
            Scope.extend(scope)
          )
          yield* m.whileOwning((o) =>
            Effect.gen(function*() {
              const r: Run = { member: name, slots: [o.slot], start: yield* Clock.currentTimeMillis }
              runs.push(r)
              yield* Effect.never.pipe(Effect.onInterrupt(() =>
                Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => void (r.end = t)))
              ))
            })
          ).pipe(Scope.extend(scope))
          yield* m.whileOwningAll((owned) =>
            Effect.gen(function*() {
              const r: Run = { member: name, slots: owned.slots, start: yield* Clock.currentTimeMillis }
              sets.push(r)
              yield* Effect.never.pipe(Effect.onInterrupt(() =>
                Effect.gen(function*() {
                  // a cleanup of 3 s, within fenceMargin
                  if (slow) yield* Effect.sleep("3 seconds")
                  r.end = yield* Clock.currentTimeMillis
                })
              ))
            })
          ).pipe(Scope.extend(scope))
          return { m, scope }
        })
      const live = (name: string) => runs.filter((r) => r.member === name && r.end === undefined).length
      const b = yield* join("b")
      yield* until(() => live("b") === 4, 10_000, 10)
      const a = yield* join("a")
      yield* until(() => live("a") === 2 && live("b") === 2, 10_000, 10)
      yield* until(() => sets.filter((s) => s.end === undefined).length === 2, 10_000, 10)
      slow = true
      // b leaves: a gains b's slots (startSlot: its set form restarted, cleaning up for 3 s)
      yield* Effect.fork(Scope.close(b.scope, Exit.void))
      yield* until(() => live("a") === 4, 10_000, 10)
      // c joins at once: a gives up two slots
      const c = yield* join("c")
      yield* until(() => live("c") === 2, 10_000, 10)
      yield* until(() => sets.every((s) => s.end !== undefined || s.member !== "a" || s.slots.length === 2), 20_000, 10)
      // every c's slot start while an "a" set form covering that slot ran
      const overlaps = runs.filter((rc) => rc.member !== "a").flatMap((rc) =>
        sets.filter((s) =>
          s.member === "a" && s.slots.includes(rc.slots[0]) && s.start <= rc.start && (s.end ?? Infinity) > rc.start
        ).map((s) => ({ slot: rc.slots[0], cStart: rc.start, aSet: s.slots, aSetEnd: s.end }))
      )
      slow = false
      yield* Effect.fork(Scope.close(c.scope, Exit.void))
      yield* Effect.fork(Scope.close(a.scope, Exit.void))
      yield* TestClock.adjust("30 seconds")
      expect(overlaps).toEqual([])
    }))
  it.scoped("is waited for by the stop of a slot it covers (two joins in a row: two stops)", () =>
    Effect.gen(function*() {
      const groupId = "set-stopping-joins"
      const { store } = yield* InMemoryMembershipStore.make
      const runs: Array<Run> = []
      const sets: Array<Run> = []
      let slow = false
      const join = (name: string) =>
        Effect.gen(function*() {
          const scope = yield* Scope.make()
          const m = yield* Membership.make({ groupId, name, ...config }).pipe(
            Effect.provideService(MembershipStore, store),
            Scope.extend(scope)
          )
          yield* m.whileOwning((o) =>
            Effect.gen(function*() {
              const r: Run = { member: name, slots: [o.slot], start: yield* Clock.currentTimeMillis }
              runs.push(r)
              yield* Effect.never.pipe(Effect.onInterrupt(() =>
                Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => void (r.end = t)))
              ))
            })
          ).pipe(Scope.extend(scope))
          yield* m.whileOwningAll((owned) =>
            Effect.gen(function*() {
              const r: Run = { member: name, slots: owned.slots, start: yield* Clock.currentTimeMillis }
              sets.push(r)
              yield* Effect.never.pipe(Effect.onInterrupt(() =>
                Effect.gen(function*() {
                  // a cleanup of 3 s, within fenceMargin
                  if (slow) yield* Effect.sleep("3 seconds")
                  r.end = yield* Clock.currentTimeMillis
                })
              ))
            })
          ).pipe(Scope.extend(scope))
          return { m, scope }
        })
      const live = (name: string) => runs.filter((r) => r.member === name && r.end === undefined).length
      const a = yield* join("a")
      yield* until(() => live("a") === 4, 10_000, 10)
      yield* until(() => sets.filter((s) => s.end === undefined).length === 1, 10_000, 10)
      slow = true
      // b joins: a gives up two slots (its set form under {0,1,2,3} cleaning up for 3 s)
      const b = yield* join("b")
      yield* until(() => runs.some((r) => r.member === "a" && r.end !== undefined), 10_000, 10)
      // c and d join at once: a gives up one more slot (its stop the second one while the set form cleans up)
      const c = yield* join("c")
      const d = yield* join("d")
      yield* until(() => live("d") >= 1 && live("c") >= 1, 20_000, 10)
      yield* TestClock.adjust("10 seconds")
      // every c's slot start while an "a" set form covering that slot ran
      const overlaps = runs.filter((rc) => rc.member !== "a").flatMap((rc) =>
        sets.filter((s) =>
          s.member === "a" && s.slots.includes(rc.slots[0]) && s.start <= rc.start && (s.end ?? Infinity) > rc.start
        ).map((s) => ({ slot: rc.slots[0], cStart: rc.start, aSet: s.slots, aSetEnd: s.end }))
      )
      slow = false
      yield* Effect.fork(Scope.close(c.scope, Exit.void))
      yield* Effect.fork(Scope.close(b.scope, Exit.void))
      yield* Effect.fork(Scope.close(d.scope, Exit.void))
      yield* Effect.fork(Scope.close(a.scope, Exit.void))
      yield* TestClock.adjust("30 seconds")
      expect(overlaps).toEqual([])
    }))
})
