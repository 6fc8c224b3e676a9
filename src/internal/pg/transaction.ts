/**
 * The one transaction helper of the Postgres code: the store's membership changes and `fenced` both
 * run in it. Built on `SqlClient.makeWithTransaction`, the supported @effect/sql API that
 * `sql.withTransaction` itself is made of (same connection handling, savepoints, span and
 * interruption rules), with three statements of our own:
 *
 * - `BEGIN ISOLATION LEVEL READ COMMITTED` instead of a plain `BEGIN`: a change or a fence check
 *   waits for a lock and must then read the newest committed rows the lock protects, not a snapshot
 *   taken before the wait (under a REPEATABLE READ or SERIALIZABLE default that fails with 40001).
 *   `withTransaction` sends a plain `BEGIN` and has no option for the level.
 * - A failed `COMMIT` is a failure (a `SqlError`), not the defect `withTransaction` turns it into:
 *   a caller must be able to tell "did not commit" (a killed backend, the fence's commit-time check)
 *   from a bug. `makeWithTransaction` dies with whatever `commit` fails with, so `commit` wraps its
 *   error in `CommitFailed` and the helper turns exactly that defect back into the failure.
 * - A failed `ROLLBACK` is ignored and the body's own error kept: it means a broken connection, which
 *   the pool discards and the server rolls back.
 *
 * Inside a transaction already open on the fiber (an app's `withTransaction`), it becomes a savepoint
 * of it, exactly as `withTransaction` does, at the app's isolation level.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import { savepointLostSqlState } from "./constants.js"
import { isRevoked, pgClientOf } from "./noCancel.js"

/** A `COMMIT` that failed, carried through `makeWithTransaction`'s `orDie` and unwrapped again. */
class CommitFailed {
  constructor(readonly error: SqlError) {}
}

/**
 * The names of this module's savepoints: unique in the process (a random prefix per copy of the
 * module, a counter per savepoint), where @effect/sql names its savepoints by depth
 * (`effect_sql_<n>`). A rollback to a name goes to the newest savepoint of that name, and with other
 * fibers on the same transaction (an app's nested `sql.withTransaction` that failed and was retried)
 * a savepoint of the same depth could stand above a fenced block's own: the block's rollback landed
 * there and its writes stayed, without its locks (an adversarial review). A rollback to a name of
 * our own reaches the block's own savepoint, and everything taken after it goes; if that savepoint is
 * gone (a rollback in the body past it), the rollback fails, `endTransaction` ends what the app's
 * transaction could still commit, and @effect/sql makes the failure a defect.
 */
const savepointPrefix = `modulo_group_${globalThis.crypto.randomUUID().slice(0, 8)}_`
let savepointsTaken = 0

/** @effect/sql-pg's connection's `pg.PoolClient`, when `conn` is one (or a wrapper or proxy of one). */
const endableClientOf = (conn: unknown): { readonly end: () => Promise<void> } | undefined => {
  const client = pgClientOf(conn) as { readonly end?: unknown } | undefined
  return typeof client?.end === "function" ? (client as { readonly end: () => Promise<void> }) : undefined
}

/**
 * Ends what the app's transaction can still commit, when a rollback to a savepoint of ours failed: the
 * savepoint is gone (the body rolled back past it, or another block's rollback on the same
 * transaction took it), so what was written since is no longer covered by the block's locks, and the
 * transaction is aborted. @effect/sql makes the failure a defect, which rolls the app's transaction
 * back, unless the app catches it inside the transaction and rolls back to a savepoint of its own
 * taken after ours was lost: that would make the transaction healthy again, with those writes in it
 * (an adversarial review).
 *
 * @effect/sql-pg's connection: its client is ended (the pool discards an ended client when it is
 * released); the server rolls the transaction back and every later statement of the app on it fails.
 * Any other connection (an app's wrapper, which carries no client: a review): on that connection
 * itself, the statements below, which roll the transaction back (the body's writes with it) and end
 * the backend, so that every later statement of the app fails, its `COMMIT` among them. Nothing here
 * needs another connection (a review of a version that terminated the backend from the pool: with the
 * pool's one connection held by that transaction it failed, or waited for ever).
 */
const endTransaction = (conn: Connection): Effect.Effect<void> => {
  const why = "a fenced block's savepoint was gone at its end (rolled back past by its body, or by a " +
    "concurrent block on the same transaction)"
  const client = endableClientOf(conn)
  if (client !== undefined) {
    return Effect.zipRight(
      Effect.sync(() => void client.end().catch(() => undefined)),
      Effect.logError(`modulo-group: ${why}; the connection is ended so that nothing of the transaction commits`)
    )
  }
  const send = (statement: string) => Effect.exit(conn.executeUnprepared(statement, [], undefined))
  const abort = `DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '${savepointLostSqlState}', MESSAGE = ` +
    `'modulo_group fence: a fenced block''s savepoint was lost; this transaction cannot commit'; END $$`
  // In order, each in a transaction (`ROLLBACK AND CHAIN` ends the aborted one and opens the next in
  // one step: no statement of another fiber on this connection, a concurrent block's write queued
  // meanwhile, ever runs outside a transaction; a review found one that did, between a ROLLBACK and a
  // BEGIN sent one by one, and committed without locks); the session's own user back (a role set on
  // the session may not terminate the login's backend: a review); the backend ends itself, so that
  // every later statement of the app fails, its COMMIT among them (in an aborted transaction alone,
  // PostgreSQL answers a COMMIT with ROLLBACK and no error: the app was told its transaction had
  // committed, a review); and, should the backend live on, an error that leaves the transaction aborted.
  const statements = [
    "ROLLBACK AND CHAIN",
    "RESET SESSION AUTHORIZATION",
    "RESET ROLE",
    "SELECT pg_terminate_backend(pg_backend_pid())",
    abort
  ]
  const outcome = (exit: Exit.Exit<unknown, unknown>): "ended" | "aborted" | "unknown" => {
    if (Exit.isSuccess(exit)) return "unknown"
    const error = Cause.squash(exit.cause)
    const text = JSON.stringify(error) + String(error)
    if (/57P01|Connection terminated|not queryable|ECONNRESET/i.test(text)) return "ended"
    return text.includes(savepointLostSqlState) ? "aborted" : "unknown"
  }
  return Effect.gen(function*() {
    // One message where the connection takes several statements in one (the simple protocol); else one
    // by one, which `ROLLBACK AND CHAIN` makes as safe.
    let result = outcome(yield* send(statements.join("; ")))
    if (result === "unknown") {
      for (const statement of statements) {
        result = outcome(yield* send(statement))
        if (result === "ended") break
      }
    }
    yield* result === "ended"
      ? Effect.logError(`modulo-group: ${why}; the transaction is rolled back and its backend ended, so that nothing of it commits`)
      : Effect.logError(
        `modulo-group: ${why}; the transaction is rolled back and a new one left aborted, but its backend could not be ` +
          "ended: nothing of it commits, and a COMMIT on it reports no error"
      )
  })
}

/**
 * Runs `body` in a READ COMMITTED transaction on one connection reserved from `sql` (a savepoint
 * with a name of its own when the fiber is already in a transaction). `beforeCommit` runs just before
 * the `COMMIT` of a top-level transaction (the store's `onStatement(operation, "commit")` test hook).
 */
export const readCommitted = <A, E, R>(
  sql: SqlClient.SqlClient,
  body: Effect.Effect<A, E, R>,
  beforeCommit: Effect.Effect<void> = Effect.void
): Effect.Effect<A, E | SqlError, R> =>
  Effect.suspend(() => {
    // One name per run (an effect built once may be run again, e.g. retried).
    const savepoint = `${savepointPrefix}${++savepointsTaken}`
    // Whether the server took the savepoint. A `SAVEPOINT` that failed (cancelled by a stray
    // `pg_cancel_backend`: docs/operations.md, "Timeouts and cancellation") left none, and the app's
    // transaction aborted; nothing of the block ran. Then there is nothing to roll back to and nothing
    // of the block to keep out of a COMMIT: the block fails with that error, and the transaction is
    // left to the app (aborted, as any failed statement leaves it). Rolling back to the missing
    // savepoint failed, ended the app's connection and made the failure a defect (an adversarial
    // review, 2026-12-07).
    let taken = false
    return SqlClient.makeWithTransaction({
      transactionTag: SqlClient.TransactionConnection,
      spanAttributes: [["db.system", "postgresql"]],
      acquireConnection: Effect.flatMap(
        Scope.make(),
        (scope) => Effect.map(Scope.extend(sql.reserve, scope), (conn) => [scope, conn] as const)
      ),
      begin: (conn) => conn.executeUnprepared("BEGIN ISOLATION LEVEL READ COMMITTED", [], undefined),
      savepoint: (conn) =>
        Effect.tap(conn.executeUnprepared(`SAVEPOINT ${savepoint}`, [], undefined), () => {
          taken = true
        }),
      commit: (conn) =>
        Effect.zipRight(beforeCommit, conn.executeUnprepared("COMMIT", [], undefined)).pipe(
          Effect.asVoid,
          Effect.mapError((error) => new CommitFailed(error) as unknown as SqlError)
        ),
      rollback: (conn) => Effect.ignore(conn.executeUnprepared("ROLLBACK", [], undefined)),
      rollbackSavepoint: (conn) =>
        !taken ? Effect.void : conn.executeUnprepared(`ROLLBACK TO SAVEPOINT ${savepoint}`, [], undefined).pipe(
          // Refused on a fenced body's connection after the body ended (a block a forked fiber ran):
          // nothing of it was sent, and the connection is not its to end (the pool may have given the
          // client to another transaction since: a review).
          Effect.tapError(() => (isRevoked(conn) ? Effect.void : endTransaction(conn)))
        )
    })(body)
  }).pipe(
    Effect.catchSomeDefect((defect) =>
      defect instanceof CommitFailed ? Option.some(Effect.fail(defect.error)) : Option.none()
    )
  )

/**
 * `readCommitted` that always opens a transaction of its own, even on a fiber already inside one: the
 * store's changes never join a caller's transaction.
 */
export const ownReadCommitted = <A, E, R>(
  sql: SqlClient.SqlClient,
  body: Effect.Effect<A, E, R>,
  beforeCommit?: Effect.Effect<void>
): Effect.Effect<A, E | SqlError, R> =>
  Effect.mapInputContext(
    readCommitted(sql, body, beforeCommit),
    // The body's own requirements stay; only the caller's transaction, if any, is hidden from it.
    (context: Context.Context<R>) => Context.omit(SqlClient.TransactionConnection)(context) as Context.Context<R>
  )

