/**
 * A slots-mode member's row whose member id is changed by hand while its member works (per-slot G2; an
 * adversarial review). Its index kept a row, so migration 0015's wait for indices with no row did not
 * apply; the next change (a join) found the member's slots held by an id no row has and handed them
 * over at once, as the change that deletes a holder's row does, while the member worked them until its
 * own deadline: 2.1-2.4 s of two holders (6 of 6 runs). In modulo mode the same edit is harmless: the
 * renamed row must acknowledge the next epoch, so the barrier waits out its lease. Now a change that
 * finds slots held by an id no row has waits, as for a missing index, until they have been held so for
 * the group's longest lease (`Statements.selectGroupForUpdate`'s `orphans`), then hands them over.
 *
 * Here: a and b work 4 slots each (lease 3 s); a's store hangs (a keeps working until its deadline);
 * a's member id is changed by hand; c joins. No slot may run twice, and once the wait is over b and c
 * work all 8 slots.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import { waitFor } from "../faults/support.js"
import { randomGroupId } from "../support/Database.js"
import { overlaps, slotGroup, StoreLive } from "./fiberGroup.js"

it.live("per-slot G2: a working member's row given another member id by hand: its slots wait a lease, then move", () =>
  Effect.gen(function*() {
    const g = yield* slotGroup(randomGroupId("slots-rename"))
    const a = yield* g.join("a", { notifications: false })
    yield* g.join("b")
    yield* waitFor(() => g.rec.covered() === 8 && g.rec.running().size === 2, Duration.seconds(20), "formed")
    const sql = yield* SqlClient.SqlClient
    yield* a.hang
    yield* sql`UPDATE modulo_group.members SET member_id = gen_random_uuid() WHERE member_id = ${a.m.memberId}`
    yield* g.join("c")
    // a fences itself at its deadline; wait until a runs nothing any more and 2 s more.
    yield* waitFor(() => !g.rec.running().has(a.m.memberId), Duration.seconds(20), "a stopped")
    yield* Effect.sleep("1 second")
    // Then the group goes on: the renamed row's lease runs out, and b and c work every slot.
    yield* waitFor(() => g.rec.covered() === 8 && g.rec.running().size === 2 && !g.rec.running().has(a.m.memberId), Duration.seconds(30), "b and c work all 8 slots")
    const found = overlaps(g.rec.events, Date.now())
    console.log("violations", g.rec.violations, "overlaps ms", found)
    expect(g.rec.violations).toEqual([])
    expect(found).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 90_000)
