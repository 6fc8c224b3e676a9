/**
 * A work callback that throws instead of returning an effect (an adversarial review). Since work
 * callbacks were suspended onto their run's fiber, the throw escaped the work's catch and was only
 * Effect's debug line "Fiber terminated with an unhandled error"; before that it was a "driver step
 * failed" error and the member's other work did not start; in slots mode a `whileOwning` callback that
 * threw stopped the other slots from starting. It is the run's failure: logged as "work failed", and
 * the rest of the member's work runs. The same for `Work.runEvery` (a throwing tick ended its loop: no
 * later tick ran, and in slots mode nothing restarted it) and `Work.runAsLeader` (never restarted).
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, TestClock } from "effect"
import * as InMemoryMembershipStore from "../../src/InMemoryMembershipStore.js"
import * as Membership from "../../src/Membership.js"
import * as Work from "../../src/Work.js"
import { advanceUntil } from "../support/TestClock.js"
import { captureLogs } from "./logs.js"

const throwing = (): Effect.Effect<void> => {
  throw new Error("boom")
}

describe("a work callback that throws", () => {
  it.effect("whileAssigned: logged as work failed; the member's other work runs", () =>
    Effect.gen(function*() {
      const { layer, lines } = yield* captureLogs
      let others = 0
      yield* Effect.gen(function*() {
        const m = yield* Membership.make({ groupId: "sync-throw" })
        yield* m.whileAssigned(throwing)
        yield* m.whileAssigned(() => Effect.sync(() => void others++))
        yield* advanceUntil(() => others > 0)
      }).pipe(Effect.provide(layer), Effect.scoped, Effect.provide(InMemoryMembershipStore.layer))
      expect(lines.filter((l) => l.message === "work failed").map((l) => l.level)).toEqual(["WARN"])
      expect(lines.filter((l) => l.level === "ERROR")).toEqual([])
    }))

  it.effect("whileOwning: logged as that slot's work failing; every slot starts", () =>
    Effect.gen(function*() {
      const { layer, lines } = yield* captureLogs
      const started = new Set<number>()
      yield* Effect.gen(function*() {
        const m = yield* Membership.make({ groupId: "sync-throw-slots", slots: 4 })
        yield* m.whileOwning((owned) => owned.slot === 1 ? throwing() : Effect.void)
        yield* m.whileOwning((owned) => Effect.sync(() => void started.add(owned.slot)))
        yield* advanceUntil(() => started.size === 4)
      }).pipe(Effect.provide(layer), Effect.scoped, Effect.provide(InMemoryMembershipStore.layer))
      expect([...started].sort()).toEqual([0, 1, 2, 3])
      expect(lines.filter((l) => l.message === "work of slot 1 failed").map((l) => l.level)).toEqual(["WARN"])
      expect(lines.filter((l) => l.level === "ERROR")).toEqual([])
    }))

  it.effect("Work.runEvery: a tick that throws is a failed tick, logged; later ticks run", () =>
    Effect.gen(function*() {
      const { layer, lines } = yield* captureLogs
      let calls = 0
      let ran = 0
      yield* Effect.gen(function*() {
        const m = yield* Membership.make({ groupId: "sync-throw-every" })
        yield* Work.runEvery("1 second", () => ++calls === 1 ? throwing() : Effect.sync(() => void ran++)).pipe(
          Effect.provideService(Membership.Membership, m)
        )
        yield* advanceUntil(() => calls > 0)
        yield* TestClock.adjust(Duration.seconds(10))
      }).pipe(Effect.provide(layer), Effect.scoped, Effect.provide(InMemoryMembershipStore.layer))
      expect(ran).toBeGreaterThanOrEqual(9)
      expect(lines.filter((l) => l.message === "modulo-group: periodic work failed").map((l) => l.level)).toEqual(["WARN"])
    }))

  it.effect("Work.runAsLeader: a duty that throws is restarted after retryDelay", () =>
    Effect.gen(function*() {
      const { layer } = yield* captureLogs
      let calls = 0
      let ran = 0
      yield* Effect.gen(function*() {
        const m = yield* Membership.make({ groupId: "sync-throw-leader" })
        yield* Work.runAsLeader(() => ++calls === 1 ? throwing() : Effect.sync(() => void ran++), { retryDelay: "100 millis" }).pipe(
          Effect.provideService(Membership.Membership, m)
        )
        yield* advanceUntil(() => ran > 0)
      }).pipe(Effect.provide(layer), Effect.scoped, Effect.provide(InMemoryMembershipStore.layer))
      expect([calls, ran]).toEqual([2, 1])
    }))
})
