/**
 * A row deleted by hand after a change and before its member acknowledged it (an adversarial review
 * of migration 0015): migration 0015 holds every *change* while an index has no row, but a change
 * already made raises a barrier that only the rows' acknowledgements lower, and `barrierDown` counted
 * the unacknowledged rows that exist: the deleted row took its member out of the barrier, and the
 * others started the new epoch at their next renewal while the member (hung: its renewals stall, its
 * work goes on to its deadline) still worked the old one (1.0-1.2 s of two epochs at once). Now a
 * barrier is down only while no row is missing; the repair, after the wait, starts an epoch of its own.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import { groupRow, makeGroup, StoreLive, waitFor } from "../faults/support.js"
import { randomGroupId } from "../support/Database.js"
import { exactCover } from "../support/Recorder.js"

const config = { heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const

it.live("G2: a row deleted by hand before its member acknowledged the epoch does not lower the barrier", () =>
  Effect.gen(function*() {
    const group = yield* makeGroup(randomGroupId("missing-barrier"), config)
    const a = yield* group.join({ notifications: false })
    yield* group.join()
    yield* group.join()
    yield* waitFor(() => exactCover(group.rec.working(), 3), Duration.seconds(20), "formed")
    const sql = yield* SqlClient.SqlClient
    const before = yield* groupRow(group.groupId)
    // a hangs (its work goes on until its deadline), a fourth member joins (a change: size 4, a
    // barrier that a's acknowledgement holds), and a's row is deleted by hand.
    yield* a.hang
    yield* group.join()
    let after = yield* groupRow(group.groupId)
    while (after!.epoch === before!.epoch) {
      yield* Effect.sleep("5 millis")
      after = yield* groupRow(group.groupId)
    }
    expect(after!.size).toBe(4)
    yield* sql`DELETE FROM modulo_group.members WHERE member_id = ${a.m.memberId}`
    yield* Effect.sleep("2500 millis")
    const aEnd = group.rec.marks.filter((m) => m.member === a.m.memberId && m.kind === "end").at(-1)
    const newer = group.rec.marks.filter((m) => m.kind === "start" && m.epoch > before!.epoch)
    if (aEnd !== undefined && newer.length > 0) {
      console.log(`two epochs at once for ${aEnd.at - Math.min(...newer.map((m) => m.at))} ms`)
    }
    // Nobody starts the new epoch before a's deadline.
    expect(group.rec.violations).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 90_000)
