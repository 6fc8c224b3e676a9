/**
 * "The rows I own", as a SQL fragment, so that no app gets the modulo wrong. For every key the module
 * accepts and every size `N` it accepts, the SQL condition (`owned`) and the JavaScript function
 * (`ownerOf`) name the same single owner in `[0, N)`; anything else is refused with an
 * `InvalidOwnership` error, or, for a row the database cannot map, with a query error.
 *
 * | `keyType` | SQL column types | JavaScript keys | owner |
 * |---|---|---|---|
 * | `"integer"` (default) | `smallint`, `integer`, `bigint`, `numeric` holding whole numbers (any magnitude) | a safe integer `number`, a `bigint`, or a decimal string such as `"-12"` or `"10.00"` | `((key % N) + N) % N`: `key % N` for non-negative keys |
 * | `"text"` | `text`, `varchar`, `char(n)` (and domains over them) | a `string` | `H(key) % N` |
 * | `"uuid"` | `uuid`, or a text column holding uuids in any spelling PostgreSQL accepts | a `string` in such a spelling | `H(canonical uuid) % N` |
 *
 * - `N` is a safe integer in `[1, 2^53)`; all arithmetic is done in `bigint` (in `numeric` for a numeric
 *   column), so no column type overflows.
 * - `H(s)` is the first 60 bits of the MD5 of the UTF-8 bytes of `s` with trailing spaces (U+0020)
 *   removed, as a non-negative integer. Removing trailing spaces makes a `char(n)` key (padded by
 *   PostgreSQL) and its unpadded spelling one key; the UTF-8 conversion makes the hash independent of
 *   the database's encoding. MD5 is in every PostgreSQL, does not depend on the server's version, byte
 *   order or collation (unlike `hashtext`), and is easy to compute elsewhere.
 * - A uuid key is canonicalised as PostgreSQL's `uuid::text` does (lowercase, `8-4-4-4-12`) in SQL and
 *   in `ownerOf`, so a uuid stored as `uuid`, as upper-case text or in braces is owned by one index.
 * - Refused before any query, with `InvalidOwnership`: a size or index out of range, an unknown key
 *   type, and in `ownerOf` a key that is not of its type (`2.5`, `"2.50"`, `"NaN"`, `"1e3"`, an unsafe
 *   `number`, a malformed uuid, a string with a NUL or an unpaired surrogate, which PostgreSQL cannot
 *   store).
 * - Refused by PostgreSQL when the statement is planned: a column of another type (`real`, `double
 *   precision`, `text` under `"integer"`, `integer` or `uuid` under `"text"`) makes the query fail
 *   ("function ... does not exist").
 * - Refused by PostgreSQL when the row is read: a `numeric` key that is not a whole number (`2.50`,
 *   `NaN`, `Infinity`) under `"integer"`, or a text that is not a uuid under `"uuid"`, makes the query
 *   fail with `invalid input syntax ...` naming the key. A NULL key is owned by no index.
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
import * as Data from "effect/Data"
import { createHash } from "node:crypto"
import { ownedSlots } from "./internal/slots/keys.js"

/**
 * How a key is mapped to an index: `"integer"` by modulo, `"text"` and `"uuid"` by hash (see the
 * module's documentation for the column types and JavaScript values each accepts).
 *
 * @since 0.1.0
 * @category models
 */
export type KeyType = "integer" | "text" | "uuid"

/**
 * The key types, for validation and iteration.
 *
 * @since 0.2.0
 * @category models
 */
export const keyTypes: ReadonlyArray<KeyType> = ["integer", "text", "uuid"]

/**
 * The largest group size accepted: `2^53 - 1` (`Number.MAX_SAFE_INTEGER`).
 *
 * @since 0.2.0
 * @category models
 */
export const maxSize: number = Number.MAX_SAFE_INTEGER

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

/**
 * Slots mode: one slot (`Membership.whileOwning`'s `OwnedSlot`) or a set of slots
 * (`Membership.whileOwningAll`'s `OwnedSlots`) of a group of `count` slots. `owned` then keeps the
 * rows whose slot (`ownerOf(id, count)`) is among them (none for an empty set).
 *
 * @since 0.3.0
 * @category models
 */
export type SlotSet =
  | { readonly slot: number; readonly count: number }
  | { readonly slots: ReadonlyArray<number>; readonly count: number }

/**
 * A size, index, key type or key that ownership does not accept. Thrown (a defect inside an effect:
 * it is a bug in the caller) by `owned`, `ownerExpression`, `ownerOf` and `owns` before any query.
 *
 * @since 0.2.0
 * @category errors
 */
export class InvalidOwnership extends Data.TaggedError("InvalidOwnership")<{
  readonly argument: "size" | "index" | "keyType" | "key"
  readonly reason: string
}> {
  override get message() {
    return `modulo-group Ownership: invalid ${this.argument}: ${this.reason}`
  }
}

const show = (value: unknown): string => {
  const text = typeof value === "string"
    ? JSON.stringify(value)
    : typeof value === "bigint"
    ? `${value}n`
    : String(value)
  return text.length > 60 ? `${text.slice(0, 60)}...` : text
}

const checkSize = (size: number): void => {
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 1) {
    throw new InvalidOwnership({
      argument: "size",
      reason: `must be an integer in [1, ${maxSize}], got ${show(size)}`
    })
  }
}

const checkSlice = (slice: Slice): void => {
  checkSize(slice.size)
  if (typeof slice.index !== "number" || !Number.isSafeInteger(slice.index) || slice.index < 0 || slice.index >= slice.size) {
    throw new InvalidOwnership({
      argument: "index",
      reason: `must be an integer in [0, ${slice.size}), got ${show(slice.index)}`
    })
  }
}

const checkKeyType = (keyType: KeyType): void => {
  if (!keyTypes.includes(keyType)) {
    throw new InvalidOwnership({
      argument: "keyType",
      reason: `must be one of ${keyTypes.map((k) => JSON.stringify(k)).join(", ")}, got ${show(keyType)}`
    })
  }
}

/**
 * The SQL expression mapping `column` to its owner index in `[0, size)` (NULL for a NULL key); see the
 * module's documentation for the column types each key type accepts. `column` is an identifier
 * (`"id"`, `"items.id"`) or a SQL fragment without side effects (it appears more than once).
 *
 * Throws `InvalidOwnership` unless `size` is an integer in `[1, 2^53)` and `keyType` is known.
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
  checkKeyType(keyType)
  const key = typeof column === "string" ? sql(column) : column
  // Every function and operator is named in pg_catalog: the fragment runs in the app's statements,
  // in the app's search path, where a function or operator planted in a schema of the path would
  // otherwise be taken wherever pg_catalog's needs a cast (`mod(integer, bigint)`, `=(numeric,
  // integer)`) or an untyped literal meets it (`convert_to(text, 'UTF8')`: a planted
  // `convert_to(text, text)`): an adversarial review made two members of one epoch own the same items,
  // and ran its code as the app's role (docs/operations.md, "The members' search_path").
  switch (keyType) {
    case "integer":
      // `mod` resolves to bigint arithmetic for smallint, integer and bigint columns and to numeric
      // arithmetic for numeric ones: nothing overflows. No `mod(real|double precision, bigint)` exists,
      // so float columns are refused when the statement is planned. A numeric key that is not a whole
      // number (2.50, NaN, Infinity) fails the query with a message naming it. The owner is a bigint.
      return sql`(CASE WHEN pg_catalog.mod((${key}), 1::int8) OPERATOR(pg_catalog.=) 0::int8
        THEN pg_catalog.mod(pg_catalog.mod((${key}), ${size}::int8) OPERATOR(pg_catalog.+) ${size}::int8, ${size}::int8)::int8
        ELSE ('modulo-group Ownership: key is not an integer: '::text OPERATOR(pg_catalog.||) (${key})::text)::int8 END)`
    case "text":
      // `rtrim(text, text)` takes text, varchar and char(n) (its padding removed) and nothing else.
      return sql`(('x'::text OPERATOR(pg_catalog.||) pg_catalog.left(pg_catalog.md5(pg_catalog.convert_to(
        pg_catalog.rtrim((${key}), ' '::text), 'UTF8'::name)), 15))::bit(60)::int8 OPERATOR(pg_catalog.%) ${size}::int8)`
    case "uuid":
      // `::uuid::text` canonicalises, whether the column is uuid or text; not a uuid: the query fails.
      return sql`(('x'::text OPERATOR(pg_catalog.||) pg_catalog.left(pg_catalog.md5(pg_catalog.rtrim((${key})::text, ' '::text)::uuid::text), 15))
        ::bit(60)::int8 OPERATOR(pg_catalog.%) ${size}::int8)`
  }
}

/**
 * A condition true exactly for the rows `slice` owns: `column`'s owner index is `slice.index`. In
 * slots mode, given an `OwnedSlot` or `OwnedSlots` (`SlotSet`): `column`'s slot (`column mod count`,
 * hashed the same way for text and uuid keys) is one of the slots, as `slot = ANY($1::int8[])`.
 * `column` is an identifier (`"id"`, `"items.id"`) or a SQL fragment without side effects. For every
 * `size` up to `2^53 - 1`, each accepted key is owned by exactly one index in `[0, size)` (NULL keys by
 * none), the one `ownerOf` computes.
 *
 * Throws `InvalidOwnership` (a bug in the caller) unless `0 <= index < size <= 2^53 - 1` and `keyType`
 * is known. Keys the database cannot map make the query fail (see the module's documentation).
 *
 * @since 0.1.0
 * @category sql
 */
export const owned = (
  sql: SqlClient.SqlClient,
  column: string | Statement.Fragment,
  slice: Slice | SlotSet,
  keyType: KeyType = "integer"
): Statement.Fragment => {
  // Slots mode: `column mod S` is one of the slots (bound as one array parameter).
  if ("count" in slice) {
    return ownedSlots(sql, column, slice.count, "slot" in slice ? [slice.slot] : slice.slots, keyType)
  }
  checkSlice(slice)
  return sql`${ownerExpression(sql, column, slice.size, keyType)} OPERATOR(pg_catalog.=) ${slice.index}::int8`
}

const invalidKey = (key: unknown, keyType: KeyType, reason: string): InvalidOwnership =>
  new InvalidOwnership({ argument: "key", reason: `${keyType} key ${show(key)} ${reason}` })

/** Whole numbers in decimal, as PostgreSQL prints smallint, integer, bigint and numeric (`10.00`). */
const decimalInteger = /^([+-]?[0-9]+)(?:\.0*)?$/

const integerKey = (key: unknown): bigint => {
  if (typeof key === "bigint") return key
  if (typeof key === "number") {
    if (Number.isSafeInteger(key)) return BigInt(key)
    throw invalidKey(key, "integer", "is not a safe integer: pass a bigint or a decimal string")
  }
  if (typeof key === "string") {
    const match = decimalInteger.exec(key)
    if (match !== null) return BigInt(match[1]!)
    throw invalidKey(key, "integer", "is not a whole number in decimal (like \"-12\" or \"10.00\")")
  }
  throw invalidKey(key, "integer", "must be a number, a bigint or a string")
}

/** Unpaired UTF-16 surrogates: not text PostgreSQL can store (nor UTF-8 can encode). */
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

const textKey = (key: unknown, keyType: KeyType): string => {
  if (typeof key !== "string") throw invalidKey(key, keyType, "must be a string")
  if (key.includes("\u0000")) throw invalidKey(key, keyType, "contains a NUL character, which PostgreSQL text cannot hold")
  if (loneSurrogate.test(key)) throw invalidKey(key, keyType, "contains an unpaired surrogate, which is not text")
  // Trailing spaces are not part of the key: rtrim(key, ' '), as char(n) drops its padding.
  return key.replace(/ +$/, "")
}

/** PostgreSQL's uuid input: optional braces, 32 hex digits, an optional hyphen after every 4 digits. */
const uuidInput = /^(?:\{([0-9a-f]{4}(?:-?[0-9a-f]{4}){7})\}|([0-9a-f]{4}(?:-?[0-9a-f]{4}){7}))$/i

const canonicalUuid = (key: unknown): string => {
  const text = textKey(key, "uuid")
  const match = uuidInput.exec(text)
  if (match === null) throw invalidKey(key, "uuid", "is not a uuid PostgreSQL accepts")
  const hex = (match[1] ?? match[2]!).replace(/-/g, "").toLowerCase()
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

/** The first 60 bits of md5(UTF-8 bytes of `text`). */
const hash60 = (text: string): bigint => BigInt(`0x${createHash("md5").update(text, "utf8").digest("hex").slice(0, 15)}`)

/**
 * The owner index of one key, computed in JavaScript exactly as `owned` computes it in SQL. Integer
 * keys may be a safe integer `number`, a `bigint` or a decimal string (as PostgreSQL returns
 * `bigint` and `numeric`: `"10.00"` is 10); text and uuid keys are strings (a uuid in any spelling
 * PostgreSQL accepts).
 *
 * Throws `InvalidOwnership` for a size out of `[1, 2^53)`, an unknown key type, or a key its type does
 * not accept (`1.5`, `"2.50"`, `"1e3"`, `"not-a-uuid"`, ...).
 *
 * @since 0.1.0
 * @category ownership
 */
export const ownerOf = (key: number | bigint | string, size: number, keyType: KeyType = "integer"): number => {
  checkSize(size)
  checkKeyType(keyType)
  const n = BigInt(size)
  switch (keyType) {
    case "integer":
      return Number(((integerKey(key) % n) + n) % n)
    case "text":
      return Number(hash60(textKey(key, "text")) % n)
    case "uuid":
      return Number(hash60(canonicalUuid(key)) % n)
  }
}

/**
 * Whether `slice` owns `key` (the JavaScript twin of `owned`). Throws `InvalidOwnership` as `owned` and
 * `ownerOf` do.
 *
 * @since 0.1.0
 * @category ownership
 */
export const owns = (slice: Slice, key: number | bigint | string, keyType: KeyType = "integer"): boolean => {
  checkSlice(slice)
  return ownerOf(key, slice.size, keyType) === slice.index
}
