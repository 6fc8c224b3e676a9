/**
 * Which slot an item belongs to, in TypeScript and in SQL: slot `key mod S` for integer keys
 * (non-negative for negative keys), `H(key) mod S` for text and uuid keys. It is exactly
 * `Ownership`'s mapping with the group size replaced by the slot count, computed by `Ownership`'s
 * own functions (`ownerOf`, `ownerExpression`), so the two modes hash every key type the same way in
 * both languages and nothing is duplicated (see `Ownership` for the key types and the column types
 * each accepts, and for `H`).
 *
 * @since 0.3.0
 */
import type { SqlClient, Statement } from "@effect/sql"
import * as Ownership from "../../Ownership.js"
import { checkSlotCount, InvalidSlots } from "./assignment.js"

/**
 * The slot of one key among `slots` (an integer in `[1, 16384]`), in `[0, slots)`. Integer keys may
 * be a safe integer `number`, a `bigint` or a decimal string; text and uuid keys are strings.
 *
 * Throws `InvalidSlots` for a slot count out of range and `Ownership.InvalidOwnership` for a key its
 * type does not accept.
 *
 * @since 0.3.0
 * @category slots
 */
export const slotOf = (
  key: number | bigint | string,
  slots: number,
  keyType: Ownership.KeyType = "integer"
): number => {
  checkSlotCount(slots)
  return Ownership.ownerOf(key, slots, keyType)
}

/**
 * The SQL expression mapping `column` to its slot in `[0, slots)` (an `int8`; NULL for a NULL key):
 * the expression `slotOf` mirrors.
 *
 * @since 0.3.0
 * @category sql
 */
export const slotExpression = (
  sql: SqlClient.SqlClient,
  column: string | Statement.Fragment,
  slots: number,
  keyType: Ownership.KeyType = "integer"
): Statement.Fragment => {
  checkSlotCount(slots)
  return Ownership.ownerExpression(sql, column, slots, keyType)
}

/**
 * A condition true exactly for the rows whose slot is in `owned` (`slot = ANY(owned)`); `false` for
 * an empty set. `owned` is bound as one parameter (an `int8[]` written as text), whatever its length.
 *
 * Throws `InvalidSlots` for a slot count out of range or a slot outside `[0, slots)`.
 *
 * @since 0.3.0
 * @category sql
 */
export const ownedSlots = (
  sql: SqlClient.SqlClient,
  column: string | Statement.Fragment,
  slots: number,
  owned: ReadonlyArray<number>,
  keyType: Ownership.KeyType = "integer"
): Statement.Fragment => {
  checkSlotCount(slots)
  for (const s of owned) {
    if (typeof s !== "number" || !Number.isSafeInteger(s) || s < 0 || s >= slots) {
      throw new InvalidSlots({ argument: "slot", reason: `must be an integer in [0, ${slots}), got ${String(s)}` })
    }
  }
  if (owned.length === 0) return sql`false`
  const array = `{${[...new Set(owned)].sort((a, b) => a - b).join(",")}}`
  return sql`${Ownership.ownerExpression(sql, column, slots, keyType)} OPERATOR(pg_catalog.=) ANY(${array}::int8[])`
}
