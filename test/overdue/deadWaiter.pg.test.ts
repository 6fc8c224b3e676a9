/**
 * A waiting joiner that dies (a kill -9, a SIGSTOP) while it waits for an overdue member, on real
 * PostgreSQL with real members (found by a review, attack93). The change that reaps the overdue
 * member gives the dead joiner's waiting row an index, and that epoch's barrier waits for the joiner
 * to take it (attack92's fix), which it never does: the survivors waited for the rest of the waiting
 * row's lease (1.7 s of a 2 s lease). A waiting row now runs out one overdue threshold after its
 * joiner's last poll (here 400 ms).
 */
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Option, Scope } from "effect"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import type { MembershipConfigInput } from "../../src/MembershipConfig.js"
import type { MembershipStoreService } from "../../src/MembershipStore.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { exactCover, makeRecorder } from "../support/Recorder.js"
import { waitFor, waitForEffect } from "../support/Wait.js"

const fast = { heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const
const StoreLive = PgMembershipStore.layerUsingNotifier().pipe(Layer.provideMerge(Notifier.layer), Layer.provideMerge(PgLive))

/** The store as one member sees it: once `hung`, none of its calls returns (a SIGSTOP or a kill -9). */
const hangable = (base: MembershipStoreService, member: { hung: boolean }): MembershipStoreService => {
  const gate = <A, E, R>(call: () => Effect.Effect<A, E, R>) => Effect.suspend(() => (member.hung ? Effect.never : call()))
  return {
    ...base,
    join: (...a) => gate(() => base.join(...a)),
    heartbeat: (...a) => gate(() => base.heartbeat(...a)),
    reap: (...a) => gate(() => base.reap(...a)),
    leave: (...a) => gate(() => base.leave(...a)),
    release: (...a) => gate(() => base.release(...a))
  }
}

it.live("a waiting joiner that dies shortly before the overdue member's reap holds the survivors at the barrier for well under a lease", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("deadwaiter")
    const rec = yield* makeRecorder
    const base = yield* MembershipStore
    const join = (label: string, input: Partial<MembershipConfigInput> = {}) =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const flag = { hung: false }
        const m = yield* Membership.make({ groupId, ...fast, name: label, ...input }).pipe(
          Effect.provideService(MembershipStore, hangable(base, flag)),
          Scope.extend(scope)
        )
        yield* rec.track(m, label).pipe(Scope.extend(scope))
        yield* Effect.addFinalizer(() => Effect.sync(() => void (flag.hung = false)).pipe(Effect.zipRight(Scope.close(scope, Exit.void))))
        return { m, flag }
      })
    yield* join("a")
    yield* join("b")
    const c = yield* join("c")
    yield* waitFor(() => exactCover(rec.working(), 3), undefined, "three members working")
    const before = Option.getOrThrow(yield* base.group(groupId)).epoch
    c.flag.hung = true
    const rowOf = (name: string) => Effect.map(base.members(groupId), (rows) => rows.find((r) => r.name === name))
    yield* waitForEffect(Effect.map(rowOf("c"), (r) => r !== undefined && r.heartbeatAgeMs > 500), undefined, "c overdue")
    const d = yield* join("d")
    yield* waitForEffect(Effect.map(rowOf("d"), (r) => r !== undefined && r.index === null), undefined, "d waiting")
    // d dies while waiting, shortly before c's lease runs out (its last poll renewed its row's lease).
    yield* waitForEffect(Effect.map(rowOf("c"), (r) => r === undefined || r.leaseLeftMs < 250), undefined, "c nearly expired")
    d.flag.hung = true
    // Sample who works every 10 ms until a and b work again in an epoch after c's.
    let stoppedAt: number | undefined
    let resumedAt: number | undefined
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline) {
      const w = rec.working().filter((x) => x.member === "a" || x.member === "b")
      if (stoppedAt === undefined && w.length < 2) stoppedAt = Date.now()
      if (stoppedAt !== undefined && w.length === 2 && w.every((x) => x.epoch > before)) {
        resumedAt = Date.now()
        break
      }
      yield* Effect.sleep("10 millis")
    }
    expect(rec.violations).toEqual([])
    // Before: 1.7 s (the rest of d's lease of 2 s); now d's row runs out 400 ms after its last poll.
    expect(stoppedAt).toBeDefined()
    expect(resumedAt).toBeDefined()
    expect(resumedAt! - stoppedAt!).toBeLessThan(1000)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)
