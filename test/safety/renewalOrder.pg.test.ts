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

// Regression: a renewal after a step back of the database clock counted as older than the last one
// before the step, so every lease stayed where it was for the whole step (an adversarial review).
it.effect("after the database clock ran five seconds ahead and was set back, the next renewals are in order (single and batch)", () =>
  Effect.gen(function*() {
    const { sql, groupId, memberId, epoch, base, row, at } = yield* arrange
    // A renewal while the clock read five seconds ahead (within the lease); then one at the corrected time.
    yield* Statements.renewLease(sql, groupId, memberId, epoch, leaseMs, true, at(5_000), 1_000)
    expect(yield* row).toEqual({ lease: base + 5_000 + leaseMs, beat: base + 5_000, stopping: base + 5_000 })
    yield* Statements.renewLease(sql, groupId, memberId, epoch, leaseMs, false, at(-2_000), 1_000)
    expect(yield* row).toEqual({ lease: base - 2_000 + leaseMs, beat: base - 2_000, stopping: null })
    // The same through the batch statement.
    const request = (stuck: boolean) => [{ memberId, groupId, ack: epoch, leaseMs, stuck, slots: false }]
    yield* Statements.renewLeases(sql, request(true), at(5_000), 1_000)
    yield* Statements.renewLeases(sql, request(false), at(-1_000), 1_000)
    expect(yield* row).toEqual({ lease: base - 1_000 + leaseMs, beat: base - 1_000, stopping: null })
  }).pipe(Effect.provide(StoreLive)))

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
