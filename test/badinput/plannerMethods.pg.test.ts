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
 * The criterion is the plan, read with EXPLAIN (nothing runs), with nested loops off: no node the
 * planner had to take against the setting. PostgreSQL before 18 adds 1e10 to such a node's cost
 * (`disable_cost`), 18 marks it `Disabled` and leaves the cost alone; a control query that only a
 * nested loop can plan shows the criterion catches either. The cost itself is printed, not judged:
 * it depends on the tables' sizes and statistics, not only on the plan's shape (the slots-mode batch
 * cost 135,397 in a CI run's shared test database, past `jit_above_cost`'s default of 100,000, and
 * 1,728 on a fresh one; it was judged against that threshold until then). On a database of 100,000
 * members in 6 groups the batched renewal reads the batch's groups' members by a sequential scan
 * (cost 13,905); test/batch/plans.pg.test.ts has the realistic case (20,000 groups: no sequential
 * scan, nested loops off).
 * test/badinput/replicationRole.pg.test.ts has the warning a store gives as it starts under such
 * settings.
 */
import { SqlClient } from "@effect/sql"
import type { Statement } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Statements from "../../src/internal/pg/statements.js"
import * as Migrations from "../../src/Migrations.js"
import { PgLive } from "../support/Database.js"
import { explainAll, type PlanNode, planNodes } from "../support/Plans.js"

/** PostgreSQL before 18 adds this to the cost of a node of a disabled method. */
const DISABLE_COST = 1e10

/** A node the planner took against the settings: `Disabled` (PostgreSQL 18), or `disable_cost` in its cost. */
const disabledNodes = (plan: PlanNode): ReadonlyArray<string> =>
  planNodes(plan).filter((node) => node.Disabled === true || node["Total Cost"] >= DISABLE_COST / 10).map((node) => node["Node Type"])

/** Each statement's plan under `enable_nestloop = off`: its total cost and the nodes taken against it. */
const costsWithoutNestedLoops = (statements: Record<string, Statement.Statement<unknown>>) =>
  Effect.map(explainAll(statements, ["SET LOCAL enable_nestloop = off"]), (plans) => {
    const judged: Record<string, { readonly cost: number; readonly disabled: ReadonlyArray<string> }> = {}
    for (const [name, plan] of Object.entries(plans)) judged[name] = { cost: plan["Total Cost"], disabled: disabledNodes(plan) }
    return judged
  })

it.live("with nested loops off, the heartbeat and the fence's last statement are planned without a nested loop", () =>
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
    // The schema (a fresh database, the file run alone).
    yield* Migrations.run
    // Control: a cross join, which only a nested loop can plan.
    const control = yield* costsWithoutNestedLoops({ crossJoin: sql`SELECT * FROM pg_catalog.generate_series(1, 10) x, pg_catalog.generate_series(1, 10) y` })
    expect(control["crossJoin"]!.disabled).not.toEqual([])
    const plans = yield* costsWithoutNestedLoops({
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
    console.log(Object.entries(plans).map(([name, p]) => `${name} ${Math.round(p.cost)}`).join(", "))
    const against = Object.entries(plans).filter(([, p]) => p.disabled.length > 0).map(([name, p]) => [name, p.disabled])
    expect(against).toEqual([])
  }).pipe(Effect.provide(PgLive)), 30_000)
