/**
 * A restore that takes away the row of the member with the longest lease, while that member cannot
 * reach the database (found by a review, attack94). The others' views are then of an older epoch and
 * say `expired`; they ask for the reap that moves the group on only after a lease, which they read
 * from their views: views of the restored rows no longer carry the lost member's lease (10 s), so
 * they waited their own (3 s) and started a new epoch while it still worked the old one (G2, 5.6 s).
 * Views of an older epoch now lower no lease read before.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import { makeGroup, StoreLive, waitFor } from "../faults/support.js"
import { randomGroupId } from "../support/Database.js"
import { exactCover } from "../support/Recorder.js"

const short = { heartbeat: "200 millis", lease: "3 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const
const long = { heartbeat: "200 millis", lease: "10 seconds", fenceMargin: "1 second", statementTimeout: "1 second" } as const

/** A backup of a group's rows now; running the effect it returns puts them back in one transaction. */
const backupOf = (groupId: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const group = yield* sql<Record<string, unknown>>`SELECT * FROM modulo_group.groups WHERE group_id = ${groupId}`
    const members = (yield* sql<Record<string, unknown>>`SELECT * FROM modulo_group.members WHERE group_id = ${groupId}`)
      .map(({ join_seq: _seq, ...rest }) => rest)
    return sql.withTransaction(Effect.gen(function*() {
      yield* sql`DELETE FROM modulo_group.members WHERE group_id = ${groupId}`
      const g = group[0]!
      yield* sql`UPDATE modulo_group.groups SET epoch = ${g["epoch"] as string}, size = ${g["size"] as number},
                        incarnation = ${g["incarnation"] as string}, lease_ms = ${g["lease_ms"] as number} WHERE group_id = ${groupId}`
      for (const r of members) yield* sql`INSERT INTO modulo_group.members ${sql.insert(r)}`
    }))
  })

it.live("a restore that takes away the longest-lease member's row: the others move on only after its lease, never beside its work", () =>
  Effect.gen(function*() {
    const group = yield* makeGroup(randomGroupId("restore-mixed-lease"), short)
    yield* group.join(short)
    yield* group.join(short)
    yield* waitFor(() => exactCover(group.rec.working(), 2), Duration.seconds(20), "two formed")
    const restore = yield* backupOf(group.groupId)
    const a = yield* group.join({ ...long, notifications: false })
    yield* waitFor(() => exactCover(group.rec.working(), 3), Duration.seconds(20), "three formed")
    const epoch = group.rec.working()[0]!.epoch
    // a cannot reach the database any more: its calls hang, its work runs to its deadline.
    yield* a.hang
    yield* restore
    // The others re-form, without a, in an epoch past the one they worked (after a's lease, 10 s).
    yield* waitFor(
      () => exactCover(group.rec.working(), 2) && group.rec.working().every((w) => w.epoch > epoch && w.member !== a.m.memberId),
      Duration.seconds(20),
      "the others re-formed past the restore"
    )
    // Before: they started their new epoch about 3.3 s after the restore, while a worked until 9 s.
    expect(group.rec.violations).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)
