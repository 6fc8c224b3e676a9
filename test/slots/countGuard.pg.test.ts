/**
 * A group's mode and slot count are fixed when it is created (attack104: `groups.slots` edited by hand
 * on a live group, from 16 to 8: the members of 16 kept working while a joiner of 8 was admitted, and
 * items of slot 11 of 16 and slot 3 of 8 were worked by two members at once, both committing fenced
 * writes; from 16 to 32 with slot rows added by hand, the same). Three layers, each tested here:
 * migration 0019 refuses the edit (also through an epoch set to 0 first: attack105); a change refuses
 * slot rows that are not exactly 0..S-1, and slots held by nobody in a group with members (attack106:
 * the guard passed by deleting and putting back the member rows around the edit); past the guard (its trigger dropped, in a database of this
 * file's own), a renewal of a group of the other mode takes no view (attack105: a live modulo-mode
 * group set to slots mode, a slots-mode joiner admitted beside its members), and a view of another
 * count is refused by the member (test/slots/holdings.test.ts).
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Either, Layer } from "effect"
import { randomUUID } from "node:crypto"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { ownDatabase, PgLive, randomGroupId } from "../support/Database.js"

const StoreLive = PgMembershipStore.layer().pipe(Layer.provideMerge(PgLive))
const info = (name: string) => ({ memberId: randomUUID(), name, host: "test", pid: 1 })

/** The SQLSTATE of a refused statement, or "ok". */
const attempt = (statement: Effect.Effect<unknown, unknown>) =>
  Effect.map(Effect.either(statement), (r) =>
    Either.isRight(r) ? "ok" : String((r.left as { cause?: { code?: string } }).cause?.code))

it.live("migration 0019: a group's mode and slot count cannot be changed by hand (23514); the group is as it was", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const store = yield* MembershipStore
    const slotsGroup = randomGroupId("count-guard")
    const moduloGroup = randomGroupId("count-guard-modulo")
    yield* store.join(slotsGroup, info("a"), 60_000, {}, { slots: 16 })
    yield* store.join(moduloGroup, info("m"), 60_000)
    expect(yield* attempt(sql`UPDATE modulo_group.groups SET slots = 8 WHERE group_id = ${slotsGroup}`)).toBe("23514")
    expect(yield* attempt(sql`UPDATE modulo_group.groups SET slots = 32 WHERE group_id = ${slotsGroup}`)).toBe("23514")
    expect(yield* attempt(sql`UPDATE modulo_group.groups SET slots = NULL WHERE group_id = ${slotsGroup}`)).toBe("23514")
    expect(yield* attempt(sql`UPDATE modulo_group.groups SET slots = 4 WHERE group_id = ${moduloGroup}`)).toBe("23514")
    // Nor through the epoch the first join's update is allowed at (attack105: the epoch set to 0, the
    // count, the epoch back, in one transaction, with the app's grants): the group has a member row.
    const [{ epoch }] = yield* sql<{ epoch: string }>`SELECT epoch FROM modulo_group.groups WHERE group_id = ${moduloGroup}`
    expect(
      yield* attempt(sql.withTransaction(Effect.gen(function*() {
        yield* sql`UPDATE modulo_group.groups SET epoch = 0 WHERE group_id = ${moduloGroup}`
        yield* sql`UPDATE modulo_group.groups SET slots = 4 WHERE group_id = ${moduloGroup}`
        yield* sql`UPDATE modulo_group.groups SET epoch = ${epoch}::int8 WHERE group_id = ${moduloGroup}`
      })))
    ).toBe("23514")
    const error = yield* Effect.flip(sql`UPDATE modulo_group.groups SET slots = 8 WHERE group_id = ${slotsGroup}`)
    expect(String((error.cause as Error).message)).toContain(`the mode of group '${slotsGroup}' is fixed when it is created (slots mode with 16 slots, not slots mode with 8 slots)`)
    // Nothing changed; updates of the group row that leave `slots` alone still go through.
    const rows = yield* sql<{ group_id: string; slots: number | null }>`
      SELECT group_id, slots FROM modulo_group.groups WHERE group_id IN (${slotsGroup}, ${moduloGroup}) ORDER BY slots NULLS FIRST`
    expect(rows.map((r) => r.slots)).toEqual([null, 16])
    expect(yield* attempt(sql`UPDATE modulo_group.groups SET slots = 16 WHERE group_id = ${slotsGroup}`)).toBe("ok")
    expect(yield* attempt(sql`UPDATE modulo_group.groups SET epoch = epoch WHERE group_id = ${slotsGroup}`)).toBe("ok")
    expect((yield* store.slotRows(slotsGroup)).length).toBe(16)
    // A second member of the same count joins as before.
    yield* store.join(slotsGroup, info("b"), 60_000, {}, { slots: 16 })
    // attack106: the member rows deleted and put back around the edit, the epoch set to 0 first, and
    // slot rows inserted unheld. The guard sees a group with no member row and lets it through; the
    // slots-mode joiner's change finds slots held by nobody in a group with members, and is refused.
    yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`CREATE TEMP TABLE saved ON COMMIT DROP AS SELECT * FROM modulo_group.members WHERE group_id = ${moduloGroup}`
      yield* sql`DELETE FROM modulo_group.members WHERE group_id = ${moduloGroup}`
      yield* sql`UPDATE modulo_group.groups SET epoch = 0 WHERE group_id = ${moduloGroup}`
      yield* sql`UPDATE modulo_group.groups SET slots = 4 WHERE group_id = ${moduloGroup}`
      yield* sql`UPDATE modulo_group.groups SET epoch = ${epoch}::int8 WHERE group_id = ${moduloGroup}`
      yield* sql`INSERT INTO modulo_group.members OVERRIDING SYSTEM VALUE SELECT * FROM saved`
      yield* sql`INSERT INTO modulo_group.slots (group_id, slot, owner, holder, generation, changed_at)
                 SELECT ${moduloGroup}, s, NULL, NULL, 0, now() FROM generate_series(0, 3) AS s`
    }))
    const refused = yield* Effect.flip(store.join(moduloGroup, info("s"), 60_000, {}, { slots: 4 }))
    expect(refused.reason).toContain(`group "${moduloGroup}" has members, but its slots 0..3 are held by nobody (inserted or edited by hand?)`)
    const [after] = yield* sql<{ epoch: string }>`SELECT epoch FROM modulo_group.groups WHERE group_id = ${moduloGroup}`
    expect(after!.epoch).toBe(epoch)
    yield* sql`DELETE FROM modulo_group.groups WHERE group_id IN (${slotsGroup}, ${moduloGroup})`
  }).pipe(Effect.scoped, Effect.provide(StoreLive)))

it.live("a change refuses slot rows added or deleted by hand, saying which, and moves nothing until they are 0..S-1 again", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const store = yield* MembershipStore
    const groupId = randomGroupId("count-rows")
    const [a, b, c] = [info("a"), info("b"), info("c")]
    yield* store.join(groupId, a, 60_000, {}, { slots: 16 })
    const joinedB = yield* store.join(groupId, b, 60_000, {}, { slots: 16 })
    const before = yield* store.slotRows(groupId)
    // Rows 16..31 added by hand (a grown count, past the guard): handed out, they would stand for no
    // items of these members, and for items of slots 0..15 to a member that maps by 32.
    yield* sql`INSERT INTO modulo_group.slots (group_id, slot, owner, holder, generation, changed_at)
               SELECT ${groupId}, s, NULL, NULL, 0, now() FROM generate_series(16, 31) AS s`
    const refused = yield* Effect.flip(store.join(groupId, c, 60_000, {}, { slots: 16 }))
    expect(refused.reason).toContain(`group "${groupId}" has 16 slots, but its slot rows are 0..31 (added or deleted by hand?)`)
    // Nothing moved: the same epoch, the same holders and generations, no row for c.
    const [g] = yield* sql<{ epoch: string }>`SELECT epoch FROM modulo_group.groups WHERE group_id = ${groupId}`
    expect(Number(g!.epoch)).toBe(joinedB.epoch)
    expect((yield* store.slotRows(groupId)).slice(0, 16)).toEqual(before)
    expect((yield* sql`SELECT 1 FROM modulo_group.members WHERE member_id = ${c.memberId}::uuid`).length).toBe(0)
    // A row deleted (and the added ones gone): refused too, naming the gap.
    yield* sql`DELETE FROM modulo_group.slots WHERE group_id = ${groupId} AND slot >= 16`
    const row5 = yield* sql`DELETE FROM modulo_group.slots WHERE group_id = ${groupId} AND slot = 5 RETURNING *`
    expect((yield* Effect.flip(store.join(groupId, c, 60_000, {}, { slots: 16 }))).reason).toContain("its slot rows are 0..4, 6..15")
    // Repaired: the join goes through.
    yield* sql`INSERT INTO modulo_group.slots ${sql.insert(row5[0]!)}`
    const joinedC = yield* store.join(groupId, c, 60_000, {}, { slots: 16 })
    expect(joinedC.epoch).toBe(joinedB.epoch + 1)
    yield* sql`DELETE FROM modulo_group.groups WHERE group_id = ${groupId}`
  }).pipe(Effect.scoped, Effect.provide(StoreLive)))

it.live("past the guard (its trigger dropped), a member's renewal of a group of the other mode takes no view; of another count, a view its member refuses", () =>
  Effect.gen(function*() {
    const db = yield* ownDatabase("count-bypass", { maxConnections: 4 })
    yield* Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`DROP TRIGGER IF EXISTS slot_count_guard ON modulo_group.groups`
      const store = yield* MembershipStore
      const slotsGroup = randomGroupId("count-bypass")
      const moduloGroup = randomGroupId("mode-bypass")
      const [a, m] = [info("a"), info("m")]
      const joined = yield* store.join(slotsGroup, a, 60_000, {}, { slots: 8 })
      const renewed = yield* store.heartbeat(slotsGroup, a.memberId, joined.epoch, 60_000, { slots: true })
      expect(renewed._tag === "Some" && renewed.value.slots?.count).toBe(8)
      // A count changed by hand reaches the member as a view of that count, which it refuses.
      yield* sql`UPDATE modulo_group.groups SET slots = 4 WHERE group_id = ${slotsGroup}`
      const other = yield* store.heartbeat(slotsGroup, a.memberId, joined.epoch, 60_000, { slots: true })
      expect(other._tag === "Some" && other.value.slots?.count).toBe(4)
      // Modulo mode under a slots-mode member: no view (its work stops at once, as for a row gone).
      yield* sql`UPDATE modulo_group.groups SET slots = NULL WHERE group_id = ${slotsGroup}`
      expect((yield* store.heartbeat(slotsGroup, a.memberId, joined.epoch, 60_000, { slots: true }))._tag).toBe("None")
      // Slots mode under a modulo-mode member (attack105: a slots-mode joiner was then admitted
      // beside it, and both worked the same items): no view either.
      const joinedM = yield* store.join(moduloGroup, m, 60_000)
      expect((yield* store.heartbeat(moduloGroup, m.memberId, joinedM.epoch, 60_000))._tag).toBe("Some")
      yield* sql`UPDATE modulo_group.groups SET slots = 16 WHERE group_id = ${moduloGroup}`
      expect((yield* store.heartbeat(moduloGroup, m.memberId, joinedM.epoch, 60_000))._tag).toBe("None")
      // Both rows are still there, renewed: the member stops, keeps nothing, and rejoins (refused).
      const refused = yield* Effect.flip(store.join(moduloGroup, info("m2"), 60_000))
      expect(refused.reason).toContain("is in slots mode with 16 slots, but this member asked for modulo mode")
    }).pipe(Effect.provide(PgMembershipStore.layer().pipe(Layer.provideMerge(db.layer))))
  }).pipe(Effect.scoped, Effect.provide(PgLive)))
