/**
 * `Work` in slots mode, on the in-memory store under the TestClock. In slots mode a change is no
 * barrier: the membership does not restart `whileAssigned` work at a newer epoch (Transition:
 * Assigned + Renewed with a newer epoch stays Assigned), and `guard` is member-level (assigned, the
 * lease deadline ahead; docs/slots.md). Before the fix `runEvery` compared every `guard` result with
 * the epoch it had started in, so after the first change it skipped every run, with a debug line
 * only, for as long as the member lived (an adversarial review's reproduction on PostgreSQL).
 * `runAsLeader` and `runEvery`'s `leaderOnly` are refused in slots mode: index 0 has no barrier there.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Either, Exit, Layer, Scope, TestClock } from "effect"
import * as InMemoryMembershipStore from "../../src/InMemoryMembershipStore.js"
import * as Membership from "../../src/Membership.js"
import { InvalidConfig } from "../../src/MembershipError.js"
import type { MembershipStore } from "../../src/MembershipStore.js"
import * as Work from "../../src/Work.js"
import { advanceUntil } from "../support/TestClock.js"

const inMemory = <A, E>(
  effect: Effect.Effect<A, E, MembershipStore | InMemoryMembershipStore.InMemoryStoreControl | Scope.Scope>
) => Effect.provide(Effect.scoped(effect), InMemoryMembershipStore.layer)

const join = (name: string) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const m = yield* Membership.make({ groupId: "g", name, slots: 4, lease: "6 seconds", fenceMargin: "2 seconds" }).pipe(
      Scope.extend(scope)
    )
    const within = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      effect.pipe(Effect.provideService(Membership.Membership, m), Scope.extend(scope))
    return { m, within, close: Scope.close(scope, Exit.void) }
  })

/** Lets `ms` of TestClock time pass in small steps (the members' fibers run in between). */
const advance = (ms: number) =>
  Effect.gen(function*() {
    for (let t = 0; t < ms; t += 10) yield* TestClock.adjust(Duration.millis(10))
  })

describe("Work in slots mode", () => {
  it.effect("runEvery keeps running across membership changes while guard passes", () =>
    inMemory(Effect.gen(function*() {
      const a = yield* join("a")
      const ticks: Array<{ readonly at: number; readonly tick: Work.Tick; readonly guarded: boolean }> = []
      yield* a.within(Work.runEvery("100 millis", (tick) =>
        Effect.gen(function*() {
          const guarded = Either.isRight(yield* Effect.either(a.m.guard))
          ticks.push({ at: yield* Effect.clockWith((c) => c.currentTimeMillis), tick, guarded })
        })))
      yield* advanceUntil(() => ticks.length >= 5, Duration.seconds(10))
      const epochBefore = (yield* a.m.guard).epoch

      // An ordinary change: b joins and takes two of the four slots. a's work is not restarted.
      const b = yield* join("b")
      yield* advanceUntil(() => Effect.map(b.m.owned, (o) => o.slots.length === 2), Duration.seconds(10))
      const changedAt = yield* Effect.clockWith((c) => c.currentTimeMillis)
      yield* advance(3_000)
      const now = yield* a.m.guard
      expect(now.epoch).toBeGreaterThan(epochBefore)
      const after = ticks.filter((t) => t.at > changedAt)
      // Before the fix: 0 (every run skipped). Interval 100 ms over 3 s: about 30.
      expect(after.length).toBeGreaterThanOrEqual(25)
      // Each run under the assignment guard returned: the newer epoch; run counts on.
      expect(after.every((t) => t.tick.epoch === now.epoch)).toBe(true)
      expect(ticks.map((t) => t.tick.run)).toEqual(ticks.map((_, i) => i))
      expect(ticks.every((t) => t.guarded)).toBe(true)

      // Safety: while guard fails (a's store calls hang past its deadline: it fences) nothing runs.
      const control = yield* InMemoryMembershipStore.InMemoryStoreControl
      yield* control.hang(a.m.memberId)
      yield* advanceUntil(() => Effect.map(Effect.either(a.m.guard), Either.isLeft), Duration.seconds(10))
      const fencedTicks = ticks.length
      yield* advance(2_000)
      expect(ticks.length).toBe(fencedTicks)
      yield* control.resume(a.m.memberId)
      yield* advanceUntil(() => ticks.length >= fencedTicks + 5, Duration.seconds(20))
      expect(ticks.every((t) => t.guarded)).toBe(true)
      yield* b.close
      yield* a.close
    })))

  it.effect("runAsLeader, layerAsLeader and runEvery's leaderOnly are refused with InvalidConfig saying why", () =>
    inMemory(Effect.gen(function*() {
      const a = yield* join("a")
      const leader = yield* Effect.flip(a.within(Work.runAsLeader(Effect.void)))
      expect(leader).toBeInstanceOf(InvalidConfig)
      expect(leader.field).toBe("slots")
      expect(leader.message).toMatch(/runAsLeader is not available in slots mode: index 0 has no barrier/)
      expect(leader.message).toMatch(/whileOwning/)
      const every = yield* Effect.flip(a.within(Work.runEvery("1 second", () => Effect.void, { leaderOnly: true })))
      expect(every).toBeInstanceOf(InvalidConfig)
      expect(every.field).toBe("leaderOnly")
      const layer = yield* Effect.flip(
        Effect.scoped(Layer.build(Work.layerAsLeader(Effect.void).pipe(Layer.provide(Layer.succeed(Membership.Membership, a.m)))))
      )
      expect(layer).toBeInstanceOf(InvalidConfig)
      yield* a.close
    })))
})
