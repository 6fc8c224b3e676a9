/**
 * JIT thresholds below the members' statements' costs (`jit_above_cost = 0`, or `enable_sort = off` on
 * PostgreSQL 17 and before, whose penalty for a disabled sort takes a change's reassignment and the
 * fence's last statement past `jit_above_cost`'s default). A review (attack85) measured each such
 * statement compiled at every run, about 0.3 s of the server's CPU: a fenced call of timeout 250 ms
 * failed, and a group of statement timeout 200 ms never formed. A change, a busy join, the warm-up
 * and a fence of its own transaction now turn JIT off for themselves in their first statement; a
 * heartbeat is one statement and cannot, so a store says once as it starts when its heartbeat would
 * be compiled.
 *
 * The criterion is EXPLAIN ANALYZE's report (a `JIT` entry when the statement was compiled), inside
 * transactions that are rolled back. The controls run the same statement without the first statement's
 * setting, so that a server without JIT (`pg_jit_available()` false: the test skips) or one that does
 * not compile it cannot pass the test vacuously.
 */
import { SqlClient } from "@effect/sql"
import type { Statement } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import * as Statements from "../../src/internal/pg/statements.js"
import { collectLogs } from "../safety/support.js"
import { clientWithOptions, PgLive } from "../support/Database.js"

/** Whether running `statement` (in a rolled-back transaction, after `first`) was JIT-compiled. */
const compiled = (first: (sql: SqlClient.SqlClient) => Statement.Statement<unknown> | undefined, statement: (sql: SqlClient.SqlClient) => Statement.Statement<unknown>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    let jit = false
    yield* sql.withTransaction(Effect.gen(function*() {
      // As a database's or role's default would have it: every statement past the threshold.
      yield* sql.unsafe("SET LOCAL jit_above_cost = 0")
      const begin = first(sql)
      if (begin !== undefined) yield* begin
      const [text, params] = statement(sql).compile()
      const rows = yield* sql.unsafe<{ "QUERY PLAN": Array<Record<string, unknown>> }>(
        `EXPLAIN (ANALYZE, FORMAT JSON) ${text}`,
        params as Array<unknown>
      )
      jit = rows[0]!["QUERY PLAN"][0]!["JIT"] !== undefined
      return yield* Effect.fail("rollback" as const)
    })).pipe(Effect.catchIf((e): e is "rollback" => e === "rollback", () => Effect.void))
    return jit
  })

const jitAvailable = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql<{ available: boolean }>`SELECT pg_catalog.pg_jit_available() AS available`
  if (row?.available !== true) console.log("skipped: this PostgreSQL has no JIT (pg_jit_available() is false; install its LLVM JIT package to run it)")
  return row?.available === true
})

const gid = "jit-off"
const me = "00000000-0000-4000-8000-0000000000a1"

it.live("a change's statements after its first are not JIT-compiled, whatever the JIT thresholds", () =>
  Effect.gen(function*() {
    if (!(yield* jitAvailable)) return
    const reassign = (sql: SqlClient.SqlClient) => Statements.reassignIndices(sql, gid, 2, null)
    // Control: without the first statement the reassignment is compiled.
    expect(yield* compiled(() => undefined, reassign)).toBe(true)
    expect(yield* compiled((sql) => Statements.tryLockGroup(sql, gid, null, 2000, 1000), reassign)).toBe(false)
    expect(yield* compiled((sql) => Statements.boundTransaction(sql, 2000), reassign)).toBe(false)
    expect(yield* compiled((sql) => Statements.tryShareGroup(sql, gid, 2000), (sql) => Statements.selectBusyJoin(sql, gid, me, me, null)))
      .toBe(false)
  }).pipe(Effect.provide(PgLive)), 30_000)

it.live("a fence of its own transaction is not JIT-compiled at its last statement; nested, the app's setting stays", () =>
  Effect.gen(function*() {
    if (!(yield* jitAvailable)) return
    const begun: Statements.FenceBegun = {
      old_st: "0", old_idle: "0", old_tx: null, old_lock: "0", iso: "read committed", st: "2000", idle: "2000", tx: null, xact: "1"
    }
    const target = { groupId: gid, memberId: me, epoch: 3, index: 0, size: 2 }
    const end = (sql: SqlClient.SqlClient) => Statements.fenceEnd(sql, target, begun, undefined, { chain: "c", before: "" })
    expect(yield* compiled((sql) => Statements.fenceBegin(sql, "2000", true), end)).toBe(false)
    // Inside an app's transaction the fence leaves JIT as the app has it (here: compiled).
    expect(yield* compiled((sql) => Statements.fenceBegin(sql, "2000", false), end)).toBe(true)
  }).pipe(Effect.provide(PgLive)), 30_000)

const jitWarning = /the members' heartbeat is planned at cost (\d+), above jit_above_cost \(([^)]*)\) with JIT on/

const startWarnings = (options: string) =>
  Effect.gen(function*() {
    const logs = collectLogs()
    yield* PgMembershipStore.prepare({ startupTimeout: "2 seconds" }).pipe(Effect.provide(logs.layer))
    return logs.lines.filter((l) => jitWarning.test(l.message)).map((l) => `${l.level} ${jitWarning.exec(l.message)![2]}`)
  }).pipe(Effect.provide(clientWithOptions(options, "jit-start")))

it.live("a store warns once as it starts when its heartbeats would be JIT-compiled, and not otherwise", () =>
  Effect.gen(function*() {
    if (!(yield* jitAvailable.pipe(Effect.provide(PgLive)))) return
    expect(yield* startWarnings("-c jit_above_cost=0")).toEqual(["WARN 0"])
    expect(yield* startWarnings("-c jit_above_cost=100000")).toEqual([])
    expect(yield* startWarnings("-c jit_above_cost=0 -c jit=off")).toEqual([])
  }), 30_000)
