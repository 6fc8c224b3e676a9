/**
 * "The rows I own", as a SQL fragment, so that no app gets the modulo wrong: negative keys, text
 * and uuid keys all land on exactly one index in `[0, size)`.
 *
 * - `"integer"` keys (smallint, integer, bigint, numeric): `((key % size) + size) % size = index`,
 *   which is `key % size = index` for the usual non-negative ids.
 * - `"text"` and `"uuid"` keys: the first 60 bits of `md5(key::text)` as a non-negative bigint, then
 *   `% size = index`. md5 is in every PostgreSQL, does not depend on the server's version, platform or
 *   collation (unlike `hashtext`/`hashtextextended`, whose values may differ across major versions and
 *   byte orders), and is easy to compute outside the database: `ownerOf` computes the same index in
 *   JavaScript.
 *
 * @example
 * ```ts
 * import { SqlClient } from "@effect/sql"
 * import { Effect } from "effect"
 * import { Ownership, Work } from "modulo-group"
 *
 * const drain = Work.runEvery("1 second", (tick) =>
 *   Effect.gen(function*() {
 *     const sql = yield* SqlClient.SqlClient
 *     yield* sql`UPDATE items SET done = true WHERE NOT done AND ${Ownership.owned(sql, "id", tick)}`
 *   }))
 * ```
 *
 * @since 0.1.0
 */
import type { SqlClient, Statement } from "@effect/sql"
import { createHash } from "node:crypto"

/**
 * How a key column is mapped to an index: `"integer"` by modulo, `"text"` and `"uuid"` by hash.
 *
 * @since 0.1.0
 * @category models
 */
export type KeyType = "integer" | "text" | "uuid"

/**
 * The part of an assignment ownership depends on (an `Assignment` or a `Work.Tick` will do).
 *
 * @since 0.1.0
 * @category models
 */
export interface Slice {
  readonly index: number
  readonly size: number
}

const checkSize = (size: number): void => {
  if (!Number.isSafeInteger(size) || size < 1) throw new RangeError(`modulo-group: size must be a positive integer, got ${size}`)
}

const checkSlice = (slice: Slice): void => {
  checkSize(slice.size)
  if (!Number.isSafeInteger(slice.index) || slice.index < 0 || slice.index >= slice.size) {
    throw new RangeError(`modulo-group: index must be an integer in [0, ${slice.size}), got ${slice.index}`)
  }
}

/**
 * The SQL expression mapping `column` to its owner index in `[0, size)`.
 *
 * @since 0.1.0
 * @category sql
 */
export const ownerExpression = (
  sql: SqlClient.SqlClient,
  column: string | Statement.Fragment,
  size: number,
  keyType: KeyType = "integer"
): Statement.Fragment => {
  checkSize(size)
  const key = typeof column === "string" ? sql(column) : column
  switch (keyType) {
    case "integer":
      return sql`((${key} % ${size}) + ${size}) % ${size}`
    case "text":
    case "uuid":
      return sql`(('x' || left(md5(${key}::text), 15))::bit(60)::bigint % ${size})`
  }
}

/**
 * A condition true exactly for the rows `slice` owns: `column`'s owner index is `slice.index`.
 * `column` is an identifier (`"id"`, `"items.id"`) or any SQL fragment. For every `size`, each key
 * is owned by exactly one index in `[0, size)` (NULL keys by none).
 *
 * Throws a `RangeError` (a bug in the caller) unless `0 <= index < size`.
 *
 * @since 0.1.0
 * @category sql
 */
export const owned = (
  sql: SqlClient.SqlClient,
  column: string | Statement.Fragment,
  slice: Slice,
  keyType: KeyType = "integer"
): Statement.Fragment => {
  checkSlice(slice)
  return sql`${ownerExpression(sql, column, slice.size, keyType)} = ${slice.index}`
}

const canonicalUuid = (key: string): string => {
  const hex = key.replace(/^\{|\}$/g, "").replace(/-/g, "").toLowerCase()
  if (!/^[0-9a-f]{32}$/.test(hex)) throw new RangeError(`modulo-group: not a uuid: ${JSON.stringify(key)}`)
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

/**
 * The owner index of one key, computed in JavaScript exactly as `owned` computes it in SQL (for text,
 * assuming a UTF-8 database). Integer keys may be `number` (a safe integer), `bigint` or a decimal string.
 *
 * @since 0.1.0
 * @category ownership
 */
export const ownerOf = (key: number | bigint | string, size: number, keyType: KeyType = "integer"): number => {
  checkSize(size)
  const n = BigInt(size)
  if (keyType === "integer") {
    if (typeof key === "number" && !Number.isSafeInteger(key)) {
      throw new RangeError(`modulo-group: integer key must be a safe integer, got ${key}`)
    }
    return Number(((BigInt(key) % n) + n) % n)
  }
  const text = keyType === "uuid" ? canonicalUuid(String(key)) : String(key)
  const hex = createHash("md5").update(text, "utf8").digest("hex")
  return Number(BigInt(`0x${hex.slice(0, 15)}`) % n)
}

/**
 * Whether `slice` owns `key` (the JavaScript twin of `owned`).
 *
 * @since 0.1.0
 * @category ownership
 */
export const owns = (slice: Slice, key: number | bigint | string, keyType: KeyType = "integer"): boolean => {
  checkSlice(slice)
  return ownerOf(key, slice.size, keyType) === slice.index
}
