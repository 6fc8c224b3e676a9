/**
 * SQL and JavaScript name the same single owner: a property test on real PostgreSQL over every column
 * type `Ownership` accepts × generated keys × group sizes from 1 to 2^53 - 1 (including sizes around
 * 2^15, 2^31 and 2^32, where smallint and integer arithmetic used to overflow).
 *
 * Each run creates a temporary table with one key column of the chosen type, inserts the keys, and
 * checks, row by row, that the owner index computed by the database (`Ownership.ownerExpression`) is
 * an integer in [0, N), that `Ownership.owned` selects exactly the rows of each index tried (all of
 * them when N is small), and that `Ownership.ownerOf` agrees for the key as generated, for the value
 * read back from the database (a padded `char(n)`, a `numeric` such as `"10.00"`, a canonical uuid)
 * and for the other spellings of the same key.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, FastCheck as fc } from "effect"
import * as Ownership from "../../src/Ownership.js"
import { sharedRuntime } from "../support/Database.js"

type Key = number | bigint | string

/** One key: the value inserted (as text) and the JavaScript values naming the same key. */
interface Sample {
  readonly insert: string
  readonly spellings: ReadonlyArray<Key>
}

interface Column {
  readonly name: string
  readonly sqlType: string
  readonly keyType: Ownership.KeyType
  readonly key: fc.Arbitrary<Sample>
}

const integerSample = (v: bigint): Sample => ({
  insert: String(v),
  spellings: [v, String(v), ...(Number.isSafeInteger(Number(v)) && BigInt(Number(v)) === v ? [Number(v)] : [])]
})

const boundedBigInt = (min: bigint, max: bigint): fc.Arbitrary<bigint> =>
  fc.oneof(
    fc.bigInt({ min, max }),
    fc.constantFrom(min, max, 0n, -1n, 1n),
    fc.bigInt({ min: -1000n, max: 1000n }).filter((v) => v >= min && v <= max)
  )

/** Integral numerics of any magnitude, printed with a scale (`10.00`), as PostgreSQL prints them. */
const numericSample = fc.tuple(
  fc.oneof(fc.bigInt({ min: -(10n ** 40n), max: 10n ** 40n }), fc.bigInt({ min: -50n, max: 50n })),
  fc.integer({ min: 0, max: 3 })
).map(([v, scale]): Sample => {
  const text = scale === 0 ? String(v) : `${v}.${"0".repeat(scale)}`
  return { insert: text, spellings: [v, text, ...(Number.isSafeInteger(Number(v)) && BigInt(Number(v)) === v ? [Number(v)] : [])] }
})

/** Text PostgreSQL can store (no NUL), any code point, sometimes with trailing spaces. */
const text = (maxLength: number) =>
  fc.tuple(
    fc.oneof(
      fc.string({ unit: "binary", maxLength }),
      fc.string({ unit: "grapheme-ascii", maxLength }),
      fc.constantFrom("", " ", "a", "A", "ünïcödé", "日本語のキー", "emoji 🎉", "with 'quote'", " lead")
    ).map((s) => s.replace(/\u0000/g, "")),
    fc.integer({ min: 0, max: 2 })
  ).map(([s, pad]) => Array.from(s + " ".repeat(pad)).slice(0, maxLength).join("")) // code points, as char(n) counts

const textSample = (maxLength: number): fc.Arbitrary<Sample> =>
  text(maxLength).map((s): Sample => ({ insert: s, spellings: [s, s.replace(/ +$/, ""), `${s}  `] }))

/**
 * A uuid in several spellings PostgreSQL accepts (upper case, braces, no or extra hyphens; in a text
 * column also with trailing spaces, which a `uuid` column's input refuses).
 */
const uuidSample = (styles: number): fc.Arbitrary<Sample> =>
  fc.tuple(
    fc.oneof(fc.uuid(), fc.constantFrom("00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff")),
    fc.integer({ min: 0, max: styles - 1 }),
    fc.boolean()
  ).map(([u, style, upper]): Sample => {
    const hex = u.replace(/-/g, "")
    const spellings = [u, hex, `{${u}}`, hex.match(/.{4}/g)!.join("-"), `${u}   `].map((s) => (upper ? s.toUpperCase() : s))
    return { insert: spellings[style]!, spellings: [...spellings, u.toLowerCase(), u.toUpperCase()] }
  })

const columns: ReadonlyArray<Column> = [
  { name: "smallint", sqlType: "smallint", keyType: "integer", key: boundedBigInt(-(2n ** 15n), 2n ** 15n - 1n).map(integerSample) },
  { name: "integer", sqlType: "integer", keyType: "integer", key: boundedBigInt(-(2n ** 31n), 2n ** 31n - 1n).map(integerSample) },
  { name: "bigint", sqlType: "bigint", keyType: "integer", key: boundedBigInt(-(2n ** 63n), 2n ** 63n - 1n).map(integerSample) },
  { name: "numeric", sqlType: "numeric", keyType: "integer", key: numericSample },
  { name: "numeric(30,2)", sqlType: "numeric(30,2)", keyType: "integer", key: boundedBigInt(-(10n ** 27n), 10n ** 27n).map(integerSample) },
  { name: "text", sqlType: "text", keyType: "text", key: textSample(40) },
  { name: "varchar(50)", sqlType: "varchar(50)", keyType: "text", key: textSample(50) },
  { name: "char(12)", sqlType: "char(12)", keyType: "text", key: textSample(12) },
  { name: "uuid", sqlType: "uuid", keyType: "uuid", key: uuidSample(4) },
  { name: "uuid as text", sqlType: "text", keyType: "uuid", key: uuidSample(5) },
  { name: "uuid as char(40)", sqlType: "char(40)", keyType: "uuid", key: uuidSample(5) }
]

const pow2 = (e: number, delta: number) => 2 ** e + delta
/** Small sizes, sizes around the smallint and integer limits, and up to the largest accepted. */
const sizes: fc.Arbitrary<number> = fc.oneof(
  fc.integer({ min: 1, max: 12 }),
  fc.integer({ min: -3, max: 3 }).map((d) => pow2(15, d)),
  fc.integer({ min: -3, max: 3 }).map((d) => pow2(31, d)),
  fc.integer({ min: -3, max: 3 }).map((d) => pow2(32, d)),
  fc.integer({ min: 0, max: 5 }).map((d) => Ownership.maxSize - d),
  fc.integer({ min: 1, max: Ownership.maxSize })
)

/** A column type (by name, so that a counterexample reads well), keys for it, and a size. */
const cases = fc.constantFrom(...columns.map((c) => c.name)).chain((name) =>
  fc.record({
    column: fc.constant(name),
    size: sizes,
    samples: fc.array(columns.find((c) => c.name === name)!.key, { minLength: 1, maxLength: 25 })
  })
)

describe("Ownership on PostgreSQL", () => {
  const db = sharedRuntime()
  it.effect.prop(
    "for every accepted column type, key and N, SQL and ownerOf name the same single owner",
    [cases],
    ([{ column: name, samples, size }]) =>
      Effect.gen(function*() {
        const column = columns.find((c) => c.name === name)!
        const sql = yield* SqlClient.SqlClient
        yield* sql.withTransaction(Effect.gen(function*() {
          yield* sql`CREATE TEMP TABLE ownership_keys (id int PRIMARY KEY, k ${sql.literal(column.sqlType)}) ON COMMIT DROP`
          yield* sql`INSERT INTO ownership_keys ${sql.insert(samples.map((s, id) => ({ id, k: s.insert })))}`
          const rows = yield* sql<{ id: number; k: Key; owner: string | null }>`
            SELECT id, k, ${Ownership.ownerExpression(sql, "k", size, column.keyType)}::text AS owner
              FROM ownership_keys ORDER BY id`
          expect(rows).toHaveLength(samples.length)
          const owners = new Map<number, number>()
          for (const row of rows) {
            const where = `${column.name} key ${JSON.stringify(String(row.k))} (inserted as ${
              JSON.stringify(samples[row.id]!.insert)
            }), N = ${size}`
            // The database's owner: exactly one index, an integer in [0, N).
            expect(row.owner, where).toMatch(/^[0-9]+$/)
            const owner = Number(row.owner)
            expect(Number.isSafeInteger(owner) && owner >= 0 && owner < size, where).toBe(true)
            owners.set(row.id, owner)
            // ownerOf agrees, for the value read back and for every spelling of the key.
            expect(Ownership.ownerOf(row.k, size, column.keyType), where).toBe(owner)
            for (const key of samples[row.id]!.spellings) {
              expect(Ownership.ownerOf(key, size, column.keyType), `${where}, spelled ${String(key)}`).toBe(owner)
            }
          }
          // `owned` selects exactly the rows of the index: every index when N is small, otherwise
          // the owners seen, their neighbours, 0 and N - 1.
          const indexes = size <= 12
            ? Array.from({ length: size }, (_, k) => k)
            : [...new Set([0, size - 1, ...[...owners.values()].flatMap((o) => [o, (o + 1) % size, (o + size - 1) % size])])]
          const seen = new Map<number, number>()
          for (const index of indexes) {
            const mine = yield* sql<{ id: number }>`
              SELECT id FROM ownership_keys WHERE ${Ownership.owned(sql, "k", { index, size }, column.keyType)} ORDER BY id`
            const expected = [...owners].filter(([, o]) => o === index).map(([id]) => id).sort((a, b) => a - b)
            expect(mine.map((r) => r.id), `${column.name}, N = ${size}, index ${index}`).toEqual(expected)
            for (const { id } of mine) seen.set(id, (seen.get(id) ?? 0) + 1)
          }
          if (size <= 12) {
            // Every row owned, and by one index only.
            expect([...seen.keys()].sort((a, b) => a - b)).toEqual(rows.map((r) => r.id))
            for (const count of seen.values()) expect(count).toBe(1)
          }
        }))
      }).pipe(Effect.provide(db)),
    { timeout: 120_000, fastCheck: { numRuns: 250 } }
  )
})
