/**
 * The change log (migration 0004): every change writes one row, in its own transaction, with its
 * cause, the member it concerns and the assignment it left; retention trims per group by age and
 * by count, with settings that fall back to the defaults when they do not parse.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { randomUUID } from "node:crypto"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { hostileClient, hostileRole } from "../hostile/support.js"
import { serialised } from "../support/Grants.js"

interface LogRow {
  readonly epoch: string
  readonly size: number
  readonly cause: string
  readonly subject: string | null
  readonly assignment: ReadonlyArray<{ member_id: string; name: string; host: string; pid: number; index: number | null }>
}

const logOf = (groupId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<LogRow>`SELECT epoch, size, cause, subject, assignment FROM modulo_group.change_log
                 WHERE group_id = ${groupId} ORDER BY changed_at, id`)

const StoreLive = PgMembershipStore.layer().pipe(Layer.provideMerge(PgLive))

it.live("every change logs its cause, its subject and the assignment it left", () =>
  Effect.gen(function*() {
    const store = yield* MembershipStore
    const groupId = randomGroupId("log")
    const member = (name: string) => ({ memberId: randomUUID(), name, host: "host-1", pid: 42 })
    const a = member("a")
    const b = member("b")
    const c = member("c")
    yield* store.join(groupId, a, 60_000)
    yield* store.join(groupId, b, 60_000)
    yield* store.leave(groupId, a.memberId)
    // A lease of 1 ms has run out by the next statement: the reap removes c.
    yield* store.join(groupId, c, 1)
    const gone = yield* store.reap(groupId)
    expect(gone).toBe(1)
    // Nothing to reap: no change, no row.
    yield* store.reap(groupId)
    const rows = yield* logOf(groupId)
    expect(rows.map((r) => `${r.epoch}:${r.cause}:${r.size}`)).toEqual(["1:join:1", "2:join:2", "3:leave:1", "4:join:2", "5:reap:1"])
    expect(rows.map((r) => r.subject)).toEqual([a.memberId, b.memberId, a.memberId, c.memberId, null])
    expect(rows[1]!.assignment).toEqual([
      { member_id: a.memberId, name: "a", host: "host-1", pid: 42, index: 0 },
      { member_id: b.memberId, name: "b", host: "host-1", pid: 42, index: 1 }
    ])
    // After a's leave, b moved into index 0; after the reap, only b.
    expect(rows[2]!.assignment.map((m) => `${m.name}=${m.index}`)).toEqual(["b=0"])
    expect(rows[4]!.assignment.map((m) => `${m.name}=${m.index}`)).toEqual(["b=0"])
    yield* store.leave(groupId, b.memberId)
    expect((yield* logOf(groupId)).at(-1)).toMatchObject({ cause: "leave", size: 0, assignment: [] })
  }).pipe(Effect.provide(StoreLive)))

it.live("retention: rows older than the retention and beyond the row cap go, per group, at that group's changes", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const g = randomGroupId("retention")
    const other = randomGroupId("retention-other")
    yield* sql`INSERT INTO modulo_group.groups (group_id) VALUES (${g}), (${other})`
    const log = (group: string, at: string, settings: { retention?: string; maxRows?: string } = {}) =>
      sql.withTransaction(Effect.gen(function*() {
        if (settings.retention !== undefined) yield* sql`SELECT set_config('modulo_group.change_log_retention', ${settings.retention}, true)`
        if (settings.maxRows !== undefined) yield* sql`SELECT set_config('modulo_group.change_log_max_rows', ${settings.maxRows}, true)`
        // One row per epoch: each logged change is a new epoch, as the store's changes are.
        yield* sql`UPDATE modulo_group.groups SET epoch = epoch + 1 WHERE group_id = ${group}`
        yield* sql`SELECT modulo_group.log_change(${group}, 'join', NULL, ${at}::timestamptz)`
      }))
    const times = (group: string) =>
      Effect.map(
        sql<{ t: string }>`SELECT to_char(changed_at AT TIME ZONE 'UTC', 'HH24:MI') AS t FROM modulo_group.change_log
                            WHERE group_id = ${group} ORDER BY changed_at`,
        (rows) => rows.map((r) => r.t)
      )
    yield* log(g, "2026-01-01T00:00:00Z")
    yield* log(other, "2026-01-01T00:00:00Z")
    yield* log(g, "2026-01-01T01:00:00Z")
    // The default retention (24 hours) keeps both.
    yield* log(g, "2026-01-01T02:00:00Z")
    expect(yield* times(g)).toEqual(["00:00", "01:00", "02:00"])
    // 90 minutes: the row of 00:00 goes (the other group's stays).
    yield* log(g, "2026-01-01T02:30:00Z", { retention: "90 minutes" })
    expect(yield* times(g)).toEqual(["01:00", "02:00", "02:30"])
    expect(yield* times(other)).toEqual(["00:00"])
    // At most 2 rows.
    yield* log(g, "2026-01-01T03:00:00Z", { maxRows: "2" })
    expect(yield* times(g)).toEqual(["02:30", "03:00"])
    // Settings that do not parse fall back to the defaults: the change goes through.
    yield* log(g, "2026-01-01T03:30:00Z", { retention: "not an interval", maxRows: "many" })
    expect(yield* times(g)).toEqual(["02:30", "03:00", "03:30"])
    // A retention that parses but reaches past the range of timestamps ("keep for ever") keeps every
    // row: the change goes through (it failed with 22008, and with it every change of the group).
    yield* log(g, "2026-01-01T04:00:00Z", { retention: "10000 years" })
    expect(yield* times(g)).toEqual(["02:30", "03:00", "03:30", "04:00"])
    // A negative one counts as 0: only the newest row, this change's, stays.
    yield* log(g, "2026-01-01T04:30:00Z", { retention: "-1 hour" })
    expect(yield* times(g)).toEqual(["04:30"])
    // The log goes with its group.
    yield* sql`DELETE FROM modulo_group.groups WHERE group_id IN (${g}, ${other})`
    expect(yield* times(g)).toEqual([])
  }).pipe(Effect.provide(StoreLive)))

it.live("a stray caller (a role with only USAGE on the schema, e.g. a dashboard's) can neither add rows nor trim the log", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const store = yield* MembershipStore
    const groupId = randomGroupId("log-stray")
    const a = { memberId: randomUUID(), name: "a", host: "host-1", pid: 42 }
    yield* store.join(groupId, a, 60_000)
    yield* store.join(groupId, { ...a, memberId: randomUUID(), name: "b" }, 60_000)
    const before = yield* logOf(groupId)
    expect(before.map((r) => `${r.epoch}:${r.cause}`)).toEqual(["1:join", "2:join"])
    const role = yield* hostileRole
    yield* Effect.gen(function*() {
      yield* sql.unsafe(serialised(`GRANT USAGE ON SCHEMA modulo_group TO "${role.name}"`))
      const client = yield* hostileClient(role)
      // A time far ahead would trim every row by age; a cap of 0 rows would trim them all by count.
      yield* Effect.promise(() => client.query("SELECT set_config('modulo_group.change_log_max_rows', '0', false)"))
      for (const cause of ["join", "leave", "reap"]) {
        yield* Effect.promise(() =>
          client.query("SELECT modulo_group.log_change($1, $2, NULL, now() + interval '10 years')", [groupId, cause])
        )
      }
    }).pipe(
      Effect.scoped,
      Effect.ensuring(sql.unsafe(serialised(`REVOKE USAGE ON SCHEMA modulo_group FROM "${role.name}"`)).pipe(Effect.orDie))
    )
    expect(yield* logOf(groupId)).toEqual(before)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)))
