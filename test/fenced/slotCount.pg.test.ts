/**
 * Slots mode: an `OwnedSlot` (or `OwnedSlots`) names its group's slot count, and items map to slots
 * by it (`id mod count`). One built by hand with another count passed `fenced` (the slot and
 * generation held) while `Ownership.owned` picked, with that count, items of another member's slots
 * (a review, attack107, suggested the check). `fenced` now refuses slots of another count, saying so,
 * before any statement; of the group's own count it commits.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Fenced from "../../src/Fenced.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { waitForEffect } from "../support/Wait.js"

const fast = { heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "500 millis", statementTimeout: "1 second", slots: 4 } as const
const StoreLive = PgMembershipStore.layerUsingNotifier().pipe(Layer.provideMerge(Notifier.layer), Layer.provideMerge(PgLive))

it.live("fenced refuses slots of another slot count than the group's, and commits with the group's", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const groupId = randomGroupId("fence-slot-count")
    const written = `w_${groupId.replace(/-/g, "_")}`
    yield* Effect.acquireRelease(
      sql`CREATE TABLE ${sql(written)} (note text)`,
      () => Effect.orDie(sql`DROP TABLE IF EXISTS ${sql(written)}`)
    )
    const insert = (note: string) => sql`INSERT INTO ${sql(written)} VALUES (${note})`
    const m = yield* Membership.make({ groupId, ...fast })
    yield* waitForEffect(Effect.map(m.owned, (o) => o.slots.length === 4), "10 seconds", "the member holds every slot")
    const owned = yield* m.owned
    const one = { slot: owned.slots[1]!, generation: owned.generations[1]! }
    const fence = (note: string, slots: Fenced.FencedOptions["slots"]) =>
      Fenced.fenced(insert(note), { slots }).pipe(Effect.provideService(Membership.Membership, m))

    for (const [note, slots] of [
      ["one of 8", { ...one, count: 8 }],
      ["set of 2", { ...owned, count: 2 }]
    ] as const) {
      const refused = yield* Effect.flip(fence(note, slots))
      expect(refused._tag).toBe("StaleAssignment")
      expect(refused.message).toMatch(new RegExp(`the slots given are of a group of ${slots.count} slots, but group .* has 4`))
    }
    // A count that only looks like the group's is refused, saying what it is (a review read "of a
    // group of 4 slots, but group ... has 4").
    const text = yield* Effect.flip(fence("one of '4'", { ...one, count: "4" as unknown as number }))
    expect(text.message).toMatch(/the slots given are of a group of "4" \(string, not a number\) slots, but group .* has 4/)
    yield* fence("one of 4", { ...one, count: 4 })
    yield* fence("set of 4", owned)
    const notes = yield* sql<{ note: string }>`SELECT note FROM ${sql(written)} ORDER BY note`
    expect(notes.map((r) => r.note)).toEqual(["one of 4", "set of 4"])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)
