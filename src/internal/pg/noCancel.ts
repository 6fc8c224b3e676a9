/**
 * A statement the library has sent is never interrupted. `@effect/sql-pg` cancels an interrupted
 * query with `SELECT pg_cancel_backend(pid)` on another pooled connection, `pid` taken from the
 * connection's startup reply. Behind a connection pooler in transaction mode (PgBouncer) that number
 * is the pooler's, not a server backend's: the cancel reaches nothing and the statement runs on, or,
 * should the number equal the pid of some server backend, it cancels somebody else's statement.
 *
 * So every statement is bounded on the server instead (`statement_timeout`, `lock_timeout`,
 * `idle_in_transaction_session_timeout` set local to its transaction or, for the heartbeat, inside
 * the statement itself: see statements.ts), and where the library must stop waiting for an answer
 * it stops *waiting* (`awaitAtMost`): the statement runs to its end in a fiber of its own, which
 * stops at the next point between statements and never inside one.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"

/**
 * `conn`, whose statements run to their end once sent, even when the fiber is interrupted. With its
 * `pg` client, if it has one (@effect/sql-pg's): a fenced block nested in a fenced body ends that
 * client when its savepoint is lost (internal/pg/transaction.ts), as it does on the app's own.
 */
export const uninterruptibleConnection = (conn: Connection): Connection => ({
  ...("pg" in conn ? { pg: (conn as { readonly pg: unknown }).pg } : {}),
  execute: (sql, params, transformRows) => Effect.uninterruptible(conn.execute(sql, params, transformRows)),
  executeRaw: (sql, params) => Effect.uninterruptible(conn.executeRaw(sql, params)),
  executeValues: (sql, params) => Effect.uninterruptible(conn.executeValues(sql, params)),
  executeUnprepared: (sql, params, transformRows) => Effect.uninterruptible(conn.executeUnprepared(sql, params, transformRows)),
  // A cursor, read chunk by chunk: interrupting it closes the cursor (no cancel is sent).
  executeStream: (sql, params, transformRows) => conn.executeStream(sql, params, transformRows)
})

const marked = new WeakSet<Connection>()

/**
 * Runs `body` with the fiber's transaction connection (if any) replaced by its
 * `uninterruptibleConnection`: every statement `body` sends inside the transaction, the app's in a
 * fenced body included, runs to its end even when `body` is interrupted (a timeout, a closing scope);
 * the interruption takes effect right after it.
 */
export const statementsRunToTheEnd = <A, E, R>(body: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.mapInputContext(body, (context: Context.Context<R>) => {
    const current = Context.getOption(context as Context.Context<never>, SqlClient.TransactionConnection)
    if (Option.isNone(current)) return context
    const [conn, depth] = current.value
    if (marked.has(conn)) return context
    const wrapped = uninterruptibleConnection(conn)
    marked.add(wrapped)
    return Context.add(context, SqlClient.TransactionConnection, [wrapped, depth] as const) as Context.Context<R>
  })

/**
 * Runs `body` with the fiber's transaction connection (if any) replaced by one that refuses every
 * statement once `body` has ended (`SqlError`, nothing sent). A fiber the body forked and left running
 * (`Effect.forkDaemon`, `Effect.forkScoped` in a work run's scope, `Effect.fork` until the fence's
 * own fiber ends) inherits that connection: a statement it sent later ran after the fence's last
 * check, before its `COMMIT` (`SET CONSTRAINTS ALL IMMEDIATE` there left the `COMMIT` unchecked), or
 * after it, outside any transaction, or inside whatever transaction the pool gave the connection to
 * next (another member's fenced block: it committed under that fence; an adversarial review).
 */
export const statementsWhileRunning = <A, E, R>(body: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.suspend(() => {
    let open = true
    const refused = () =>
      new SqlError({
        message: "modulo-group: a statement of a fenced body sent after the body had ended (from a fiber it forked " +
          "and left running?): refused, nothing sent. Join the fibers a fenced body forks before it returns"
      })
    const guard = <X>(run: () => Effect.Effect<X, SqlError>): Effect.Effect<X, SqlError> =>
      Effect.suspend((): Effect.Effect<X, SqlError> => (open ? run() : Effect.fail(refused())))
    return Effect.mapInputContext(body, (context: Context.Context<R>) => {
      const current = Context.getOption(context as Context.Context<never>, SqlClient.TransactionConnection)
      if (Option.isNone(current)) return context
      const [conn, depth] = current.value
      const revocable: Connection = {
        ...("pg" in conn ? { pg: (conn as { readonly pg: unknown }).pg } : {}),
        execute: (sql, params, transformRows) => guard(() => conn.execute(sql, params, transformRows)),
        executeRaw: (sql, params) => guard(() => conn.executeRaw(sql, params)),
        executeValues: (sql, params) => guard(() => conn.executeValues(sql, params)),
        executeUnprepared: (sql, params, transformRows) => guard(() => conn.executeUnprepared(sql, params, transformRows)),
        executeStream: (sql, params, transformRows) =>
          Stream.suspend(() => (open ? conn.executeStream(sql, params, transformRows) : Stream.fail(refused())))
      }
      // Marked as the connection it wraps is: nested fences keep its statements running to their end.
      if (marked.has(conn)) marked.add(revocable)
      return Context.add(context, SqlClient.TransactionConnection, [revocable, depth] as const) as Context.Context<R>
    }).pipe(Effect.ensuring(Effect.sync(() => {
      open = false
    })))
  })

/**
 * Runs `effect` in a fiber of its own and waits for it at most `timeout`: past it (or when the caller
 * is interrupted) the caller gets `onTimeout()` (or its interruption) at once, and the fiber is
 * interrupted in the background, which stops it at the next point between statements: a statement
 * already sent runs to its end (bounded on the server), a transaction then rolls back, nothing more
 * is sent. `effect`'s statements must be uninterruptible (`Effect.uninterruptible` around a single
 * statement, `statementsRunToTheEnd` inside a transaction).
 */
export const awaitAtMost = <A, E, E2, R>(
  effect: Effect.Effect<A, E, R>,
  timeout: Duration.DurationInput,
  onTimeout: () => E2
): Effect.Effect<A, E | E2, R> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(Effect.forkDaemon(restore(effect)), (fiber) =>
      restore(Effect.timeoutOption(Fiber.await(fiber), timeout)).pipe(
        Effect.onInterrupt(() => Fiber.interruptFork(fiber)),
        Effect.flatMap(Option.match({
          onNone: () => Effect.zipRight(Fiber.interruptFork(fiber), Effect.fail(onTimeout())),
          onSome: (exit): Effect.Effect<A, E | E2> => exit
        }))
      ))
  )
