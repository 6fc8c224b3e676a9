/**
 * Slots mode's key mapping on real PostgreSQL: for negative and extreme integer ids, text (any code
 * point, padded `char(n)`) and uuids in several spellings, the slot the database computes
 * (`slotExpression`) is the one `slotOf` computes, for slot counts from 1 to 16,384; and
 * `ownedSlots` selects exactly the rows whose slot is in the set (the empty set selects none).
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import type * as Ownership from "../../src/Ownership.js"
import { maxSlots } from "../../src/internal/slots/assignment.js"
import { ownedSlots, slotExpression, slotOf } from "../../src/internal/slots/keys.js"
import { sharedRuntime } from "../support/Database.js"

interface Column {
  readonly sqlType: string
  readonly keyType: Ownership.KeyType
  readonly key: fc.Arbitrary<string>
}

const bigintKey = fc.oneof(
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
  fc.bigInt({ min: -20_000n, max: -1n }),
  fc.constantFrom(-(2n ** 63n), 2n ** 63n - 1n, -1n, 0n, -16_384n, -16_385n)
).map(String)

const textKey = fc.tuple(
  fc.oneof(fc.string({ unit: "binary", maxLength: 20 }), fc.constantFrom("", "a", "ünïcödé", "日本語", "🎉")),
  fc.integer({ min: 0, max: 2 })
).map(([s, pad]) => Array.from(s.replace(/\u0000/g, "")).slice(0, 10).join("") + " ".repeat(pad))

const uuidKey = fc.tuple(fc.uuid(), fc.integer({ min: 0, max: 3 })).map(([u, style]) =>
  [u, u.toUpperCase(), `{${u}}`, u.replace(/-/g, "")][style]!
)

const columns: Record<string, Column> = {
  bigint: { sqlType: "bigint", keyType: "integer", key: bigintKey },
  integer: { sqlType: "integer", keyType: "integer", key: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }).map(String) },
  text: { sqlType: "text", keyType: "text", key: textKey },
  "char(12)": { sqlType: "char(12)", keyType: "text", key: textKey },
  uuid: { sqlType: "uuid", keyType: "uuid", key: uuidKey },
  "uuid as text": { sqlType: "text", keyType: "uuid", key: uuidKey }
}

const slotCounts = fc.oneof(
  fc.integer({ min: 1, max: 16 }),
  fc.constantFrom(1, 64, 256, 1024, maxSlots - 1, maxSlots),
  fc.integer({ min: 1, max: maxSlots })
)

const cases = fc.constantFrom(...Object.keys(columns)).chain((name) =>
  fc.record({
    name: fc.constant(name),
    slots: slotCounts,
    keys: fc.array(columns[name]!.key, { minLength: 1, maxLength: 30 }),
    pick: fc.array(fc.boolean(), { minLength: 30, maxLength: 30 })
  })
)

describe("slots on PostgreSQL", () => {
  const db = sharedRuntime()
  it.effect.prop(
    "SQL and slotOf name the same slot; ownedSlots selects exactly the rows of the chosen slots",
    [cases],
    ([{ keys, name, pick, slots }]) =>
      Effect.gen(function*() {
        const column = columns[name]!
        const sql = yield* SqlClient.SqlClient
        yield* sql.withTransaction(Effect.gen(function*() {
          yield* sql`CREATE TEMP TABLE slot_keys (id int PRIMARY KEY, k ${sql.literal(column.sqlType)}) ON COMMIT DROP`
          yield* sql`INSERT INTO slot_keys ${sql.insert(keys.map((k, id) => ({ id, k })))}`
          const rows = yield* sql<{ id: number; slot: string }>`
            SELECT id, ${slotExpression(sql, "k", slots, column.keyType)}::text AS slot FROM slot_keys ORDER BY id`
          expect(rows).toHaveLength(keys.length)
          const slotById = new Map<number, number>()
          for (const row of rows) {
            const expected = slotOf(keys[row.id]!, slots, column.keyType)
            expect(Number(row.slot), `${name} key ${JSON.stringify(keys[row.id])}, S = ${slots}`).toBe(expected)
            slotById.set(row.id, expected)
          }
          // A set of slots: some of those seen, plus neighbours (which usually hold none of the keys).
          const seen = [...new Set(slotById.values())]
          const chosen = seen.filter((_, i) => pick[i % pick.length]).concat(seen.map((s) => (s + 1) % slots))
          const selected = yield* sql<{ id: number }>`
            SELECT id FROM slot_keys WHERE ${ownedSlots(sql, "k", slots, chosen, column.keyType)} ORDER BY id`
          const expected = [...slotById].filter(([, s]) => chosen.includes(s)).map(([id]) => id).sort((a, b) => a - b)
          expect(selected.map((r) => r.id)).toEqual(expected)
          const none = yield* sql<{ id: number }>`SELECT id FROM slot_keys WHERE ${ownedSlots(sql, "k", slots, [], column.keyType)}`
          expect(none).toEqual([])
        }))
      }).pipe(Effect.provide(db)),
    { timeout: 120_000, fastCheck: { numRuns: 150 } }
  )
})
