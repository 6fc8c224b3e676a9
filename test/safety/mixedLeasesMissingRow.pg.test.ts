/**
 * A member row deleted by hand, in a group whose members run with different leases. The store repairs
 * a group whose rows no longer add up to its size only after the row has been missing for a lease, so
 * that its member, if alive, has stopped (docs/reliability.md, "A live member's row deleted by hand").
 * An adversarial review: that lease was the observing member's own. Beside a member of lease 20 s
 * whose renewals hang, members of lease 2 s repaired, and started a new epoch, 2 s after its row was
 * deleted while it worked on until its own deadline (~19 s): two epochs at once (G2). Now the wait is
 * at least the longest lease of the group's rows as the last renewal that found them all read them.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import { groupRow, makeGroup, StoreLive, waitFor } from "../faults/support.js"
import { randomGroupId } from "../support/Database.js"
import { exactCover } from "../support/Recorder.js"

const short = { heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const
const long = { heartbeat: "200 millis", lease: "8 seconds", fenceMargin: "1 second", statementTimeout: "1 second" } as const

it.live("G2: a long-lease member's row deleted while its renewals hang: short-lease members re-form only after its lease", () =>
  Effect.gen(function*() {
    const group = yield* makeGroup(randomGroupId("mixed-missing"), short)
    // a does not hear notifications (a hung process would not either).
    const a = yield* group.join({ ...long, notifications: false })
    yield* group.join(short)
    yield* group.join(short)
    yield* waitFor(() => exactCover(group.rec.working(), 3), Duration.seconds(20), "formed")
    const sql = yield* SqlClient.SqlClient
    const before = yield* groupRow(group.groupId)
    // a hangs (its work goes on until its own deadline, ~7 s away), and its row is deleted by hand.
    yield* a.hang
    yield* sql`DELETE FROM modulo_group.members WHERE member_id = ${a.m.memberId}`
    yield* waitFor(() => exactCover(group.rec.working(), 2), Duration.seconds(30), "re-formed without it")
    expect((yield* groupRow(group.groupId))!.epoch).toBeGreaterThan(before!.epoch)
    // Before: re-formed ~2 s after the delete, beside a's work (G2).
    expect(group.rec.violations).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 90_000)
