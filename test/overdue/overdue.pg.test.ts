/**
 * A join while a member is overdue (crashed or hung: no renewal for a while, lease not run out yet),
 * on real PostgreSQL in real time: the working members must not stop for a barrier that the overdue
 * member cannot clear. The newcomer waits in a waiting row; the reap of the overdue member gives it
 * its index, in one change.
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

it.live("a join while a member is overdue: the working members never stop until its lease runs out, then one change makes {old two + newcomer}", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("overdue")
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

    // c hangs: no renewal, no leave; its row stays until its lease (2 s) runs out.
    c.flag.hung = true
    const hungAt = Date.now()
    const cRow = () => Effect.map(base.members(groupId), (rows) => rows.find((r) => r.name === "c"))
    // Overdue: two heartbeats (400 ms) without a renewal, by the database clock.
    yield* waitForEffect(Effect.map(cRow(), (r) => r !== undefined && r.heartbeatAgeMs > 500), undefined, "c overdue")
    const row = (yield* cRow())!
    const cExpiresAt = Date.now() + row.leaseLeftMs
    expect(row.leaseLeftMs).toBeGreaterThan(800)

    // A newcomer joins while c is overdue: it waits (a waiting row, no index), the group keeps working.
    const d = yield* join("d")
    yield* waitForEffect(
      Effect.map(base.members(groupId), (rows) => rows.some((r) => r.name === "d" && r.index === null)),
      undefined,
      "d waiting"
    )
    expect((yield* d.m.state)._tag).toBe("Joining")
    expect(Option.getOrThrow(yield* base.group(groupId))).toMatchObject({ epoch: before, size: 3 })

    // Once c's lease has run out, the group is {a, b, d}, one epoch after the one c was in.
    yield* waitFor(
      () => exactCover(rec.working(), 3) && rec.working().every((w) => w.member !== "c" && w.epoch > before),
      undefined,
      "a, b and d working"
    )
    expect(Option.getOrThrow(yield* base.group(groupId))).toMatchObject({ epoch: before + 1, size: 3 })
    expect(new Set(rec.working().map((w) => w.member))).toEqual(new Set(["a", "b", "d"]))

    // a and b stopped once, and only after c's lease had run out (before the change they kept working).
    for (const label of ["a", "b"]) {
      const ends = rec.marks.filter((mk) => mk.member === label && mk.kind === "end" && mk.at >= hungAt)
      expect(ends.map((e) => e.epoch)).toEqual([before])
      expect(ends[0]!.at).toBeGreaterThanOrEqual(cExpiresAt - 50)
      const starts = rec.marks.filter((mk) => mk.member === label && mk.kind === "start" && mk.at >= hungAt)
      expect(starts.map((s) => s.epoch)).toEqual([before + 1])
    }
    expect(rec.violations).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)
