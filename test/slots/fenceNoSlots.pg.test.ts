/**
 * G6, slots mode (an adversarial review): a fence with an empty list of slots queued no commit-time
 * check at all (`fenceSlotMember` and `fenceEnd` insert one fence_checks row per slot: none), so the
 * lease was not checked at COMMIT, and a client that stalled between the fence's last statement and
 * COMMIT committed ~340 ms after the member's lease ended. Reachable through `fenced(effect, { slots:
 * yield* membership.owned })` with nothing owned (`owned` is empty when the member works no slot, or
 * its lease deadline has passed). Now a fence over no slots is refused (`StaleAssignment`), nothing
 * sent.
 *
 * Interleaving: member a joins a slots group; its lease set to end 400 ms from now; fencedWith(slots:
 * []) with the client stalling 700 ms before COMMIT. Control: the same with one held slot fails at
 * COMMIT.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { randomUUID } from "node:crypto"
import * as Fenced from "../../src/Fenced.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { stallingBeforeCommit } from "../fenced/support.js"

const StoreLive = PgMembershipStore.layerUsingNotifier().pipe(Layer.provideMerge(Notifier.layer), Layer.provideMerge(PgLive))

it.live("G6 slots: a fence with no slots does not commit after the member's lease ended (client stall before COMMIT)", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const store = yield* MembershipStore
    const groupId = randomGroupId("fence-no-slots")
    const table = `slots_${groupId.replace(/-/g, "_")}`
    yield* Effect.acquireRelease(
      sql`CREATE TABLE ${sql(table)} (note text NOT NULL)`,
      () => Effect.orDie(Effect.all([sql`DROP TABLE IF EXISTS ${sql(table)}`, sql`DELETE FROM modulo_group.groups WHERE group_id = ${groupId}`]))
    )
    const insert = (note: string) => sql`INSERT INTO ${sql(table)} (note) VALUES (${note})`
    const notes = Effect.map(sql<{ note: string }>`SELECT note FROM ${sql(table)} ORDER BY note`, (rows) => rows.map((r) => r.note))
    const a = { memberId: randomUUID(), name: "a", host: "test-host", pid: 4242 }
    yield* store.join(groupId, a, 60_000, {}, { slots: 4 })
    const target = (slots: ReadonlyArray<{ slot: number; generation: number }>): Fenced.FenceTarget => ({
      groupId, memberId: a.memberId, epoch: -1, index: -1, size: 0, slots
    })
    const setLease = (ms: number) =>
      sql`UPDATE modulo_group.members SET lease_expires_at = clock_timestamp() + ${`${ms} milliseconds`}::interval
           WHERE member_id = ${a.memberId}`
    const stalled = (slots: ReadonlyArray<{ slot: number; generation: number }>, note: string) =>
      Effect.either(Fenced.fencedWith(target(slots), insert(note)).pipe(
        Effect.provideService(SqlClient.SqlClient, stallingBeforeCommit(sql, "700 millis"))
      ))

    // Control: one held slot, the same stall: the commit-time check refuses.
    yield* setLease(400)
    const control = yield* stalled([{ slot: 0, generation: 1 }], "one slot")
    // No slots.
    yield* setLease(400)
    const noSlots = yield* stalled([], "no slots")
    expect(control._tag).toBe("Left")
    // G3/G6: nothing commits once the lease has ended before COMMIT.
    expect(yield* notes).toEqual([])
    expect(noSlots._tag === "Left" && noSlots.left._tag).toBe("StaleAssignment")
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)
