/**
 * The commit-time check's rows (migration 0018) against real PostgreSQL, written by hand as a fence
 * writes them: a slots-mode row names its slots and their generations as arrays, and its check at
 * COMMIT fails on the first slot that moved, is missing or has another holder; a row of the older
 * form (one slot) is checked as before; each check deletes its own row, so no row outlives its
 * transaction, however many one transaction queued.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import { PgLive } from "../support/Database.js"
import { slotsGroup } from "./support.js"

/** How `transaction` ended: "committed", or the database's message of the error it ended with. */
const outcome = <A, E, R>(transaction: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.exit(transaction), (exit) => {
    if (Exit.isSuccess(exit)) return "committed"
    const error = Cause.squash(exit.cause) as { cause?: { message?: string } }
    return error.cause?.message ?? String(error)
  })

/** Queues one slots-mode check for `memberId` of `groupId` in a transaction, and commits it. */
const commitWith = (groupId: string, memberId: string, slots: string, generations: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    return yield* outcome(sql.withTransaction(
      sql`INSERT INTO modulo_group.fence_checks (member_id, group_id, slots, generations)
          VALUES (${memberId}::uuid, ${groupId}, ${slots}::int[], ${generations}::int8[])`
    ))
  })

it.live("a slots-mode row is checked slot by slot at COMMIT: a moved, missing or taken slot fails it", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const g = yield* slotsGroup(16, "commit-check-rows")
    expect(yield* commitWith(g.groupId, g.memberId, "{0,1,2,15}", "{1,1,1,1}")).toBe("committed")
    // Slot 2 moved on to generation 2: a row naming generation 1 fails, on slot 2.
    yield* sql`UPDATE modulo_group.slots SET generation = 2 WHERE group_id = ${g.groupId} AND slot = 2`
    expect(yield* commitWith(g.groupId, g.memberId, "{0,1,2,15}", "{1,1,1,1}")).toMatch(
      /slot 2 is at generation 2 at COMMIT, not 1 of this member/
    )
    expect(yield* commitWith(g.groupId, g.memberId, "{0,1,2,15}", "{1,1,2,1}")).toBe("committed")
    // A slot the group does not have.
    expect(yield* commitWith(g.groupId, g.memberId, "{0,16}", "{1,1}")).toMatch(/the group has no slot 16 at COMMIT/)
    // Fewer generations than slots: the slot without one fails.
    expect(yield* commitWith(g.groupId, g.memberId, "{0,1}", "{1}")).toMatch(/slot 1 is at generation 1 at COMMIT, not  of this member/)
    // Another holder (a hand-over bumps the generation: a guard refuses it otherwise).
    yield* sql`UPDATE modulo_group.slots SET holder = gen_random_uuid(), generation = generation + 1 WHERE group_id = ${g.groupId} AND slot = 15`
    expect(yield* commitWith(g.groupId, g.memberId, "{0,15}", "{1,1}")).toMatch(/slot 15 is at generation 2 at COMMIT with another holder, not 1/)
    expect(yield* commitWith(g.groupId, g.memberId, "{0,15}", "{1,2}")).toMatch(/slot 15 is at generation 2 at COMMIT with another holder, not 2/)
    // The lease: checked for every row.
    yield* sql`UPDATE modulo_group.members SET lease_expires_at = clock_timestamp() - interval '1 second' WHERE member_id = ${g.memberId}`
    expect(yield* commitWith(g.groupId, g.memberId, "{0}", "{1}")).toMatch(/lease expired \d+ ms before COMMIT/)
    const [left] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM modulo_group.fence_checks WHERE group_id = ${g.groupId}`
    expect(left!.n).toBe(0)
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 30_000)

it.live("a row of the older form (one slot) is checked as before; thousands of rows in one transaction leave none behind", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const g = yield* slotsGroup(4, "commit-check-rows-old")
    const old = (generation: number) =>
      outcome(sql.withTransaction(
        sql`INSERT INTO modulo_group.fence_checks (member_id, group_id, slot, generation)
            VALUES (${g.memberId}::uuid, ${g.groupId}, 3, ${generation})`
      ))
    expect(yield* old(1)).toBe("committed")
    expect(yield* old(5)).toMatch(/slot 3 is at generation 1 at COMMIT, not 5 of this member/)
    // 5,000 rows in one transaction (a loop of fenced blocks): each check deletes its own row.
    yield* sql.withTransaction(
      sql`INSERT INTO modulo_group.fence_checks (member_id, group_id, slots, generations)
          SELECT ${g.memberId}::uuid, ${g.groupId}, '{0,1,2,3}'::int[], '{1,1,1,1}'::int8[] FROM generate_series(1, 5000)`
    )
    const [left] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM modulo_group.fence_checks WHERE group_id = ${g.groupId}`
    expect(left!.n).toBe(0)
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 60_000)
