/**
 * A renewal never moves a lease back. Two renewals of one member can be on the server at once: the
 * batcher sends the next one when the one in flight has run past its patience (2 × the statement
 * timeout: on a server that answers, its bounds would have ended it). If the older one, whose
 * statement time is earlier, reaches the row after the newer one has committed, it used to set the
 * lease to its own time + lease: earlier than the newer renewal's, on which the member bases its
 * local deadline (its send time + lease - fenceMargin). The others could then reap the member while it
 * still works. Now a renewal older than the row's last one (`heartbeat_at` after its statement time
 * and before the present) only keeps or extends the lease, and changes neither `heartbeat_at` nor
 * `stopping_since`. A `heartbeat_at` after the present (the database clock stepped back, or a hand
 * set it) leaves the renewal in order, as before.
 *
 * Statement by statement on real PostgreSQL, with the statement times passed in (the `now`
 * parameter every statement takes; null in production: `statement_timestamp()`), all before the
 * present unless the test is about a clock that ran ahead.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Statements from "../../src/internal/pg/statements.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"

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
  return { sql, groupId, memberId, epoch: view.epoch, base, row, at }
})

it.effect("a renewal whose statement time is older than the row's last renewal does not move the lease back (renewLease)", () =>
  Effect.gen(function*() {
    const { sql, groupId, memberId, epoch, base, row, at } = yield* arrange
    // The newer renewal commits first (its time: base + 3 s), the member stuck stopping; then the
    // older one (base + 1 s), not stuck.
    expect(yield* Statements.renewLease(sql, groupId, memberId, epoch, leaseMs, true, at(-5_000), 1_000)).toHaveLength(1)
    yield* Statements.renewLease(sql, groupId, memberId, epoch, leaseMs, false, at(-8_000), 1_000)
    const after = yield* row
    expect(after.lease).toBe(base - 5_000 + leaseMs)
    expect(after.beat).toBe(base - 5_000)
    expect(after.stopping).toBe(base - 5_000)
    // The next renewal in order sets its own time + lease again.
    yield* Statements.renewLease(sql, groupId, memberId, epoch, leaseMs, false, at(-1_000), 1_000)
    expect(yield* row).toEqual({ lease: base - 1_000 + leaseMs, beat: base - 1_000, stopping: null })
  }).pipe(Effect.provide(StoreLive)))

it.effect("a renewal whose statement time is older than the row's last renewal does not move the lease back (renewLeases, the batch)", () =>
  Effect.gen(function*() {
    const { sql, groupId, memberId, epoch, base, row, at } = yield* arrange
    const request = (stuck: boolean) => [{ memberId, groupId, ack: epoch, leaseMs, stuck, slots: false }]
    const [newer] = yield* Statements.renewLeases(sql, request(true), at(-5_000), 1_000)
    expect(newer!.ok).toBe(true)
    yield* Statements.renewLeases(sql, request(false), at(-8_000), 1_000)
    const after = yield* row
    expect(after.lease).toBe(base - 5_000 + leaseMs)
    expect(after.beat).toBe(base - 5_000)
    expect(after.stopping).toBe(base - 5_000)
    yield* Statements.renewLeases(sql, request(false), at(-1_000), 1_000)
    expect(yield* row).toEqual({ lease: base - 1_000 + leaseMs, beat: base - 1_000, stopping: null })
  }).pipe(Effect.provide(StoreLive)))

it.effect("a renewal in order still cuts back a lease set far ahead by hand, also with its heartbeat_at", () =>
  Effect.gen(function*() {
    const { sql, groupId, memberId, epoch, base, row, at } = yield* arrange
    yield* sql`UPDATE modulo_group.members SET lease_expires_at = now() + interval '1 day', heartbeat_at = now() + interval '1 day'
                WHERE member_id = ${memberId}`
    yield* Statements.renewLease(sql, groupId, memberId, epoch, leaseMs, false, at(-1_000), 1_000)
    expect(yield* row).toEqual({ lease: base - 1_000 + leaseMs, beat: base - 1_000, stopping: null })
  }).pipe(Effect.provide(StoreLive)))

/** The single or the batch renewal statement of the arranged member, at `now`; whether it renewed. */
const renewer = (
  { epoch, groupId, memberId, sql }: Effect.Effect.Success<typeof arrange>,
  statement: "single" | "batch"
) =>
(now: string, stuck = false) =>
  statement === "single"
    ? Effect.map(Statements.renewLease(sql, groupId, memberId, epoch, leaseMs, stuck, now, 1_000), (rows) => rows.length === 1)
    : Effect.map(
      Statements.renewLeases(sql, [{ memberId, groupId, ack: epoch, leaseMs, stuck, slots: false }], now, 1_000),
      (rows) => rows[0]!.ok
    )

for (const statement of ["single", "batch"] as const) {
  // Regression: the second version took a renewal whose row's last renewal lies after the present for
  // one in order, so an older renewal stalled on the server across a step back of the clock moved the
  // lease back (an adversarial review). Real time R, in ms after `base`: the older renewal started at
  // R = -4,500, its database time -3,000 (the clock 1.5 s ahead), and stalled; the newer one, sent at
  // R = -200 (the member's deadline: R + 7,800), ran at database time +1,300; then the clock stepped
  // back 1.5 s; the older one reaches the row at R = 0.
  it.effect(`an older renewal stalled across a step back of the database clock does not move the lease back (${statement})`, () =>
    Effect.gen(function*() {
      const arranged = yield* arrange
      const { base, row, at } = arranged
      const renew = renewer(arranged, statement)
      expect(yield* renew(at(1_300))).toBe(true)
      expect(yield* renew(at(-3_000))).toBe(true)
      expect(yield* row).toEqual({ lease: base + 1_300 + leaseMs, beat: base + 1_300, stopping: null })
    }).pipe(Effect.provide(StoreLive)))

  // Regression: the first version kept every lease where it was for the whole of a step back of any
  // size, so a member that crashed then held its index and a join's barrier as long.
  it.effect(`after a step back of the database clock, a lease is kept at most a lease longer; a step of more than a lease leaves renewals in order (${statement})`, () =>
    Effect.gen(function*() {
      const arranged = yield* arrange
      const { base, row, at } = arranged
      const renew = renewer(arranged, statement)
      // The clock ran 5 s ahead (less than a lease), then was set back: the lease is kept, and the
      // renewals are in order again once the clock has passed the last one.
      expect(yield* renew(at(5_000), true)).toBe(true)
      expect(yield* renew(at(-2_000))).toBe(true)
      expect(yield* row).toEqual({ lease: base + 5_000 + leaseMs, beat: base + 5_000, stopping: base + 5_000 })
      expect(yield* renew(at(6_000))).toBe(true)
      expect(yield* row).toEqual({ lease: base + 6_000 + leaseMs, beat: base + 6_000, stopping: null })
      // The clock ran 16 s ahead (more than a lease), then was set back: the next renewal is in order.
      expect(yield* renew(at(14_000))).toBe(true)
      expect(yield* renew(at(16_000))).toBe(true)
      expect(yield* renew(at(-1_000))).toBe(true)
      expect(yield* row).toEqual({ lease: base - 1_000 + leaseMs, beat: base - 1_000, stopping: null })
    }).pipe(Effect.provide(StoreLive)))
}

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
    // Started a millisecond before the release, applied after it: single and batch statement.
    expect(yield* Statements.renewLease(sql, groupId, memberId, view.epoch, leaseMs, false, before, 1_000)).toEqual([])
    const [batch] = yield* Statements.renewLeases(sql, [{ memberId, groupId, ack: view.epoch, leaseMs, stuck: false, slots: false }], before, 1_000)
    expect(batch!.ok).toBe(false)
    // The instance's next process takes its row over.
    const next = yield* store.join(groupId, { memberId: crypto.randomUUID(), host: "test", pid: 3, name: "m again" }, leaseMs, {
      instanceId,
      rejoinGraceMs: 60_000
    })
    expect(next.index).toBe(view.index)
  }).pipe(Effect.provide(StoreLive)))
