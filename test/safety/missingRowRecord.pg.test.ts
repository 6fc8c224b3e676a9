/**
 * The record of indices found missing (migration 0015: `groups.missing_since`, `missing_wait_ms`,
 * `missing_indices`, and the group's longest lease `lease_ms`) as the database has it, which anyone
 * who may write `groups` may have edited. An adversarial review of the first version:
 * - a row deleted by hand, put back, and deleted again a few seconds later was repaired at once on
 *   the first incident's record (1.2 s of two epochs at once): the record is now forgotten when an
 *   index gets a row again without a change (a trigger), so the wait starts anew;
 * - `missing_since = 'infinity'` failed every change of the group for good ("cannot subtract infinite
 *   timestamps"); a wait of NULL, NaN or below 0, or a group lease of NaN, switched the wait off.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Either, Option } from "effect"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { StoreLive } from "../faults/support.js"
import * as Migrations from "../../src/Migrations.js"
import { ownDatabase, randomGroupId } from "../support/Database.js"

const info = (name: string) => ({ memberId: crypto.randomUUID(), host: "test", pid: 1, name })

const threeMembers = (prefix: string, leaseMs = 5_000) =>
  Effect.gen(function*() {
    const groupId = randomGroupId(prefix)
    const store = yield* Effect.provide(PgMembershipStore.make(), Notifier.layer)
    const [x, y, z] = [info("x"), info("y"), info("z")]
    for (const m of [x, y, z]) yield* store.join(groupId, m, leaseMs)
    return { groupId, store, x, y, z }
  })

const reasonOf = (e: Either.Either<unknown, { readonly reason: string }>) => (Either.isLeft(e) ? e.left.reason : "ok")

const record = (groupId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<{ since: Date | null; indices: ReadonlyArray<number> | null }>`
        SELECT missing_since AS since, missing_indices AS indices FROM modulo_group.groups WHERE group_id = ${groupId}`,
      (r) => r[0]!
    ))

it.live("a row put back by hand, then deleted again after the first wait ran out: the wait starts anew", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const { groupId, store, y } = yield* threeMembers("missing-again", 1_000)
    const [saved] = yield* sql<{ j: string }>`SELECT row_to_json(m)::text AS j FROM modulo_group.members m WHERE member_id = ${y.memberId}`
    yield* sql`DELETE FROM modulo_group.members WHERE member_id = ${y.memberId}`
    expect(reasonOf(yield* Effect.either(store.reap(groupId)))).toMatch(/have no member row/)
    expect((yield* record(groupId)).indices).not.toBeNull()
    // Put back by hand: the record goes.
    yield* sql`INSERT INTO modulo_group.members OVERRIDING SYSTEM VALUE SELECT * FROM pg_catalog.json_populate_record(NULL::modulo_group.members, ${saved!.j}::json)`
    expect(yield* record(groupId)).toEqual({ since: null, indices: null })
    // Longer than the first wait (1 s); then the same row deleted again: held again.
    yield* Effect.sleep("1200 millis")
    yield* sql`DELETE FROM modulo_group.members WHERE member_id = ${y.memberId}`
    // Before: the join went through at once, on the first incident's record.
    expect(reasonOf(yield* Effect.either(store.join(groupId, info("w"), 1_000)))).toMatch(/have no member row/)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)

it.live("an index given by a change of an older release (a rolling upgrade) forgets the record", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const { groupId, y } = yield* threeMembers("missing-upgrade")
    yield* sql`UPDATE modulo_group.groups SET missing_since = now(), missing_wait_ms = 5000, missing_indices = '{2}'
                WHERE group_id = ${groupId}`
    // A renewal-like update (no index moved) keeps it.
    yield* sql`UPDATE modulo_group.members SET heartbeat_at = now() WHERE member_id = ${y.memberId}`
    expect((yield* record(groupId)).indices).toEqual([2])
    // What 0014's reassignment does to a row that moves: a new index.
    yield* sql`UPDATE modulo_group.members SET idx = 7 WHERE member_id = ${y.memberId}`
    expect(yield* record(groupId)).toEqual({ since: null, indices: null })
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)

it.live("missing_since = 'infinity' or '-infinity' by hand, nothing missing: every change goes through", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    for (const value of ["infinity", "-infinity"]) {
      const { groupId, store, x } = yield* threeMembers("missing-inf")
      yield* sql`UPDATE modulo_group.groups SET missing_since = ${value}::timestamptz WHERE group_id = ${groupId}`
      const join = yield* Effect.either(store.join(groupId, info("w"), 5_000))
      const leave = yield* Effect.either(store.leave(groupId, x.memberId))
      const reap = yield* Effect.either(store.reap(groupId))
      // Before: "cannot subtract infinite timestamps" for every change, for good.
      expect([join, leave, reap].map(reasonOf)).toEqual(["ok", "ok", "ok"])
    }
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)

it.live("a row missing and missing_since set ahead or to infinity by hand: the wait is recorded again", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    for (const value of ["infinity", "-infinity"]) {
      const { groupId, store, y } = yield* threeMembers("missing-inf-row")
      yield* sql`DELETE FROM modulo_group.members WHERE member_id = ${y.memberId}`
      yield* sql`UPDATE modulo_group.groups SET missing_since = ${value}::timestamptz, missing_wait_ms = 1,
                        missing_indices = ARRAY[0, 1, 2]::int4[] WHERE group_id = ${groupId}`
      expect(reasonOf(yield* Effect.either(store.join(groupId, info("w"), 5_000)))).toMatch(/have no member row/)
      const [r] = yield* sql<{ finite: boolean; wait: number }>`
        SELECT pg_catalog.isfinite(missing_since) AS finite, missing_wait_ms AS wait FROM modulo_group.groups WHERE group_id = ${groupId}`
      expect(r).toEqual({ finite: true, wait: 5_000 })
    }
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)

it.live("a recorded wait set to NULL, NaN or below 0 by hand: the wait is recorded again, not switched off", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    for (const value of [null, "NaN", "-1"]) {
      const { groupId, store, y } = yield* threeMembers("missing-wait")
      yield* sql`DELETE FROM modulo_group.members WHERE member_id = ${y.memberId}`
      expect(reasonOf(yield* Effect.either(store.join(groupId, info("w"), 5_000)))).toMatch(/have no member row/)
      yield* sql`UPDATE modulo_group.groups SET missing_wait_ms = ${value}::float8 WHERE group_id = ${groupId}`
      // Before: read as 0, the wait was over: the join went through at once.
      expect(reasonOf(yield* Effect.either(store.join(groupId, info("v"), 5_000)))).toMatch(/have no member row/)
    }
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)

it.live("the group's lease set to NaN by hand (or a row's): the wait is the rows' longest lease, not off", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    for (const edit of ["group", "rows"] as const) {
      const { groupId, store, y } = yield* threeMembers("missing-nan")
      if (edit === "group") yield* sql`UPDATE modulo_group.groups SET lease_ms = 'NaN' WHERE group_id = ${groupId}`
      else yield* sql`UPDATE modulo_group.members SET lease_ms = 'NaN' WHERE group_id = ${groupId}`
      yield* sql`DELETE FROM modulo_group.members WHERE member_id = ${y.memberId}`
      // Before: NaN took the wait off, and the join went through at once.
      expect(reasonOf(yield* Effect.either(store.join(groupId, info("w"), 5_000)))).toMatch(/have no member row \(.*\(5000 ms\)/)
    }
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)

it.live("a member row's lease set to NaN, infinity or below 0 by hand: renewals go on, and write the member's lease back", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    for (const value of ["NaN", "Infinity", "-5", "1e300"]) {
      const { groupId, store, x, y } = yield* threeMembers("lease-tampered")
      const epoch = Option.getOrThrow(yield* store.group(groupId)).epoch
      yield* sql`UPDATE modulo_group.members SET lease_ms = ${value}::float8 WHERE member_id = ${y.memberId}`
      // Before: every renewal of the group failed ("interval out of range": NaN times an interval), for good.
      const renewed = yield* Effect.either(store.heartbeat(groupId, x.memberId, epoch, 5_000))
      expect(reasonOf(renewed)).toBe("ok")
      expect(Either.isRight(renewed) && Option.isSome(renewed.right)).toBe(true)
      yield* store.heartbeat(groupId, y.memberId, epoch, 5_000)
      const [r] = yield* sql<{ lease: number }>`SELECT lease_ms AS lease FROM modulo_group.members WHERE member_id = ${y.memberId}`
      expect(r!.lease).toBe(5_000)
    }
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)

it.live("a row with lease_ms NaN and an infinite lease_expires_at fails no change and no renewal of its group", () =>
  Effect.gen(function*() {
    // A database of its own: the other files' reads of every group (the dashboard's) are not this test's.
    const db = yield* ownDatabase("inftimes", { maxConnections: 10 })
    yield* Effect.gen(function*() {
      yield* Migrations.run
      const sql = yield* SqlClient.SqlClient
      const { groupId, store, x, y } = yield* threeMembers("inf-times")
      // y's process is gone; an operator had pinned its lease (and its lease_ms is not a number).
      yield* sql`UPDATE modulo_group.members SET lease_ms = 'NaN', lease_expires_at = 'infinity' WHERE member_id = ${y.memberId}`
      const join = yield* Effect.either(store.join(groupId, info("w"), 5_000))
      const renew = yield* Effect.either(store.heartbeat(groupId, x.memberId, 0, 5_000))
      // Before: "cannot subtract infinite timestamps" (PostgreSQL < 17) for both, for good.
      expect({ join: reasonOf(join), renew: reasonOf(renew) }).toEqual({ join: "ok", renew: "ok" })
    }).pipe(Effect.scoped, Effect.provide(db.layer))
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)
