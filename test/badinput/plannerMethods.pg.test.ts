/**
 * Planner methods turned off for the members' sessions (`ALTER DATABASE/ROLE ... SET enable_nestloop
 * = off`, the URL's options). A review (attack83) found the single-member heartbeat (`renewLease`)
 * 150 times slower there: its one-row CTEs were cross-joined, which only a nested loop can do, so
 * the plan carried the planner's penalty for a disabled method (1e10 per join), past every JIT
 * threshold, and JIT compiled the statement at every execution (0.3 s of the server's CPU; 1-2 s
 * under a test run's load, when renewals missed their deadlines). The fence's last statement did the
 * same (0.3 s per fenced transaction), and the batched heartbeat of a slots-mode member (a lateral
 * join for its slot view), a join's read behind a busy group lock (`selectBusyJoin`) and a slots-mode
 * group's creation (`createSlots`). They now read those rows as sub-selects and join nothing that way.
 *
 * The criterion is the plan's cost, read with EXPLAIN (nothing runs): below `jit_above_cost`'s default
 * (100,000), with nested loops off. test/badinput/replicationRole.pg.test.ts has the warning a store
 * gives as it starts under such settings (statements not listed here still cost more there).
 */
import { SqlClient } from "@effect/sql"
import type { Statement } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Statements from "../../src/internal/pg/statements.js"
import { PgLive } from "../support/Database.js"

const JIT_ABOVE_COST = 100_000

/** Each statement's planned total cost under `enable_nestloop = off`. */
const costsWithoutNestedLoops = (statements: Record<string, Statement.Statement<unknown>>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    return yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql.unsafe("SET LOCAL enable_nestloop = off")
      const costs: Record<string, number> = {}
      for (const [name, statement] of Object.entries(statements)) {
        const [text, params] = statement.compile()
        const rows = yield* sql.unsafe<{ "QUERY PLAN": Array<{ Plan: { "Total Cost": number } }> }>(
          `EXPLAIN (FORMAT JSON) ${text}`,
          params as Array<unknown>
        )
        costs[name] = rows[0]!["QUERY PLAN"][0]!.Plan["Total Cost"]
      }
      return costs
    }))
  })

it.live("with nested loops off, the heartbeat and the fence's last statement are planned below JIT's threshold", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const gid = "planner-methods"
    const me = "00000000-0000-4000-8000-000000000001"
    const writer = "20000000-0000-4000-8000-000000000002"
    const begun: Statements.FenceBegun = {
      old_st: "0", old_idle: "0", old_tx: null, old_lock: "0", iso: "read committed", st: "2000", idle: "2000", tx: null, xact: "1"
    }
    const target = { groupId: gid, memberId: me, epoch: 3, index: 0, size: 2 }
    const slotTarget = { ...target, slots: [{ slot: 0, generation: 1 }] }
    const marker = { chain: "c", before: "" }
    const costs = yield* costsWithoutNestedLoops({
      renewLease: Statements.renewLease(sql, gid, me, 3, 3000, false, null, 2000, 1, writer),
      renewLeaseSlots: Statements.renewLease(sql, gid, me, 3, 3000, false, null, 2000, 1, writer, true),
      renewLeaseAckCurrent: Statements.renewLease(sql, gid, me, 3, 3000, true, null, 2000, 1, writer, false, true),
      renewLeases: Statements.renewLeases(
        sql,
        [{ memberId: me, groupId: gid, ack: 3, leaseMs: 3000, stuck: false, slots: false, seq: 1 }],
        writer,
        null,
        2000
      ),
      renewLeasesSlots: Statements.renewLeases(
        sql,
        [
          { memberId: me, groupId: gid, ack: 3, leaseMs: 3000, stuck: false, slots: true, seq: 1 },
          { memberId: writer, groupId: "other", ack: 3, leaseMs: 3000, stuck: false, slots: false, seq: 2 }
        ],
        writer,
        null,
        2000
      ),
      selectBusyJoin: Statements.selectBusyJoin(sql, gid, me, writer, null),
      createSlots: Statements.createSlots(sql, gid, 16, null),
      fenceEnd: Statements.fenceEnd(sql, target, begun, undefined, marker),
      fenceEndNested: Statements.fenceEnd(sql, target, begun, "3000", marker),
      fenceEndSlots: Statements.fenceEnd(sql, slotTarget, begun, undefined, marker)
    })
    const over = Object.entries(costs).filter(([, cost]) => cost >= JIT_ABOVE_COST)
    expect(over).toEqual([])
  }).pipe(Effect.provide(PgLive)), 30_000)
