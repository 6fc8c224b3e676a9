/**
 * After a fence and a renewal in time (slots mode, in memory, TestClock): one member with 4 slots;
 * its renewals fail for 1 s (fenced), then succeed again within its lease. Every registration runs
 * again: per-slot work on every slot, the set form once under [0,1,2,3], one-shot runs exactly once
 * per start (a review: a one-shot set form ran under [0], then [0,1,2,3]; failed before).
 */
import { expect, it } from "@effect/vitest"
import { Clock, Effect, Exit, Scope } from "effect"
import * as InMemoryMembershipStore from "../../src/InMemoryMembershipStore.js"
import * as Membership from "../../src/Membership.js"
import { StoreError } from "../../src/MembershipError.js"
import type { MembershipStoreService } from "../../src/MembershipStore.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import { until } from "../safety/support.js"
import { fastSlots } from "./support.js"


it.scoped("after a fence and a renewal in time, all work runs again, one-shots once", () =>
  Effect.gen(function*() {
    const { store: base } = yield* InMemoryMembershipStore.make
    let cut = false
    const store: MembershipStoreService = {
      ...base,
      heartbeat: (...args: Parameters<MembershipStoreService["heartbeat"]>) =>
        cut ? Effect.fail(new StoreError({ operation: "heartbeat", reason: "cut (test)" })) : base.heartbeat(...args)
    }
    const scope = yield* Scope.make()
    const m = yield* Membership.make({ groupId: "fence-restart", name: "a", ...fastSlots }).pipe(
      Effect.provideService(MembershipStore, store),
      Scope.extend(scope)
    )
    const slotRuns: Array<{ slot: number; end?: number }> = []
    const setRuns: Array<{ slots: string; end?: number }> = []
    const oneShotSlot: Array<number> = []
    const oneShotSet: Array<string> = []
    let oneShotAssigned = 0
    yield* m.whileOwning((o) => Effect.suspend(() => {
      const r: { slot: number; end?: number } = { slot: o.slot }
      slotRuns.push(r)
      return Effect.never.pipe(Effect.onInterrupt(() => Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => void (r.end = t)))))
    })).pipe(Scope.extend(scope))
    yield* m.whileOwningAll((o) => Effect.suspend(() => {
      const r: { slots: string; end?: number } = { slots: o.slots.join(",") }
      setRuns.push(r)
      return Effect.never.pipe(Effect.onInterrupt(() => Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => void (r.end = t)))))
    })).pipe(Scope.extend(scope))
    yield* m.whileOwning((o) => Effect.sync(() => void oneShotSlot.push(o.slot))).pipe(Scope.extend(scope))
    yield* m.whileOwningAll((o) => Effect.sync(() => void oneShotSet.push(o.slots.join(",")))).pipe(Scope.extend(scope))
    yield* m.whileAssigned(() => Effect.sync(() => void oneShotAssigned++)).pipe(Scope.extend(scope))
    const running = () => ({
      slots: slotRuns.filter((r) => r.end === undefined).map((r) => r.slot).sort().join(","),
      sets: setRuns.filter((r) => r.end === undefined).map((r) => r.slots)
    })
    yield* until(() => running().slots === "0,1,2,3" && running().sets.join("|") === "0,1,2,3", 10_000, 10)
    yield* until(() => false, 1_000, 100).pipe(Effect.catchAllDefect(() => Effect.void))
    const before = { slot: oneShotSlot.length, set: oneShotSet.length, assigned: oneShotAssigned }
    cut = true
    yield* until(() => running().slots === "", 10_000, 10)
    cut = false
    yield* until(() => running().slots === "0,1,2,3" && running().sets.join("|") === "0,1,2,3", 10_000, 10).pipe(
      Effect.catchAllDefect(() => Effect.void)
    )
    yield* until(() => false, 3_000, 100).pipe(Effect.catchAllDefect(() => Effect.void))
    const after = {
      running: running(),
      oneShotSlot: oneShotSlot.slice(before.slot).sort().join(","),
      oneShotSet: oneShotSet.slice(before.set),
      oneShotAssigned: oneShotAssigned - before.assigned,
      state: (yield* m.state)._tag
    }
    yield* Scope.close(scope, Exit.void)
    expect(after).toEqual({
      running: { slots: "0,1,2,3", sets: ["0,1,2,3"] },
      oneShotSlot: "0,1,2,3",
      oneShotSet: ["0,1,2,3"],
      oneShotAssigned: 1,
      state: "Assigned"
    })
  }))
