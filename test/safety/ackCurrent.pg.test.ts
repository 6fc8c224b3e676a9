/**
 * A renewal sent while the member waits (its work stopped) acknowledges the group's epoch as the
 * statement reads it (`ackCurrent`; Transition's `Notified`): the renewal that learns a change
 * also acknowledges it. What it acknowledges must be an epoch the group has reached, never one ahead
 * (a notification's claim never reaches the statement), and a renewal without it acknowledges only
 * what it is given. Statement by statement on real PostgreSQL, single and batch, and the interleaving
 * with a change that restamps the member's row while the renewal waits for it.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Layer, Option } from "effect"
import * as Statements from "../../src/internal/pg/statements.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId, writerOf } from "../support/Database.js"
import { waitForEffect } from "../support/Wait.js"

const StoreLive = PgMembershipStore.layer().pipe(Layer.provideMerge(PgLive))
const leaseMs = 10_000

/** a joined (epoch e - 1), then b joined (epoch e): a has acknowledged e - 1 only. */
const arrange = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const store = yield* MembershipStore
  const groupId = randomGroupId("ack-current")
  const a = crypto.randomUUID()
  const first = yield* store.join(groupId, { memberId: a, host: "test", pid: 1, name: "a" }, leaseMs)
  const second = yield* store.join(groupId, { memberId: crypto.randomUUID(), host: "test", pid: 2, name: "b" }, leaseMs)
  expect(second.epoch).toBe(first.epoch + 1)
  const acked = Effect.map(
    sql<{ acked: string }>`SELECT acked_epoch::text AS acked FROM modulo_group.members WHERE member_id = ${a}`,
    ([r]) => Number(r!.acked)
  )
  // Above the joins' numbers (their store's counter: about the wall clock in microseconds).
  const seq = Date.now() * 1_000 + 1_000_000
  const writer = yield* writerOf(a)
  return { sql, store, groupId, a, old: first.epoch, epoch: second.epoch, acked, seq, writer }
})

for (const statement of ["single", "batch"] as const) {
  it.effect(`acknowledges the group's epoch with ackCurrent, only what it is given without (${statement})`, () =>
    Effect.gen(function*() {
      const { a, acked, epoch, groupId, old, seq, sql, writer } = yield* arrange
      const renew = (ackCurrent: boolean, n: number) =>
        statement === "single"
          ? Effect.map(
            Statements.renewLease(sql, groupId, a, old, leaseMs, false, null, 1_000, n, writer, false, ackCurrent),
            (rows) => ({ acked: Number(rows[0]!.acked), epoch: Number(rows[0]!.epoch), unacked: Number(rows[0]!.unacked) })
          )
          : Effect.map(
            Statements.renewLeases(sql, [{ memberId: a, groupId, ack: old, leaseMs, stuck: false, slots: false, seq: n, ackCurrent }], writer, null, 1_000),
            ([r]) => ({ acked: Number(r!.acked), epoch: Number(r!.epoch), unacked: Number(r!.unacked) })
          )
      expect(yield* renew(false, seq + 1)).toEqual({ acked: old, epoch, unacked: 0 })
      expect(yield* acked).toBe(old)
      // Its own acknowledgement is in the counts it returns: the barrier is down.
      expect(yield* renew(true, seq + 2)).toEqual({ acked: epoch, epoch, unacked: 0 })
      expect(yield* acked).toBe(epoch)
    }).pipe(Effect.provide(StoreLive)))
}

it.effect("through the store: a waiting member's renewal returns a view that it has acknowledged", () =>
  Effect.gen(function*() {
    const { a, epoch, groupId, old, store } = yield* arrange
    const plain = yield* store.heartbeat(groupId, a, old, leaseMs)
    expect(Option.getOrThrow(plain)).toMatchObject({ epoch, acked: old, allAcked: false })
    const waiting = yield* store.heartbeat(groupId, a, old, leaseMs, { ackCurrent: true })
    expect(Option.getOrThrow(waiting)).toMatchObject({ epoch, acked: epoch, allAcked: true })
  }).pipe(Effect.provide(StoreLive)))

// A change restamps the member's row (a new epoch) and has not committed when the renewal reaches the
// row: the renewal waits, and its snapshot has the group's old epoch. Once the change commits,
// PostgreSQL re-reads the row for the renewal: it acknowledges the row's new stamp, the epoch its view
// reports, and not more than the group's epoch.
it.live("a change that commits while the renewal waits for the row: the renewal acknowledges the change's epoch", () =>
  Effect.gen(function*() {
    const { a, acked, epoch, groupId, old, seq, sql, writer } = yield* arrange
    const next = epoch + 1
    const holding = yield* Deferred.make<number>()
    const commit = yield* Deferred.make<void>()
    // The change, by hand: every row restamped for `next`, then the group's row (as reassignIndices
    // and the group's update do, in one transaction).
    const change = yield* Effect.fork(sql.withTransaction(Effect.gen(function*() {
      yield* sql`UPDATE modulo_group.members SET assigned_epoch = ${next}, assigned_size = size_of.n
                   FROM (SELECT count(*)::int AS n FROM modulo_group.members WHERE group_id = ${groupId}) size_of
                  WHERE group_id = ${groupId}`
      yield* sql`UPDATE modulo_group.groups SET epoch = ${next} WHERE group_id = ${groupId}`
      const [{ pid }] = (yield* sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`) as unknown as [{ pid: number }]
      yield* Deferred.succeed(holding, pid)
      yield* Deferred.await(commit)
    })))
    const pid = yield* Deferred.await(holding)
    const renewal = yield* Effect.fork(
      Statements.renewLease(sql, groupId, a, old, leaseMs, false, null, 5_000, seq + 1, writer, false, true)
    )
    yield* waitForEffect(
      Effect.map(
        sql<{ waiting: boolean }>`
          SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE ${pid}::int = ANY (pg_blocking_pids(pid))) AS waiting`,
        ([r]) => r!.waiting
      ),
      Duration.seconds(5),
      "the renewal waits for the row"
    )
    yield* Deferred.succeed(commit, undefined)
    yield* Fiber.join(change)
    const [row] = yield* Fiber.join(renewal)
    // Its snapshot has the old group row; the row it wrote carries the change's stamp.
    expect({ epoch: Number(row!.epoch), stamp: Number(row!.assigned_epoch), acked: Number(row!.acked) })
      .toEqual({ epoch, stamp: next, acked: next })
    expect(yield* acked).toBe(next)
  }).pipe(Effect.provide(StoreLive)), 30_000)
