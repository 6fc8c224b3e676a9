/**
 * Issue 15, the database's cost as it grows: on a database that holds 20,000 groups (100,000
 * members, slots, waiters, change log rows), analyzed, every statement the protocol runs per
 * heartbeat, per change, per fence and per slot reads its tables by index: no plan has a
 * sequential scan of a `modulo_group` table. A sequential scan costs every heartbeat or change of
 * every group time in proportion to all the groups in the database: the batched renewal once
 * hash-joined a sequential scan of `groups` (20,009 rows read for a batch of one member).
 *
 * Plans only (EXPLAIN without ANALYZE: nothing runs); the operator's overviews (`selectGroups`,
 * the CLI's `groups` and dashboard list) read every group by design and are not here.
 */
import { SqlClient } from "@effect/sql"
import type { Statement } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Migrations from "../../src/Migrations.js"
import * as Statements from "../../src/internal/pg/statements.js"
import { ownDatabase, PgLive } from "../support/Database.js"
import { explainAll, planNodes } from "../support/Plans.js"

const GROUPS = 20_000
const PER_GROUP = 5
const SLOT_GROUPS = 2_000
const SLOTS = 16

/** Each statement's sequential scans of `modulo_group` tables, by name; planned only (`explainAll`). */
const scansOf = (statements: Record<string, Statement.Statement<unknown>>, settings: ReadonlyArray<string> = []) =>
  Effect.map(explainAll(statements, settings, ["VERBOSE"]), (plans) => {
    const found: Record<string, Array<string>> = {}
    for (const [name, plan] of Object.entries(plans)) {
      const scans = planNodes(plan)
        .filter((node) => node["Node Type"] === "Seq Scan" && node.Schema === "modulo_group")
        .map((node) => node["Relation Name"]!)
      if (scans.length > 0) found[name] = scans
    }
    return found
  })

const member = (i: number) => `00000000-0000-4000-8000-${i.toString(16).padStart(12, "0")}`

/**
 * `GROUPS` groups `g<i>` (the last `SLOT_GROUPS` in slots mode), 5 members each, waiters, change log
 * rows; analyzed.
 */
const fill = (GROUPS: number, SLOT_GROUPS: number) => Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`INSERT INTO modulo_group.groups (group_id, epoch, size, changed_at, slots)
    SELECT 'g' || i, 3, ${PER_GROUP}, now(), CASE WHEN i > ${GROUPS - SLOT_GROUPS} THEN ${SLOTS} END
      FROM generate_series(1, ${GROUPS}) i`)
  yield* sql.unsafe(`INSERT INTO modulo_group.members (member_id, group_id, idx, acked_epoch, assigned_epoch, assigned_size,
      lease_expires_at, heartbeat_at, joined_at, name, host, pid, instance_id, rejoin_grace_ms)
    SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, 'g' || (i / ${PER_GROUP} + 1), i % ${PER_GROUP},
           3, 3, ${PER_GROUP}, now() + interval '1 hour', now(), now(), 'm' || i, 'h', 1,
           CASE WHEN i % 2 = 0 THEN 'inst' || i END, CASE WHEN i % 2 = 0 THEN 1000 ELSE 0 END
      FROM generate_series(0, ${GROUPS * PER_GROUP - 1}) i`)
  yield* sql.unsafe(`INSERT INTO modulo_group.slots (group_id, slot, owner, holder, generation, changed_at)
    SELECT 'g' || g, s, m.member_id, m.member_id, 1, now()
      FROM generate_series(${GROUPS - SLOT_GROUPS + 1}, ${GROUPS}) g, generate_series(0, ${SLOTS - 1}) s
      JOIN LATERAL (SELECT member_id FROM modulo_group.members WHERE group_id = 'g' || g AND idx = s % ${PER_GROUP}) m ON true`)
  yield* sql.unsafe(`INSERT INTO modulo_group.instance_waiters (member_id, group_id, instance_id, host, pid, name, since, seen_at, lease_ms)
    SELECT gen_random_uuid(), 'g' || i, 'inst' || i, 'h', 1, 'w', now(), now(), 3000 FROM generate_series(1, ${GROUPS}) i`)
  yield* sql.unsafe(`INSERT INTO modulo_group.change_log (group_id, epoch, size, incarnation, changed_at, cause, subject, assignment)
    SELECT 'g' || (i % ${GROUPS} + 1), i / ${GROUPS}, ${PER_GROUP}, 1, now(), 'join', NULL, '[]'::jsonb
      FROM generate_series(0, ${2 * GROUPS - 1}) i`)
  yield* sql.unsafe(`ANALYZE modulo_group.groups, modulo_group.members, modulo_group.slots, modulo_group.instance_waiters,
    modulo_group.change_log, modulo_group.fence_checks`)
})

/** `body` on a database of its own, migrated and filled (`fill`), dropped after. */
const onFilled = <A, E>(prefix: string, groups: number, slotGroups: number, body: Effect.Effect<A, E, SqlClient.SqlClient>) =>
  Effect.gen(function*() {
    const db = yield* ownDatabase(prefix, { maxConnections: 1 })
    return yield* Effect.gen(function*() {
      yield* Migrations.run
      yield* fill(groups, slotGroups)
      return yield* body
    }).pipe(Effect.provide(db.layer))
  }).pipe(Effect.scoped, Effect.provide(PgLive))

describe("plans on a database of 20,000 groups", () => {
  it.live("no statement of the protocol reads a modulo_group table sequentially", () =>
    onFilled("plans", GROUPS, SLOT_GROUPS, Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const gid = "g7"
      const me = member(6 * PER_GROUP)
      const other = member(6 * PER_GROUP + 1)
      const sgid = `g${GROUPS}`
      const smember = member((GROUPS - 1) * PER_GROUP)
      const now = null
      const person = { memberId: "10000000-0000-4000-8000-000000000001", host: "h", pid: 1, name: "n" }
      const writer = "20000000-0000-4000-8000-000000000002"
      const target = { groupId: gid, memberId: me, epoch: 3, index: 0, size: PER_GROUP }
      const renewals = (ids: ReadonlyArray<string>, group: string, slots: boolean) =>
        ids.map((id) => ({ memberId: id, groupId: group, ack: 3, leaseMs: 3000, stuck: false, slots, seq: 1 }))
      const statements: Record<string, Statement.Statement<unknown>> = {
        tryLockGroup: Statements.tryLockGroup(sql, gid, now, 2000, 500),
        lockGroup: Statements.lockGroup(sql, gid, now),
        selectGroupForUpdate: Statements.selectGroupForUpdate(sql, gid, now),
        markMissing: Statements.markMissing(sql, gid, now, 3000, [1]),
        reassignIndices: Statements.reassignIndices(sql, gid, 4, now),
        bumpEpoch: Statements.bumpEpoch(sql, gid, now, 4, false),
        deleteExpiredAndOwnRow: Statements.deleteExpiredAndOwnRow(sql, gid, me, writer, now, "inst30"),
        insertMember: Statements.insertMember(sql, gid, person, 4, 3000, now, 1, writer),
        deleteRiderRowsJoin: Statements.deleteRiderRows(sql, [me, other], writer, gid),
        deleteRiderRowsLeave: Statements.deleteRiderRows(sql, [me, other], writer, gid),
        insertRiders: Statements.insertRiders(sql, gid, [{ member: person, leaseMs: 3000 }], 4, now, 1, writer),
        selectOverdue: Statements.selectOverdue(sql, gid, me, 1000, 5000, now),
        deferJoin: Statements.deferJoin(sql, gid, person, 4, 3000, now, 1, writer, null),
        adoptRow: Statements.adoptRow(sql, gid, me, 4, 3000, now, 1, writer, 0),
        deleteRunOutWaiting: Statements.deleteRunOutWaiting(sql, gid, "inst30", me, now),
        tryShareGroup: Statements.tryShareGroup(sql, gid, 2000),
        selectBusyJoin: Statements.selectBusyJoin(sql, gid, me, writer, now),
        selectInstance: Statements.selectInstance(sql, gid, "inst30", now),
        takeOver: Statements.takeOver(sql, gid, me, person, 4, 3000, 1000, now, 1, writer),
        deleteInstanceRow: Statements.deleteInstanceRow(sql, gid, me),
        releaseMember: Statements.releaseMember(sql, gid, me, 3, writer, now),
        selectJoinedView: Statements.selectJoinedView(sql, gid, me, 3, now),
        selectRiderIndices: Statements.selectRiderIndices(sql, gid, [me, other], writer),
        deleteExpired: Statements.deleteExpired(sql, gid, now, 3),
        selectRowsOff: Statements.selectRowsOff(sql, gid),
        deleteMember: Statements.deleteMember(sql, gid, me, writer),
        createSlots: Statements.createSlots(sql, sgid, SLOTS, now),
        selectSlotsForChange: Statements.selectSlotsForChange(sql, sgid),
        selectMemberOrder: Statements.selectMemberOrder(sql, sgid),
        updateSlots: Statements.updateSlots(sql, sgid, [{ slot: 1, owner: smember, handTo: smember }, { slot: 2, owner: null, handTo: null }], now),
        reissueHeldSlots: Statements.reissueHeldSlots(sql, sgid, smember, now),
        selectSlotView: Statements.selectSlotView(sql, sgid, smember),
        releaseSlots: Statements.releaseSlots(sql, sgid, smember, [{ slot: 0, generation: 1 }], writer, now, 2000),
        retakeSlot: Statements.retakeSlot(sql, sgid, smember, 0, 1, writer, now, 2000),
        selectSlotRows: Statements.selectSlotRows(sql, sgid),
        renewLease: Statements.renewLease(sql, gid, me, 3, 3000, false, now, 2000, 1, writer),
        renewLeaseSlots: Statements.renewLease(sql, sgid, smember, 3, 3000, false, now, 2000, 1, writer),
        renewLeasesOne: Statements.renewLeases(sql, renewals([me], gid, false), writer, now, 2000),
        renewLeasesMany: Statements.renewLeases(
          sql,
          [...renewals([me, other], gid, false), ...renewals([member(100), member(101)], "g21", false)],
          writer,
          now,
          2000
        ),
        renewLeasesSlots: Statements.renewLeases(sql, renewals([smember], sgid, true), writer, now, 2000),
        selectGroup: Statements.selectGroup(sql, gid),
        selectMembers: Statements.selectMembers(sql, gid, now),
        upsertWaiter: Statements.upsertWaiter(sql, gid, person, "inst30", 3000, now, 2000),
        deleteWaiter: Statements.deleteWaiter(sql, person.memberId, 2000),
        selectWaiters: Statements.selectWaiters(sql, gid, now),
        fenceGroup: Statements.fenceGroup(sql, gid, "plan"),
        fenceMember: Statements.fenceMember(sql, target, "plan"),
        fenceSlotMember: Statements.fenceSlotMember(sql, { ...target, groupId: sgid, memberId: smember }, [{ slot: 0, generation: 1 }], "plan"),
        fenceSlots: Statements.fenceSlots(sql, sgid, [0, 5], "plan")
      }
      expect(yield* scansOf(statements)).toEqual({})
      // Nested loops off (an operator's default for the database or role, a review): the planner's
      // other joins must not read a whole table either (the batched heartbeat, the fence's last
      // statement and every change's reassignment did: their cost grew with every group's rows, past
      // JIT's threshold; and the status read of waiters).
      const begun: Statements.FenceBegun = {
        old_st: "0", old_idle: "0", old_tx: null, old_lock: "0", iso: "read committed", st: "2000", idle: "2000", tx: null, xact: "1"
      }
      const marker = { chain: "c", before: "" }
      const withFenceEnd = {
        ...statements,
        fenceEnd: Statements.fenceEnd(sql, target, begun, undefined, marker),
        fenceEndNested: Statements.fenceEnd(sql, target, begun, "3000", marker),
        fenceEndSlots: Statements.fenceEnd(sql, { ...target, groupId: sgid, memberId: smember, slots: [{ slot: 0, generation: 1 }] }, begun, undefined, marker)
      }
      expect(yield* scansOf(withFenceEnd, ["SET LOCAL enable_nestloop = off"])).toEqual({})
    })), 120_000)
})
