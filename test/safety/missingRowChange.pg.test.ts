/**
 * A live member's row deleted by hand, and a change made meanwhile. The store repairs a group whose
 * rows no longer add up to its size only after the row has been missing for a lease (docs/reliability.md,
 * "A live member's row deleted by hand"), but a join, a leave or a reap made in between reassigned the
 * indices at once, beside the missing row's member if it still worked (an adversarial review: 1.4 s of
 * two epochs at once with leases of 2 s; and a process that had never seen the row's longer lease
 * repaired after its own, 15.5 s). Now the database holds every change that would reassign indices
 * while a row is missing, until it has been missing for the longest lease the group's rows had at its
 * last change (`groups.missing_since`, `groups.lease_ms`: migration 0015).
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Either } from "effect"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { groupRow, makeGroup, StoreLive, waitFor, waitForEffect } from "../faults/support.js"
import { randomGroupId } from "../support/Database.js"
import { exactCover } from "../support/Recorder.js"

const config = { heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const
const long = { heartbeat: "200 millis", lease: "6 seconds", fenceMargin: "1 second", statementTimeout: "1 second" } as const

it.live("G2: a join made while a row deleted by hand is missing does not reassign its member's index", () =>
  Effect.gen(function*() {
    const group = yield* makeGroup(randomGroupId("missing-join"), config)
    const a = yield* group.join({ notifications: false })
    yield* group.join()
    yield* waitFor(() => exactCover(group.rec.working(), 2), Duration.seconds(20), "formed")
    const sql = yield* SqlClient.SqlClient
    const before = yield* groupRow(group.groupId)
    // a hangs (its work goes on until its own deadline, ~1.5 s away), its row is deleted, and a new
    // member joins at once.
    yield* a.hang
    const deletedAt = Date.now()
    yield* sql`DELETE FROM modulo_group.members WHERE member_id = ${a.m.memberId}`
    yield* group.join()
    const moved = () => group.rec.working().every((w) => w.epoch > before!.epoch)
    yield* waitFor(() => exactCover(group.rec.working(), 2) && moved(), Duration.seconds(30), "re-formed with the newcomer")
    const after = yield* groupRow(group.groupId)
    expect(after!.epoch).toBeGreaterThan(before!.epoch)
    // Before: the join reassigned at once, and b or the newcomer started a's index beside a's work.
    expect(group.rec.violations).toEqual([])
    const [change] = yield* sql<{ changed_ms: number }>`
      SELECT (extract(epoch FROM changed_at) * 1000)::float8 AS changed_ms FROM modulo_group.groups WHERE group_id = ${group.groupId}`
    expect(change!.changed_ms - deletedAt).toBeGreaterThanOrEqual(2_000 - 100)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 90_000)

it.live("G2: a process that never saw the missing row's longer lease waits it out (the database recorded it)", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("missing-fresh")
    const group = yield* makeGroup(groupId, config)
    const a = yield* group.join({ ...long, notifications: false })
    yield* group.join()
    yield* waitFor(() => exactCover(group.rec.working(), 2), Duration.seconds(20), "formed")
    const sql = yield* SqlClient.SqlClient
    yield* a.hang
    const deletedAt = Date.now()
    yield* sql`DELETE FROM modulo_group.members WHERE member_id = ${a.m.memberId}`
    // A process started now (a store of its own) has never read a's lease of 6 s: its join is held.
    const store = yield* Effect.provide(PgMembershipStore.make(), Notifier.layer)
    const member = { memberId: crypto.randomUUID(), host: "test", pid: 1, name: "fresh" }
    const first = yield* Effect.either(store.join(groupId, member, 2_000))
    // Before: the join went through at once.
    expect(Either.isLeft(first) ? first.left.reason : "joined").toMatch(/missing/)
    // It goes through once the row has been missing for a's lease, not its own.
    yield* waitForEffect(Effect.isSuccess(store.join(groupId, member, 2_000)), Duration.seconds(30), "the fresh join")
    const [change] = yield* sql<{ changed_ms: number }>`
      SELECT (extract(epoch FROM changed_at) * 1000)::float8 AS changed_ms FROM modulo_group.groups WHERE group_id = ${groupId}`
    expect(change!.changed_ms - deletedAt).toBeGreaterThanOrEqual(6_000 - 100)
    expect(group.rec.violations).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 90_000)

it.live("a leave made while a row is missing ends its lease without a change; the group re-forms after the wait, one epoch", () =>
  Effect.gen(function*() {
    const group = yield* makeGroup(randomGroupId("missing-leave"), config)
    const a = yield* group.join({ notifications: false })
    const b = yield* group.join()
    yield* group.join()
    yield* waitFor(() => exactCover(group.rec.working(), 3), Duration.seconds(20), "formed")
    const sql = yield* SqlClient.SqlClient
    const before = yield* groupRow(group.groupId)
    yield* a.hang
    const deletedAt = Date.now()
    yield* sql`DELETE FROM modulo_group.members WHERE member_id = ${a.m.memberId}`
    // b leaves at once: its leave is held, so it ends its own lease instead (its work has stopped).
    yield* b.close
    expect((yield* groupRow(group.groupId))!.epoch).toBe(before!.epoch)
    const moved = () => group.rec.working().every((w) => w.epoch > before!.epoch)
    yield* waitFor(() => exactCover(group.rec.working(), 1) && moved(), Duration.seconds(30), "re-formed with the third alone")
    expect(group.rec.violations).toEqual([])
    const [change] = yield* sql<{ changed_ms: number }>`
      SELECT (extract(epoch FROM changed_at) * 1000)::float8 AS changed_ms FROM modulo_group.groups WHERE group_id = ${group.groupId}`
    expect(change!.changed_ms - deletedAt).toBeGreaterThanOrEqual(2_000 - 100)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 90_000)

it.live("indices found missing after an earlier wait ran out (a row put back by hand, then another deleted) are waited out anew", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("missing-anew")
    const sql = yield* SqlClient.SqlClient
    const store = yield* Effect.provide(PgMembershipStore.make(), Notifier.layer)
    const info = (name: string) => ({ memberId: crypto.randomUUID(), host: "test", pid: 1, name })
    const [x, y, z] = [info("x"), info("y"), info("z")]
    for (const m of [x, y, z]) yield* store.join(groupId, m, 5_000)
    const [held] = yield* sql<{ idx: number }>`SELECT idx FROM modulo_group.members WHERE member_id = ${y.memberId}`
    // An earlier incident, long over: another index was missing an hour ago, and was put back by hand.
    const other = held!.idx === 0 ? 1 : 0
    yield* sql`UPDATE modulo_group.groups SET missing_since = now() - interval '1 hour', missing_wait_ms = 5000,
                      missing_indices = ARRAY[${other}]::int4[] WHERE group_id = ${groupId}`
    // Now y's row is deleted by hand: its index was not among those waited out.
    yield* sql`DELETE FROM modulo_group.members WHERE member_id = ${y.memberId}`
    const join = yield* Effect.either(store.join(groupId, info("w"), 5_000))
    expect(Either.isLeft(join) ? join.left.reason : "joined").toMatch(/have no member row/)
    const [g] = yield* sql<{ missing: ReadonlyArray<number>; age_ms: number }>`
      SELECT missing_indices AS missing, (extract(epoch FROM now() - missing_since) * 1000)::float8 AS age_ms
        FROM modulo_group.groups WHERE group_id = ${groupId}`
    expect(g!.missing).toEqual([held!.idx])
    expect(g!.age_ms).toBeLessThan(60_000)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)
