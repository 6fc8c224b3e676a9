/**
 * From a database error (a `SqlError` wrapping the `pg` driver's error) to the text and SQLSTATE the
 * library's tagged errors carry. Nothing public fails with a raw `SqlError`: the store maps it to
 * `StoreError`, migrations to `DatabaseUnavailable`, the fence to `StoreError` (operation "fenced").
 */
import type { SqlError } from "@effect/sql/SqlError"
import { Predicate } from "effect"
import { DatabaseUnavailable } from "../../MembershipError.js"

/** The most specific message of an error (a `SqlError`'s driver error), with its SQLSTATE if any. */
export const describe = (cause: unknown): string => {
  const inner = (cause as { cause?: unknown })?.cause ?? cause
  const e = inner as { message?: unknown; code?: unknown }
  const message = typeof e?.message === "string" && e.message.length > 0 ? e.message : String(inner)
  return typeof e?.code === "string" ? `${message} (${e.code})` : message
}

/** The SQLSTATE of a `SqlError` (e.g. "40001"), if the server sent one. */
export const sqlState = (error: unknown): string | undefined => {
  if (!Predicate.isTagged(error, "SqlError")) return undefined
  const code = ((error as SqlError).cause as { code?: unknown } | undefined)?.code
  return typeof code === "string" ? code : undefined
}

/** A database error where the library needs the database to be there (migrations, startup). */
export const unavailable = (error: SqlError): DatabaseUnavailable =>
  new DatabaseUnavailable({ reason: describe(error), cause: error })
