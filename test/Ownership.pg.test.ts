/**
 * The ownership fragment on real PostgreSQL: for N = 1..8, every row is owned by exactly one index,
 * for integer (negative and 64-bit included), uuid and text keys; and `ownerOf` in JavaScript agrees
 * with the database row by row. What ownership does not accept is refused: by `InvalidOwnership`
 * before any query, or by PostgreSQL for column types and values it cannot map.
 * The property test over every column type and N up to 2^53 - 1 is in `test/ownership/`.
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

it("ownerOf: uuids in any spelling PostgreSQL accepts map like its canonical text", () => {
  const u = "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"
  const canonical = Ownership.ownerOf(u.toLowerCase(), 7, "uuid")
  for (const spelling of [u, u.toLowerCase(), `{${u}}`, u.replace(/-/g, ""), "a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11", `${u}  `]) {
    expect(Ownership.ownerOf(spelling, 7, "uuid")).toBe(canonical)
  }
  expect(Ownership.ownerOf(-7, 3)).toBe(2)
  expect(Ownership.ownerOf("12345678901234567890", 10)).toBe(0)
  expect(Ownership.ownerOf("10.00", 3)).toBe(1)
  expect(Ownership.ownerOf("-10.0", 3)).toBe(2)
  expect(Ownership.ownerOf(2n ** 63n - 1n, 2 ** 31)).toBe(2 ** 31 - 1)
  expect(Ownership.ownerOf("ab   ", 1000, "text")).toBe(Ownership.ownerOf("ab", 1000, "text"))
  expect(Ownership.owns({ index: 1, size: 3 }, 4)).toBe(true)
  expect(Ownership.owns({ index: 1, size: 3, epoch: 9, isLeader: false } as Ownership.Slice, 4)).toBe(true)
})

const refused = (f: () => unknown, argument: Ownership.InvalidOwnership["argument"]) => {
  let error: unknown
  try {
    f()
  } catch (e) {
    error = e
  }
  expect(error, "expected an InvalidOwnership error").toBeInstanceOf(Ownership.InvalidOwnership)
  expect((error as Ownership.InvalidOwnership)._tag).toBe("InvalidOwnership")
  expect((error as Ownership.InvalidOwnership).argument).toBe(argument)
  expect((error as Ownership.InvalidOwnership).message).toMatch(/^modulo-group Ownership: invalid /)
}

it("refused before any query, with InvalidOwnership: sizes, indexes, key types and keys out of range", () => {
  // Sizes: [1, 2^53 - 1].
  for (const size of [0, -1, 1.5, Number.NaN, Infinity, 2 ** 53, Ownership.maxSize + 2]) {
    refused(() => Ownership.ownerOf(1, size), "size")
  }
  expect(Ownership.ownerOf(Ownership.maxSize, Ownership.maxSize)).toBe(0)
  // Indexes: [0, size).
  for (const index of [-1, 3, 1.5, Number.NaN]) refused(() => Ownership.owns({ index, size: 3 }, 1), "index")
  // Key types.
  refused(() => Ownership.ownerOf(1, 3, "numeric" as Ownership.KeyType), "keyType")
  // Keys not of their type.
  for (const key of [1.5, 2 ** 53, Number.NaN, "2.50", "1e3", "NaN", "Infinity", " 1", "", "0x10", "1_000"]) {
    refused(() => Ownership.ownerOf(key, 3), "key")
  }
  for (const key of [1, 1n, "a\u0000b", "\ud800", "x\udc00"]) refused(() => Ownership.ownerOf(key, 3, "text"), "key")
  for (const key of ["not-a-uuid", "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1", "a-0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", 1n]) {
    refused(() => Ownership.ownerOf(key, 3, "uuid"), "key")
  }
})

it.live("refused before any query by owned, and by PostgreSQL for column types and values it does not accept", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    refused(() => Ownership.owned(sql, "id", { index: 0, size: 0 }), "size")
    refused(() => Ownership.owned(sql, "id", { index: 0, size: 2 ** 53 }), "size")
    refused(() => Ownership.owned(sql, "id", { index: 2, size: 2 }), "index")
    refused(() => Ownership.owned(sql, "id", { index: 0, size: 2 }, "bytea" as Ownership.KeyType), "keyType")
    refused(() => Ownership.ownerExpression(sql, "id", 1.5), "size")

    const failure = (value: string, type: string, keyType: Ownership.KeyType) =>
      sql`SELECT count(*) FROM (VALUES (${value}::${sql.literal(type)})) AS v(k)
           WHERE ${Ownership.owned(sql, "k", { index: 0, size: 3 }, keyType)}`.pipe(
        Effect.flip,
        Effect.map((e) => String((e.cause as { message?: unknown } | undefined)?.message ?? e.message))
      )
    // A numeric key that is not a whole number: the query fails, naming the key.
    for (const value of ["2.50", "NaN", "Infinity", "-0.5"]) {
      expect(yield* failure(value, "numeric", "integer")).toMatch(/modulo-group Ownership: key is not an integer/)
    }
    // Not a uuid under "uuid".
    expect(yield* failure("not-a-uuid", "text", "uuid")).toMatch(/invalid input syntax for type uuid/)
    // Column types of another kind: refused when the statement is planned.
    for (const [type, keyType] of [["real", "integer"], ["double precision", "integer"], ["text", "integer"], ["integer", "text"], ["uuid", "text"], ["bytea", "text"]] as const) {
      expect(yield* failure(type === "text" ? "5" : type === "uuid" ? "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" : "5", type, keyType))
        .toMatch(/does not exist/)
    }
    // Integral numerics of any magnitude and every integer type, with N past integer's range.
    const [row] = yield* sql<{ s: string; i: string; b: string; n: string; m: string }>`
      SELECT ${Ownership.ownerExpression(sql, sql`(-32768)::smallint`, 2 ** 31 + 1)}::text AS s,
             ${Ownership.ownerExpression(sql, sql`2147483647::integer`, 2 ** 32)}::text AS i,
             ${Ownership.ownerExpression(sql, sql`(-9223372036854775808)::bigint`, Ownership.maxSize)}::text AS b,
             ${Ownership.ownerExpression(sql, sql`'10.00'::numeric`, 3)}::text AS n,
             ${Ownership.ownerExpression(sql, sql`'-123456789012345678901234567890'::numeric`, Ownership.maxSize)}::text AS m`
    expect(row).toEqual({
      s: String(Ownership.ownerOf(-32768, 2 ** 31 + 1)),
      i: String(Ownership.ownerOf(2147483647, 2 ** 32)),
      b: String(Ownership.ownerOf(-(2n ** 63n), Ownership.maxSize)),
      n: "1",
      m: String(Ownership.ownerOf("-123456789012345678901234567890", Ownership.maxSize))
    })
  }).pipe(Effect.provide(PgLive)))
