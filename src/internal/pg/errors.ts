/**
 * From a database error (a `SqlError` wrapping the `pg` driver's error) to the text and SQLSTATE the
 * library's tagged errors carry. Nothing public fails with a raw `SqlError`: the store maps it to
 * `StoreError`, migrations to `DatabaseUnavailable`, the fence to `StoreError` (operation "fenced").
 */
import type { SqlError } from "@effect/sql/SqlError"
import * as Predicate from "effect/Predicate"
import { DatabaseUnavailable } from "../../MembershipError.js"

// What a person can do about a few SQLSTATEs whose own messages do not say where they come from.
const hints: Readonly<Record<string, string>> = {
  // "cannot execute SELECT in a read-only transaction"
  "25006": ": this connection's transactions are read-only (default_transaction_read_only, set in the " +
    "connection's options, for the role or for the database; or the server is a hot standby): members " +
    "need to write their rows on the primary"
}

/** The most specific message of an error (a `SqlError`'s driver error), with its SQLSTATE if any. */
export const describe = (cause: unknown): string => {
  const inner = (cause as { cause?: unknown })?.cause ?? cause
  const e = inner as { message?: unknown; code?: unknown }
  const message = typeof e?.message === "string" && e.message.length > 0 ? e.message : String(inner)
  return typeof e?.code === "string" ? `${message} (${e.code})${hints[e.code] ?? ""}` : message
}

/** The SQLSTATE of a `SqlError` (e.g. "40001"), if the server sent one. */
export const sqlState = (error: unknown): string | undefined => {
  if (!Predicate.isTagged(error, "SqlError")) return undefined
  const code = ((error as SqlError).cause as { code?: unknown } | undefined)?.code
  return typeof code === "string" ? code : undefined
}

/** A statement waited for a lock longer than its `lock_timeout` (SQLSTATE 55P03). */
export const lockNotAvailable = "55P03"

/** The server ended a transaction to break a deadlock (SQLSTATE 40P01). */
export const deadlockDetected = "40P01"

/** A database error where the library needs the database to be there (migrations, startup). */
export const unavailable = (error: SqlError): DatabaseUnavailable =>
  new DatabaseUnavailable({ reason: describe(error), cause: error })

// SQLSTATEs of a server that will not take a connection now: too many clients (53300), a role or
// database over its connection limit (53300 too), starting up or shutting down (57P03).
const refusalCodes = new Set(["53300", "57P03"])
// SQLSTATEs of an error that ends the session: an administrator's or a crash's termination, a
// database dropped, an idle (in transaction) session or a transaction timed out.
const sessionEndCodes = new Set(["57P01", "57P02", "57P04", "57P05", "25P03", "25P04"])
// PgBouncer's own refusals, all SQLSTATE 08P01 (which it sends for every error of its own) and only
// ever in English: its client limit reached, no server connection to be had, the server's logins
// failing (it refuses clients for `server_login_retry` then), a client that waited `query_wait_timeout`
// for a server connection.
const poolerRefusal = /no more connections allowed|cannot connect to server|server login has been failing|query_wait_timeout/
// Network errors of a connection attempt: nothing listens, the connection was cut, nobody answers.
const refusalErrnos = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "EPIPE"])

/**
 * Why the database did not take a connection, when that is what `error` (a `StoreError`, a
 * `SqlError`, a `pg` error, or any chain of `cause`s) comes down to: too many clients, a server
 * starting up or shutting down, a refused or timed-out connection attempt, a pooler's refusal (PgBouncer's
 * `max_client_conn`, no server connection). Undefined for anything
 * else (a statement that failed on a working connection). Retrying with backoff is the cure.
 */
export const refusal = (error: unknown): string | undefined => {
  let e: unknown = error
  for (let depth = 0; depth < 6 && e !== undefined && e !== null; depth++) {
    const { code, message } = e as { code?: unknown; message?: unknown }
    const text = typeof message === "string" ? message : ""
    if (
      typeof code === "string" &&
      (refusalCodes.has(code) || refusalErrnos.has(code) || (code === "08P01" && poolerRefusal.test(text)))
    ) {
      return text.length > 0 ? `${text} (${code})` : code
    }
    if (/timeout exceeded when trying to connect|Connection terminated due to connection timeout/.test(text)) {
      return text
    }
    e = (e as { cause?: unknown }).cause
  }
  return undefined
}

/**
 * Whether a failed call got through to the database, which answered: an error with a SQLSTATE other
 * than a refusal's or a connection exception's (class 08), such as a statement timeout or a unique
 * violation, or a refusal the store made from rows it read (a member id's row elsewhere). A refusal of
 * connections said once (`refusedOnce`) is over then, as after a call that succeeded: a later one is
 * said again (before, only a call that succeeded ended it, and a second outage after a join refused
 * by name went unsaid).
 */
export const answered = (error: unknown): boolean => {
  let e: unknown = error
  for (let depth = 0; depth < 6 && e !== undefined && e !== null; depth++) {
    if (Predicate.isTagged(e, "RowElsewhere")) return true
    const { code, severity } = e as { code?: unknown; severity?: unknown }
    // SQLSTATEs are five digits or upper-case letters; the driver's errnos (EPIPE, ...) start with E.
    if (typeof code === "string" && /^[0-9A-DF-Z][0-9A-Z]{4}$/.test(code)) {
      // Not an error that ended the session (FATAL: a terminated backend, 57P01; an idle session
      // ended, 57P05, 25P03; a server shutting down): the next call needs a new connection, which may
      // be refused again (a review: a refusal, a terminated backend, a refusal said "connected again"
      // in between). The severity as the server sends it is translated (FEHLER, ERREUR: a review), so
      // only FATAL and PANIC are taken from it, and those codes by name.
      if (severity === "FATAL" || severity === "PANIC") return false
      return !refusalCodes.has(code) && !sessionEndCodes.has(code) && !code.startsWith("08")
    }
    e = (e as { cause?: unknown }).cause
  }
  return false
}
