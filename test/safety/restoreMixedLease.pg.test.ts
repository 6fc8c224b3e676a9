/**
 * A restore that takes away the row of the member with the longest lease, while that member cannot
 * reach the database (found by a review, attack94). The others' views are then of an older epoch and
 * say `expired`. A form of the library that reaped from such views after a lease read that lease from
 * the views, which no longer carried the lost member's (10 s): the others waited their own (3 s) and
 * started a new epoch while it still worked the old one (G2, 5.6 s). Such views now ask for no reap:
 * the group moves on at the next join.
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

it.live("a restore that takes away the longest-lease member's row: nobody moves on beside its work; a join moves the group on once it stopped", () =>
  Effect.gen(function*() {
    const group = yield* makeGroup(randomGroupId("restore-mixed-lease"), short)
    yield* group.join(short)
    yield* group.join(short)
    yield* waitFor(() => exactCover(group.rec.working(), 2), Duration.seconds(20), "two formed")
    const restore = yield* backupOf(group.groupId)
    const a = yield* group.join({ ...long, notifications: false })
    yield* waitFor(() => exactCover(group.rec.working(), 3), Duration.seconds(20), "three formed")
    const starts = group.rec.marks.filter((m) => m.kind === "start").length
    // a cannot reach the database any more: its calls hang, its work runs to its deadline (within 9 s).
    yield* a.hang
    yield* restore
    yield* waitFor(() => !group.rec.working().some((w) => w.member === a.m.memberId), Duration.seconds(20), "a fenced")
    // Before (the reap after a lease of the others' own 3 s): they started a new epoch 3.3 s after
    // the restore, while a worked until 9 s.
    expect(group.rec.marks.filter((m) => m.kind === "start").length).toBe(starts)
    yield* group.join(short)
    yield* waitFor(
      () => exactCover(group.rec.working(), 3) && !group.rec.working().some((w) => w.member === a.m.memberId),
      Duration.seconds(20),
      "re-formed with a newcomer"
    )
    expect(group.rec.violations).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)
