/**
 * A deferred joiner's poll that finds the group's lock busy (another process's change) touches its
 * waiting row on the busy path (found by a review, attack94). That path renewed the row for the
 * joiner's whole lease, not for the overdue threshold a deferred join's row runs out after: a joiner
 * that died right after such a poll (about one poll in three under the review's load) left a row
 * whose promotion held every survivor at the barrier for the rest of that lease (19.8 s of 20 s
 * through the CLI). The busy path now gives the row the overdue threshold plus the store's lock wait.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Scope } from "effect"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import type { MembershipConfigInput } from "../../src/MembershipConfig.js"
import type { MembershipStoreService } from "../../src/MembershipStore.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { exactCover, makeRecorder } from "../support/Recorder.js"
import { waitFor, waitForEffect } from "../support/Wait.js"

// Overdue threshold max(2 × 200, 200 + 100) = 400 ms; the store's lock wait 0.75 × 1 s = 750 ms.
const fast = { heartbeat: "200 millis", lease: "5 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const
const StoreLive = PgMembershipStore.layerUsingNotifier({ statementTimeout: "1 second" }).pipe(
  Layer.provideMerge(Notifier.layer),
  Layer.provideMerge(PgLive)
)

/** The store as one member sees it: once `hung`, none of its calls returns (a SIGSTOP). */
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

it.live("a waiting joiner's poll that finds the lock busy gives its row no more than the overdue threshold and a lock wait", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("busy-waiter")
    const sql = yield* SqlClient.SqlClient
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
    c.flag.hung = true
    const rowOf = (name: string) => Effect.map(base.members(groupId), (rows) => rows.find((r) => r.name === name))
    yield* waitForEffect(Effect.map(rowOf("c"), (r) => r !== undefined && r.heartbeatAgeMs > 500), undefined, "c overdue")
    // Another process's changes: the group's lock held exclusively for 20 ms every 40 ms.
    const flapper = yield* Effect.fork(Effect.forever(
      sql.withTransaction(sql`SELECT pg_advisory_xact_lock(1297040455, hashtext(${groupId})), pg_sleep(0.02)`).pipe(
        Effect.zipRight(Effect.sleep("20 millis"))
      )
    ))
    yield* join("d")
    yield* waitForEffect(Effect.map(rowOf("d"), (r) => r !== undefined && r.index === null), undefined, "d waiting")
    // d's waiting row's lease, sampled while d polls against the busy lock (until c's lease runs out).
    const leaseOfD = Effect.map(
      sql<{ ms: number }>`SELECT (extract(epoch FROM lease_expires_at - heartbeat_at) * 1000)::float8 AS ms
                            FROM modulo_group.members WHERE group_id = ${groupId} AND name = 'd' AND idx IS NULL`,
      (rows) => rows[0]?.ms
    )
    const seen: Array<number> = []
    const until = Date.now() + 1500
    while (Date.now() < until) {
      const ms = yield* leaseOfD
      if (ms !== undefined) seen.push(Math.round(ms))
      yield* Effect.sleep("5 millis")
    }
    yield* Fiber.interrupt(flapper)
    expect(seen.length).toBeGreaterThan(10)
    // Before: about a third of the samples showed the whole lease (5000 ms).
    expect(Math.max(...seen)).toBeLessThanOrEqual(400 + 750)
    expect(rec.violations).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)
