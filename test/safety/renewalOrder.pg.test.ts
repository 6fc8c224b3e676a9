/**
 * Renewals apply in the order they were sent (`renewal_seq`, migration 0010; statements.ts `inOrder`).
 * Two renewals of one member can be on the server at once: the batcher sends the next one when the one
 * in flight has run past its patience (2 × the statement timeout), and nothing bounds how long a
 * statement can stall on the server before it reaches its row. If the older one reaches the row after
 * the newer one committed, it used to set the lease to its own, earlier time + lease: before the
 * newer renewal's, on which the member bases its local deadline (its send time + lease - fenceMargin),
 * so the others could reap the member while it still worked. Now a renewal whose number is below the
 * row's writes nothing. Two rules on the clock (`heartbeat_at`) came first and each fell to an
 * adversarial review: one kept leases for the whole of a step back of the database clock, the other let
 * an older renewal stalled across such a step move the lease back. The order is no clock's now.
 *
 * Statement by statement on real PostgreSQL, with the statement times (the `now` parameter every
 * statement takes; null in production: `statement_timestamp()`) and the renewals' numbers passed in.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Layer } from "effect"
import * as Statements from "../../src/internal/pg/statements.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId, writerOf } from "../support/Database.js"
import { waitForEffect } from "../support/Wait.js"

const StoreLive = PgMembershipStore.layer().pipe(Layer.provideMerge(PgLive))
const leaseMs = 10_000

/** A member joined to a fresh group; its row's lease, heartbeat and `stopping_since` as ms since the epoch. */
const arrange = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const store = yield* MembershipStore
  const groupId = randomGroupId("renewal-order")
  const memberId = crypto.randomUUID()
  const view = yield* store.join(groupId, { memberId, host: "test", pid: 1, name: "m" }, leaseMs)
  // The join's renewal ten seconds back (by hand), so that renewals can be timed in the past.
  yield* sql`UPDATE modulo_group.members SET heartbeat_at = now() - interval '10 seconds' WHERE member_id = ${memberId}`
  const [{ t }] = (yield* sql<{ t: string }>`SELECT (extract(epoch FROM now()) * 1000)::bigint AS t`) as unknown as [
    { t: string }
  ]
  const base = Number(t)
  const row = Effect.map(
    sql<{ lease: string; beat: string; stopping: string | null }>`
      SELECT (extract(epoch FROM lease_expires_at) * 1000)::bigint AS lease,
             (extract(epoch FROM heartbeat_at) * 1000)::bigint AS beat,
             (extract(epoch FROM stopping_since) * 1000)::bigint AS stopping
        FROM modulo_group.members WHERE member_id = ${memberId}`,
    ([r]) => ({ lease: Number(r!.lease), beat: Number(r!.beat), stopping: r!.stopping === null ? null : Number(r!.stopping) })
  )
  const at = (ms: number) => new Date(base + ms).toISOString()
  // Above the join's number (its store's counter: about the wall clock in microseconds).
  const seq = Date.now() * 1_000 + 1_000_000
  const writer = yield* writerOf(memberId)
  return { sql, groupId, memberId, epoch: view.epoch, base, row, at, seq, writer }
})

/** The single or the batch renewal statement of the arranged member: at `now`, numbered `seq`; whether it renewed. */
const renewer = (
  { epoch, groupId, memberId, sql, writer }: Effect.Effect.Success<typeof arrange>,
  statement: "single" | "batch"
) =>
(now: string, seq: number, stuck = false) =>
  statement === "single"
    ? Effect.map(Statements.renewLease(sql, groupId, memberId, epoch, leaseMs, stuck, now, 1_000, seq, writer), (rows) => rows.length === 1)
    : Effect.map(
      Statements.renewLeases(sql, [{ memberId, groupId, ack: epoch, leaseMs, stuck, slots: false, seq }], writer, now, 1_000),
      (rows) => rows[0]!.ok
    )

for (const statement of ["single", "batch"] as const) {
  // Regression (before migration 0010): the older renewal set the lease to its own time + lease.
  it.effect(`a renewal sent before the row's last one writes nothing (${statement})`, () =>
    Effect.gen(function*() {
      const arranged = yield* arrange
      const { base, row, at, seq } = arranged
      const renew = renewer(arranged, statement)
      // The newer (seq + 2) commits first, the member stuck stopping; then the older (seq + 1).
      expect(yield* renew(at(-5_000), seq + 2, true)).toBe(true)
      expect(yield* renew(at(-8_000), seq + 1)).toBe(false)
      expect(yield* row).toEqual({ lease: base - 5_000 + leaseMs, beat: base - 5_000, stopping: base - 5_000 })
      // The next one in order sets its own time + lease.
      expect(yield* renew(at(-1_000), seq + 3)).toBe(true)
      expect(yield* row).toEqual({ lease: base - 1_000 + leaseMs, beat: base - 1_000, stopping: null })
    }).pipe(Effect.provide(StoreLive)))

  // Regression (the second clock rule): real time R in ms after `base`; the older renewal started at
  // R = -4,500, its database time -3,000 (the clock 1.5 s ahead), and stalled on the server; the newer
  // one, sent at R = -200 (the member's deadline: R + 7,800), ran at +1,300; then the clock stepped
  // back 1.5 s; the older one reaches the row at R = 0.
  it.effect(`an older renewal stalled across a step back of the database clock writes nothing (${statement})`, () =>
    Effect.gen(function*() {
      const arranged = yield* arrange
      const { base, row, at, seq } = arranged
      const renew = renewer(arranged, statement)
      expect(yield* renew(at(1_300), seq + 2)).toBe(true)
      expect(yield* renew(at(-3_000), seq + 1)).toBe(false)
      expect(yield* row).toEqual({ lease: base + 1_300 + leaseMs, beat: base + 1_300, stopping: null })
    }).pipe(Effect.provide(StoreLive)))

  // Regression (the first clock rule): a renewal after a step back of the database clock was taken for
  // an older one, so every lease stayed put for the whole step.
  it.effect(`after the database clock ran ahead and was set back, the next renewal is in order (${statement})`, () =>
    Effect.gen(function*() {
      const arranged = yield* arrange
      const { base, row, at, seq } = arranged
      const renew = renewer(arranged, statement)
      expect(yield* renew(at(5_000), seq + 1, true)).toBe(true)
      expect(yield* renew(at(-2_000), seq + 2)).toBe(true)
      expect(yield* row).toEqual({ lease: base - 2_000 + leaseMs, beat: base - 2_000, stopping: null })
    }).pipe(Effect.provide(StoreLive)))

  it.effect(`a renewal in order cuts back a lease and heartbeat_at set a day ahead by hand (${statement})`, () =>
    Effect.gen(function*() {
      const arranged = yield* arrange
      const { sql, memberId, base, row, at, seq } = arranged
      const renew = renewer(arranged, statement)
      yield* sql`UPDATE modulo_group.members SET lease_expires_at = now() + interval '1 day', heartbeat_at = now() + interval '1 day'
                  WHERE member_id = ${memberId}`
      expect(yield* renew(at(-1_000), seq + 1)).toBe(true)
      expect(yield* row).toEqual({ lease: base - 1_000 + leaseMs, beat: base - 1_000, stopping: null })
    }).pipe(Effect.provide(StoreLive)))

  // Regression (an adversarial review): `expireLease` ends the lease a statement timeout before its
  // own time, and a renewal that ran longer than that on the server renewed the leaving member's row.
  it.effect(`a renewal that reaches the row after a busy leave ended its lease writes nothing (${statement})`, () =>
    Effect.gen(function*() {
      const arranged = yield* arrange
      const { sql, groupId, memberId, row, at, seq, writer } = arranged
      const renew = renewer(arranged, statement)
      expect(yield* Statements.expireLease(sql, groupId, memberId, writer, at(0), 1_000, seq + 1)).toHaveLength(1)
      const ended = yield* row
      expect(yield* renew(at(-3_000), seq + 1)).toBe(false)
      expect(yield* row).toEqual(ended)
    }).pipe(Effect.provide(StoreLive)))
}

// The interleaving itself, statement by statement: the older renewal is on the server, waiting for the
// row, while the newer one holds it uncommitted; once the newer commits, PostgreSQL re-reads the row
// for the older (READ COMMITTED), whose number is then below the row's.
it.live("an older renewal waiting for the row behind a newer one's uncommitted write writes nothing once that commits", () =>
  Effect.gen(function*() {
    const { sql, groupId, memberId, epoch, seq, writer } = yield* arrange
    const holding = yield* Deferred.make<number>()
    const commit = yield* Deferred.make<void>()
    const newer = yield* Effect.fork(sql.withTransaction(Effect.gen(function*() {
      const renewed = yield* Statements.renewLease(sql, groupId, memberId, epoch, leaseMs, false, null, 5_000, seq + 2, writer)
      const [{ pid }] = (yield* sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`) as unknown as [{ pid: number }]
      yield* Deferred.succeed(holding, pid)
      yield* Deferred.await(commit)
      return renewed.length
    })))
    const newerPid = yield* Deferred.await(holding)
    const older = yield* Effect.fork(Statements.renewLease(sql, groupId, memberId, epoch, leaseMs, false, null, 5_000, seq + 1, writer))
    // Until the older statement waits for the newer one's lock.
    yield* waitForEffect(
      Effect.map(
        sql<{ waiting: boolean }>`
          SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE ${newerPid}::int = ANY (pg_blocking_pids(pid))) AS waiting`,
        ([r]) => r!.waiting
      ),
      Duration.seconds(5),
      "the older renewal waits for the row"
    )
    yield* Deferred.succeed(commit, undefined)
    expect(yield* Fiber.join(newer)).toBe(1)
    expect(yield* Fiber.join(older)).toEqual([])
    const after = yield* sql<{ seq: string }>`SELECT renewal_seq::text AS seq FROM modulo_group.members WHERE member_id = ${memberId}`
    expect(after[0]!.seq).toBe(String(seq + 2))
  }).pipe(Effect.provide(StoreLive)), 30_000)

// Regression: a renewal whose statement started just before a static member's release, reaching the
// row after it, renewed the released row for a whole lease (its lease was still running at the
// renewal's earlier time), and the instance's restart was refused as "held by a live member"
// (an adversarial review).
it.effect("a renewal that reaches a released row does not renew it: the instance's next process takes it over", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const store = yield* MembershipStore
    const groupId = randomGroupId("renewal-release")
    const instanceId = `instance-${crypto.randomUUID()}`
    const memberId = crypto.randomUUID()
    yield* store.join(groupId, { memberId: crypto.randomUUID(), host: "test", pid: 2, name: "other" }, leaseMs)
    const view = yield* store.join(groupId, { memberId, host: "test", pid: 1, name: "m" }, leaseMs, { instanceId, rejoinGraceMs: 60_000 })
    yield* store.release(groupId, memberId)
    const [{ released }] = (yield* sql<{ released: string }>`
      SELECT (extract(epoch FROM released_at) * 1000)::bigint AS released FROM modulo_group.members
       WHERE member_id = ${memberId}`) as unknown as [{ released: string }]
    const before = new Date(Number(released) - 1).toISOString()
    const writer = yield* writerOf(memberId)
    // Started a millisecond before the release, applied after it: single and batch statement.
    expect(yield* Statements.renewLease(sql, groupId, memberId, view.epoch, leaseMs, false, before, 1_000, Date.now() * 1_000 + 1_000_000, writer)).toEqual([])
    const [batch] = yield* Statements.renewLeases(sql, [{ memberId, groupId, ack: view.epoch, leaseMs, stuck: false, slots: false, seq: Date.now() * 1_000 + 2_000_000 }], writer, before, 1_000)
    expect(batch!.ok).toBe(false)
    // The instance's next process takes its row over.
    const next = yield* store.join(groupId, { memberId: crypto.randomUUID(), host: "test", pid: 3, name: "m again" }, leaseMs, {
      instanceId,
      rejoinGraceMs: 60_000
    })
    expect(next.index).toBe(view.index)
  }).pipe(Effect.provide(StoreLive)))
