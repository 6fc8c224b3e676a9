/**
 * The slots-mode work API on real PostgreSQL: `whileOwning` work writes its slot's items through
 * `Ownership.owned` (slot = ANY) inside `Fenced.fenced` with the slot; a stale slot fails with
 * `StaleAssignment` before any round trip; the set form with `Ownership.owned` on the set.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Scope } from "effect"
import * as Fenced from "../../src/Fenced.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import * as Ownership from "../../src/Ownership.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { waitFor, waitForEffect } from "../support/Wait.js"

const fast = { heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const
const StoreLive = PgMembershipStore.layerUsingNotifier().pipe(Layer.provideMerge(Notifier.layer), Layer.provideMerge(PgLive))

it.live("whileOwning work writes its slot's items in fenced transactions; a stale slot is refused; the set form sees the set", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const groupId = randomGroupId("slots-work")
    const table = `items_${groupId.replace(/-/g, "_")}`
    yield* Effect.acquireRelease(
      Effect.zipRight(
        sql`CREATE TABLE ${sql(table)} (id bigint PRIMARY KEY, slot int, generation bigint)`,
        sql`INSERT INTO ${sql(table)} (id) SELECT i FROM generate_series(-10, 29) AS i`
      ),
      () => Effect.orDie(sql`DROP TABLE IF EXISTS ${sql(table)}`)
    )
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const m = yield* Membership.make({ groupId, slots: 4, ...fast }).pipe(Scope.extend(scope))
    let done = 0
    yield* m.whileOwning((owned) =>
      Fenced.fenced(
        sql`UPDATE ${sql(table)} SET slot = ${owned.slot}, generation = ${owned.generation}
             WHERE ${Ownership.owned(sql, "id", owned)}`,
        { slots: owned }
      ).pipe(
        Effect.provideService(Membership.Membership, m),
        Effect.tap(() => Effect.sync(() => done++)),
        Effect.zipRight(Effect.never)
      )
    ).pipe(Scope.extend(scope))
    const sets: Array<ReadonlyArray<number>> = []
    yield* m.whileOwningAll((owned) =>
      Effect.gen(function*() {
        const rows = yield* sql<{ n: string }>`SELECT count(*) AS n FROM ${sql(table)} WHERE ${Ownership.owned(sql, "id", owned)}`
        sets.push(owned.slots)
        expect(Number(rows[0]!.n)).toBe(10 * owned.slots.length)
        return yield* Effect.never
      })
    ).pipe(Scope.extend(scope))
    yield* waitFor(() => done === 4 && sets.length > 0, "10 seconds", "four slots written")
    const rows = yield* sql<{ id: string; slot: number; generation: string }>`SELECT id, slot, generation FROM ${sql(table)} ORDER BY id`
    // Every item written by its slot's work (id mod 4, non-negative for negative ids), under generation 1.
    for (const r of rows) {
      expect(r.slot).toBe(((Number(r.id) % 4) + 4) % 4)
      expect(Number(r.generation)).toBe(1)
    }
    expect(sets[sets.length - 1]).toEqual([0, 1, 2, 3])
    const owned = yield* m.owned
    expect(owned).toMatchObject({ slots: [0, 1, 2, 3], generations: [1, 1, 1, 1], count: 4 })
    // A slot at a generation this member does not work: refused locally.
    const stale = yield* Effect.flip(
      Fenced.fenced(sql`SELECT 1`, { slots: { slot: 2, generation: 0, count: 4 } }).pipe(Effect.provideService(Membership.Membership, m))
    )
    expect(stale._tag).toBe("StaleAssignment")
    expect(stale.message).toMatch(/works slot 2 at generation 1, not 0/)
    // The current one commits.
    yield* Fenced.fenced(sql`SELECT 1`, { slots: owned }).pipe(Effect.provideService(Membership.Membership, m))
    // Without slots (plain, or with the member's assignment): refused, nothing written. Its epoch, index
    // and size partition nothing in slots mode, and a release moves no epoch: a check of them let a
    // write commit beside a slot's new holder (a review of cbfaea8).
    const assignment = yield* m.awaitAssigned
    for (const options of [undefined, { assignment }]) {
      const refused = yield* Effect.flip(
        Fenced.fenced(sql`UPDATE ${sql(table)} SET generation = 99`, options).pipe(Effect.provideService(Membership.Membership, m))
      )
      expect(refused._tag).toBe("StaleAssignment")
      expect(refused.message).toMatch(/is in slots mode: a fence there checks slots, not an assignment; pass `slots`/)
    }
    expect((yield* sql<{ n: string }>`SELECT count(*) AS n FROM ${sql(table)} WHERE generation = 99`)[0]!.n).toBe("0")
    // A second member: the first gives two slots up; the set form restarts under the smaller set.
    const scope2 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope2, Exit.void))
    const m2 = yield* Membership.make({ groupId, slots: 4, ...fast }).pipe(Scope.extend(scope2))
    yield* waitForEffect(Effect.map(m2.owned, (o) => o.slots.length === 2), "10 seconds", "m2 works two slots")
    expect(sets[sets.length - 1]).toEqual([0, 1])
    expect((yield* m.owned).slots).toEqual([0, 1])
    expect((yield* m2.owned)).toMatchObject({ slots: [2, 3], generations: [2, 2], count: 4 })
  }).pipe(Effect.scoped, Effect.provide(StoreLive)))
