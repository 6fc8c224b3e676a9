/**
 * A row renamed by hand, renamed back, and renamed again later (per-slot G2; a review of the wait for
 * slots held by an id no row has). The record of such slots
 * (`groups.missing_indices` as -1 - slot) is kept by slot number only, and nothing forgets it when the
 * rename is undone by hand (the 0015 triggers fire on an index given, not on a member_id changed), nor
 * does a change forget it unless one runs while the orphans are gone. A second rename of the same
 * member's row, later, finds its slots already "waited for" since the first one: the next change hands
 * them over at once, beside their working holder.
 *
 * Interleaving (S = 8, lease 3 s, heartbeat 200 ms; real PostgreSQL, real Membership members):
 *   1. a and b work 4 slots each.
 *   2. t1: a's row is given another member id by hand; one change attempt (a reap) finds a's 4 slots
 *      held by an id no row has and records {-1 - s} since t1 (RowsMissing); the rename is undone by
 *      hand ~20 ms later (a's renewals were held for those ms: a never saw its row go). No change runs
 *      after that, so the record stays.
 *   3. t1 + 2.5 s: a's store hangs (a keeps working until its own deadline, its last renewal + 2.5 s);
 *      a's row is renamed again by hand; c joins. The join finds the same orphans ⊆ the record: it
 *      waits only what is left of t1's lease (~0.5 s), then hands a's slots to their owners at once;
 *      c starts the ones it now owns while a still works them.
 * Without step 2's record the join would wait a whole lease from step 3 (a stops first: no overlap).
 * Root: forget_missing (0015) fires on INSERT / UPDATE OF idx only, not on UPDATE OF member_id; and a
 * change forgets the record only when it runs while nothing is missing (here none ran in between). The
 * record's entries name slots, not holders, so any later orphan set within it reuses the old time.
 * Before the fix: 1519-1695 ms of two holders on the slot moved from a to c (4 of 4 runs; 389-707 ms with
 * the second rename at t1 + 1.5 s). Now a row trigger (migration 0016, `forget_missing_member`) forgets
 * the record whenever a row's member id changes: the join records anew and waits a whole lease.
 *
 * The same with the row moved to another group and back, then moved away again (a review of migration
 * 0016, whose trigger fired on a change of member_id only: 527-528 ms of two holders on each of a's 4
 * slots, 3 of 3 runs; in modulo mode, test/safety/missingRowMoved.pg.test.ts). Migration 0017: the
 * trigger fires on a change of group_id too.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect } from "effect"
import type { MembershipStoreService } from "../../src/MembershipStore.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import { waitFor } from "../faults/support.js"
import { randomGroupId } from "../support/Database.js"
import { makeSlotRecorder } from "../support/SlotRecorder.js"
import { config, overlaps, StoreLive, trackedMember } from "./fiberGroup.js"

/** The hand edits: take a's row away from the group, put it back, take it away again. */
type Edit = (
  sql: SqlClient.SqlClient,
  groupId: string,
  memberId: string
) => Effect.Effect<{ readonly away: Effect.Effect<unknown, unknown>; readonly back: Effect.Effect<unknown, unknown>; readonly again: Effect.Effect<unknown, unknown> }, unknown>

const edits: ReadonlyArray<readonly [string, Edit]> = [
  ["given another member id", (sql, _groupId, memberId) => {
    const x = crypto.randomUUID()
    return Effect.succeed({
      away: sql`UPDATE modulo_group.members SET member_id = ${x} WHERE member_id = ${memberId}`,
      back: sql`UPDATE modulo_group.members SET member_id = ${memberId} WHERE member_id = ${x}`,
      again: sql`UPDATE modulo_group.members SET member_id = gen_random_uuid() WHERE member_id = ${memberId}`
    })
  }],
  ["moved to another group", (sql, groupId, memberId) =>
    Effect.gen(function*() {
      const away = `${groupId}-away`
      // Another group row for the move (a copy of this one's; no member ever joins it).
      yield* sql`INSERT INTO modulo_group.groups SELECT * FROM jsonb_populate_record(NULL::modulo_group.groups,
        (SELECT to_jsonb(g) || jsonb_build_object('group_id', ${away}::text) FROM modulo_group.groups g WHERE g.group_id = ${groupId}))`
      const move = (to: string) => sql`UPDATE modulo_group.members SET group_id = ${to} WHERE member_id = ${memberId}`
      return { away: move(away), back: move(groupId), again: move(away) }
    })]
]

for (const [what, edit] of edits) it.live(`per-slot G2: a row ${what} by hand, put back, and taken away again later: its slots wait a whole lease from the second edit`, () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("rename-again")
    const store = yield* MembershipStore
    const sql = yield* SqlClient.SqlClient
    const rec = yield* makeSlotRecorder(store, groupId)
    let hbHold: Deferred.Deferred<void> | undefined
    let frozen = false
    const gated: MembershipStoreService = {
      ...store,
      // Frozen: a call never returns, also one in flight when the freeze came (as a hung process).
      heartbeat: (...args) =>
        Effect.suspend(() =>
          frozen ? Effect.never : hbHold !== undefined ? Effect.zipRight(Deferred.await(hbHold), store.heartbeat(...args)) : store.heartbeat(...args)
        ).pipe(Effect.flatMap((r) => (frozen ? Effect.never : Effect.succeed(r)))),
      join: (...args) => Effect.suspend(() => (frozen ? Effect.never : store.join(...args))),
      leave: (...args) => Effect.suspend(() => (frozen ? Effect.never : store.leave(...args))),
      reap: (...args) => Effect.suspend(() => (frozen ? Effect.never : store.reap(...args))),
      releaseSlots: (...args) => Effect.suspend(() => (frozen ? Effect.never : store.releaseSlots(...args))),
      retakeSlot: (...args) => Effect.suspend(() => (frozen ? Effect.never : store.retakeSlot(...args)))
    }
    const member = trackedMember(groupId, rec, config)
    const { m: a } = yield* member("a", gated, { notifications: false })
    yield* member("b", store)
    yield* waitFor(() => rec.covered() === 8 && rec.running().size === 2, Duration.seconds(20), "formed")
    // 2. the edit, one change attempt, the edit undone (a's renewals held meanwhile).
    hbHold = yield* Deferred.make<void>()
    yield* Effect.sleep("60 millis")
    const e = yield* edit(sql, groupId, a.memberId)
    yield* e.away
    const t1 = Date.now()
    const attempt = yield* Effect.either(store.reap(groupId))
    yield* e.back
    yield* Deferred.succeed(hbHold, undefined)
    hbHold = undefined
    const [r1] = yield* sql<{ missing_indices: Array<number> | null }>`SELECT missing_indices FROM modulo_group.groups WHERE group_id = ${groupId}`
    console.log(`attempt: ${attempt._tag} ${attempt._tag === "Left" ? attempt.left.reason : ""}; record ${JSON.stringify(r1?.missing_indices)}; took ${Date.now() - t1} ms`)
    // 3. later: a hangs, its row is edited again, c joins.
    yield* Effect.sleep(Duration.millis(Math.max(0, t1 + 2500 - Date.now())))
    const [r2] = yield* sql<{ missing_indices: Array<number> | null }>`SELECT missing_indices FROM modulo_group.groups WHERE group_id = ${groupId}`
    console.log(`record before the second edit: ${JSON.stringify(r2?.missing_indices)}`)
    frozen = true
    yield* e.again
    const t2 = Date.now()
    const { m: c } = yield* member("c", store)
    console.log(`c joined ${Date.now() - t2} ms after the second edit`)
    yield* waitFor(() => !rec.running().has(a.memberId), Duration.seconds(20), "a stopped")
    yield* Effect.sleep("500 millis")
    console.log(rec.events.map((e) => `${e.at - t1} ${e.kind} ${e.member === a.memberId ? "a" : e.member === c.memberId ? "c" : "b"} ${e.slot}@${e.generation}`).join("\n"))
    const found = overlaps(rec.events, Date.now())
    console.log("c runs", rec.running().get(c.memberId), "violations", rec.violations, "overlaps ms", found)
    expect(attempt._tag).toBe("Left")
    expect(rec.violations).toEqual([])
    expect(found).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 90_000)
