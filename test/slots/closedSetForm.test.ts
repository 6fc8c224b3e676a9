/**
 * A closed `whileOwningAll` registration's run (interrupted, still cleaning up) covers every slot it
 * was started under: the stop of a slot given up waits for it, also when no other set form is
 * registered. Before, `stopSlots` waited for the slot's per-slot fibers only (and for the set forms
 * only through their restart, when one was registered): the slot was released at once, and its new
 * owner started it while the closed run still ran (an adversarial review; failed before).
 * In memory, TestClock, default timings; the cleanup (3 s) is within stopTimeout (5 s).
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Exit, Scope, TestClock } from "effect"
import * as InMemoryMembershipStore from "../../src/InMemoryMembershipStore.js"
import * as Membership from "../../src/Membership.js"
import { MembershipStore } from "../../src/MembershipStore.js"

interface Run {
  readonly member: string
  readonly slots: ReadonlyArray<number>
  readonly start: number
  end?: number
}

describe("a closed set form's run and the slots it covers (slots mode, in memory)", () => {
  it.scoped("a slot covered by a closed whileOwningAll run that is still stopping is not started elsewhere until it has stopped", () =>
    Effect.gen(function*() {
      const { store } = yield* InMemoryMembershipStore.make
      const runs: Array<Run> = []
      const record = (member: string, slots: ReadonlyArray<number>, cleanupMs: number) =>
        Effect.gen(function*() {
          const r: Run = { member, slots, start: yield* Clock.currentTimeMillis }
          runs.push(r)
          yield* Effect.never.pipe(Effect.onInterrupt(() =>
            Effect.sleep(cleanupMs).pipe(Effect.zipRight(Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => void (r.end = t)))))
          ))
        })
      const join = (name: string) =>
        Effect.gen(function*() {
          const scope = yield* Scope.make()
          const m = yield* Membership.make({ groupId: "closed-set-orphan", name, slots: 8 }).pipe(
            Effect.provideService(MembershipStore, store),
            Scope.extend(scope)
          )
          return { m, scope }
        })
      const a = yield* join("a")
      const reg = yield* Scope.make()
      yield* a.m.whileOwningAll((owned) => record("a", owned.slots, 3_000)).pipe(Scope.extend(reg))
      for (let i = 0; i < 500 && runs.at(-1)?.slots.length !== 8; i++) yield* TestClock.adjust("10 millis")
      expect(runs.at(-1)?.slots.length).toBe(8)
      // The app closes the registration (a layer rebuilt, a feature switched off): its run is
      // interrupted and cleans up for 3 s. A second member joins meanwhile.
      yield* Scope.close(reg, Exit.void)
      const b = yield* join("b")
      yield* b.m.whileOwning((owned) => record("b", [owned.slot], 0)).pipe(Scope.extend(b.scope))
      yield* TestClock.adjust("8 seconds")
      const aRun = runs.find((r) => r.member === "a")!
      const overlaps = runs.filter((r) =>
        r.member === "b" && aRun.slots.includes(r.slots[0]!) && r.start < (aRun.end ?? Infinity)
      ).map((r) => ({ slot: r.slots[0], startedAt: r.start, aRunEnded: aRun.end }))
      expect(overlaps).toEqual([])
    }))
})
