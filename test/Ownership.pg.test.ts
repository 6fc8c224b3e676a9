/**
 * The ownership fragment on real PostgreSQL: for N = 1..8, every row is owned by exactly one index,
 * for integer (negative and 64-bit included), uuid and text keys; and `ownerOf` in JavaScript agrees
 * with the database row by row.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { randomUUID } from "node:crypto"
import * as Ownership from "../src/Ownership.js"
import { PgLive, randomGroupId } from "./support/Database.js"

const texts = ["", "a", "A", "item-1", "item-2", "ünïcödé", "日本語のキー", "emoji 🎉", "with 'quote'", " spaced ", "x".repeat(500)]
  .concat(Array.from({ length: 489 }, (_, i) => `key-${i}-${(i * 7919) % 1000}`))
const integers = Array.from({ length: 1_000 }, (_, i) => BigInt(i - 200))
  .concat([2n ** 62n, -(2n ** 62n), 2n ** 63n - 1n, -(2n ** 63n), 9_007_199_254_740_993n])
const uuids = Array.from({ length: 500 }, () => randomUUID()).concat([
  "00000000-0000-0000-0000-000000000000",
  "ffffffff-ffff-ffff-ffff-ffffffffffff"
])

it.live("every row is owned by exactly one index, for N = 1..8 and integer, uuid and text keys", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const table = `own_${randomGroupId("own").replace(/-/g, "_")}`
    yield* Effect.acquireRelease(
      sql`CREATE TABLE ${sql(table)} (id bigint, u uuid, t text)`,
      () => Effect.orDie(sql`DROP TABLE IF EXISTS ${sql(table)}`)
    )
    const rows = Math.max(integers.length, uuids.length, texts.length)
    yield* sql`INSERT INTO ${sql(table)} ${
      sql.insert(Array.from({ length: rows }, (_, i) => ({
        id: integers[i] === undefined ? null : String(integers[i]),
        u: uuids[i] ?? null,
        t: texts[i] ?? null
      })))
    }`
    const cases = [
      { column: "id", keyType: "integer", keys: integers.map(String) },
      { column: "u", keyType: "uuid", keys: uuids },
      { column: "t", keyType: "text", keys: texts }
    ] as const

    for (const { column, keyType, keys } of cases) {
      for (let size = 1; size <= 8; size++) {
        // Who owns each key, by the fragment, one index at a time.
        const owners = new Map<string, Array<number>>()
        for (let index = 0; index < size; index++) {
          const mine = yield* sql<{ key: string }>`
            SELECT ${sql(column)}::text AS key FROM ${sql(table)}
             WHERE ${sql(column)} IS NOT NULL AND ${Ownership.owned(sql, column, { index, size }, keyType)}`
          for (const { key } of mine) owners.set(key, [...(owners.get(key) ?? []), index])
        }
        // Exactly one owner per key, and every key has one.
        expect(owners.size).toBe(keys.length)
        for (const key of keys) {
          const o = owners.get(key)
          expect(o, `${keyType} key ${JSON.stringify(key).slice(0, 40)} with N = ${size}`).toHaveLength(1)
          // The JavaScript twin agrees with the database.
          expect(Ownership.ownerOf(keyType === "integer" ? BigInt(key) : key, size, keyType)).toBe(o![0])
        }
        // Non-negative integer keys: the plain `id % N = k` an app would write.
        if (keyType === "integer") {
          for (const key of keys.filter((k) => BigInt(k) >= 0n)) expect(owners.get(key)![0]).toBe(Number(BigInt(key) % BigInt(size)))
        }
        // Hashed keys spread: with 500 keys, no index is empty or owns more than twice its share.
        if (keyType !== "integer") {
          const counts = Array.from({ length: size }, (_, k) => [...owners.values()].filter((o) => o[0] === k).length)
          for (const c of counts) {
            expect(c).toBeGreaterThan(0)
            expect(c).toBeLessThan((2 * keys.length) / size)
          }
        }
      }
    }
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 60_000)

it("ownerOf: uuids in any spelling map like PostgreSQL's canonical text; bad input is a bug", () => {
  const u = "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"
  for (const spelling of [u, u.toLowerCase(), `{${u}}`, u.replace(/-/g, "")]) {
    expect(Ownership.ownerOf(spelling, 7, "uuid")).toBe(Ownership.ownerOf(u.toLowerCase(), 7, "uuid"))
  }
  expect(Ownership.ownerOf(-7, 3)).toBe(2)
  expect(Ownership.ownerOf("12345678901234567890", 10)).toBe(0)
  expect(Ownership.owns({ index: 1, size: 3 }, 4)).toBe(true)
  expect(() => Ownership.ownerOf("not-a-uuid", 3, "uuid")).toThrow(RangeError)
  expect(() => Ownership.ownerOf(1.5, 3)).toThrow(RangeError)
  expect(() => Ownership.owns({ index: 3, size: 3 }, 1)).toThrow(RangeError)
  expect(() => Ownership.ownerOf(1, 0)).toThrow(RangeError)
})
