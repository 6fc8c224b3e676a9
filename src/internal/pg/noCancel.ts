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
 * The `pg` client under a connection of the library's own wrapping, for `pgClientOf`: never a
 * property of the wrapper (an app's code holding the body's connection could reach it there and send
 * statements past every check: an adversarial review), and none once a body's connection is revoked.
 */
const clients = new WeakMap<Connection, () => unknown>()

/**
 * @effect/sql-pg's `pg.PoolClient` under `conn`, if any: through the library's wrappers (`clients`),
 * else `conn.pg` (@effect/sql-pg's own connection, or an app's proxy of one).
 */
export const pgClientOf = (conn: unknown): unknown => {
  const registered = typeof conn === "object" && conn !== null ? clients.get(conn as Connection) : undefined
  return registered !== undefined ? registered() : (conn as { readonly pg?: unknown } | undefined)?.pg
}

/**
 * `conn`, whose statements run to their end once sent, even when the fiber is interrupted. Its `pg`
 * client, if it has one (@effect/sql-pg's), stays reachable by `pgClientOf`: a fenced block nested in
 * a fenced body ends that client when its savepoint is lost (internal/pg/transaction.ts), as it does
 * on the app's own.
 */
export const uninterruptibleConnection = (conn: Connection): Connection => {
  const wrapped: Connection = {
    execute: (sql, params, transformRows) => Effect.uninterruptible(conn.execute(sql, params, transformRows)),
    executeRaw: (sql, params) => Effect.uninterruptible(conn.executeRaw(sql, params)),
    executeValues: (sql, params) => Effect.uninterruptible(conn.executeValues(sql, params)),
    executeUnprepared: (sql, params, transformRows) => Effect.uninterruptible(conn.executeUnprepared(sql, params, transformRows)),
    // A cursor, read chunk by chunk: interrupting it closes the cursor (no cancel is sent).
    executeStream: (sql, params, transformRows) => conn.executeStream(sql, params, transformRows)
  }
  clients.set(wrapped, () => pgClientOf(conn))
  return wrapped
}

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
 * The connections of fenced bodies (`statementsWhileRunning`): whether the body has ended (nothing is
 * sent on it any more), and `enter`, which registers a fenced block nested in the body that starts
 * while it runs (returning the `leave` to call at the block's end) and refuses one that starts after.
 */
interface Body {
  readonly ended: () => boolean
  readonly enter: () => (() => void) | undefined
}
const bodies = new WeakMap<Connection, Body>()

/**
 * The fenced body a fiber runs in (`statementsWhileRunning` provides it to the body, and so to the
 * fibers it forks): how a nested block finds it when the app has wrapped the body's connection (a
 * statement logger's proxy of it), which `bodies` does not know (a review).
 */
const CurrentBody = Context.GenericTag<Body>("modulo-group/internal/FencedBody")

/** Whether `conn` is a fenced body's connection whose body has ended: it sends nothing any more. */
export const isRevoked = (conn: Connection): boolean => bodies.get(conn)?.ended() === true

/**
 * Runs a fenced block nested on `conn` (the fiber's transaction connection): registered with the
 * fenced body it runs in, if any, for the whole block. A block that starts once that body has ended
 * fails at once (`refused`); the body's end finds one still running (`statementsWhileRunning`'s
 * `strays`).
 */
export const nestedIn = <A, E, R, E2>(
  conn: Connection | undefined,
  block: Effect.Effect<A, E, R>,
  refused: () => E2
): Effect.Effect<A, E | E2, R> =>
  Effect.flatMap(Effect.serviceOption(CurrentBody), (current) => {
    const enter = (conn === undefined ? undefined : bodies.get(conn)?.enter) ?? Option.getOrUndefined(current)?.enter
    if (enter === undefined) return block
    return Effect.uninterruptibleMask((restore) =>
      Effect.suspend((): Effect.Effect<A, E | E2, R> => {
        const leave = enter()
        if (leave === undefined) return Effect.fail(refused())
        return Effect.ensuring(restore(block), Effect.sync(leave))
      })
    )
  })

/**
 * Runs `body` with the fiber's transaction connection (if any) replaced by one that refuses every
 * statement once `body` has ended (`SqlError`, nothing sent). A fiber the body forked and left running
 * (`Effect.forkDaemon`, `Effect.forkScoped` in a work run's scope, `Effect.fork` until the fence's
 * own fiber ends) inherits that connection: a statement it sent later ran after the fence's last
 * check, before its `COMMIT` (`SET CONSTRAINTS ALL IMMEDIATE` there left the `COMMIT` unchecked), or
 * after it, outside any transaction, or inside whatever transaction the pool gave the connection to
 * next (another member's fenced block: it committed under that fence; an adversarial review).
 *
 * - Statements go one at a time (`turn`, below), and the body's end waits for the one that has the
 *   turn before the fence goes on: Effect's scheduler can pause a fiber between the check and the
 *   driver's send, and such a statement was sent after the fence's first commit-time check had run,
 *   past every check (a review: 0.5 s past the lease). The wait is for that one statement, which the
 *   fence's backstop ends.
 * - A stream (a cursor, read chunk by chunk) is refused in a body: `pg-cursor` keeps the backend
 *   waiting for the client with the transaction's locks held, which no server timeout ends before
 *   PostgreSQL 17 (a review: the group's changes held 6 s and more), and on 17+ its close on the
 *   ended session never returned.
 * - The connection's `pg` client is not on it (`pgClientOf` reaches it while the body runs, for a
 *   nested block's lost savepoint; never after).
 * - A fenced block nested in the body (`nestedIn`) that is still running when the body ends sets
 *   `strays.nestedStillRunning`: the fence then fails (`FenceBroken`), and nothing commits.
 */
export const statementsWhileRunning = <A, E, R>(
  body: Effect.Effect<A, E, R>,
  strays: { nestedStillRunning: boolean } = { nestedStillRunning: false }
): Effect.Effect<A, E, R> =>
  Effect.suspend(() => {
    let open = true
    let nested = 0
    // One statement of the body at a time: the driver queues them on the connection anyway, and each
    // one queued there got a statement timeout of its own once it ran, so that N of them held the
    // fence's locks N backstops (a review: 7.5 s for 5, with `timeout` 1 s). A statement waiting for
    // its turn checks the body again when it gets it, and the body's timeout stops it (nothing sent).
    const turn = Effect.unsafeMakeSemaphore(1)
    const refused = () =>
      new SqlError({
        message: "modulo-group: a statement of a fenced body sent after the body had ended (from a fiber it forked " +
          "and left running?): refused, nothing sent. Join the fibers a fenced body forks before it returns"
      })
    // The check is made once the statement has the turn, and the turn is held until it has landed.
    const guard = <X>(run: () => Effect.Effect<X, SqlError>): Effect.Effect<X, SqlError> =>
      turn.withPermits(1)(Effect.suspend((): Effect.Effect<X, SqlError> => (open ? run() : Effect.fail(refused()))))
    const close = Effect.zipRight(
      Effect.sync(() => {
        open = false
        // A fenced block nested in the body still running (a fiber the body forked ran it): what it
        // wrote, and whether its savepoint is still there, cannot be known from here (a review: one
        // whose body had rolled back past its savepoint committed with the outer block).
        if (nested > 0) strays.nestedStillRunning = true
      }),
      // The statement that has the turn lands first (those waiting for it are refused when they get it).
      turn.withPermits(1)(Effect.void)
    )
    return Effect.mapInputContext(body, (context: Context.Context<R>) => {
      const current = Context.getOption(context as Context.Context<never>, SqlClient.TransactionConnection)
      if (Option.isNone(current)) return context
      const [conn, depth] = current.value
      const revocable: Connection = {
        execute: (sql, params, transformRows) => guard(() => conn.execute(sql, params, transformRows)),
        executeRaw: (sql, params) => guard(() => conn.executeRaw(sql, params)),
        executeValues: (sql, params) => guard(() => conn.executeValues(sql, params)),
        executeUnprepared: (sql, params, transformRows) => guard(() => conn.executeUnprepared(sql, params, transformRows)),
        executeStream: () =>
          Stream.fail(
            new SqlError({
              message: "modulo-group: a stream (a cursor read chunk by chunk) is refused in a fenced body: it keeps the " +
                "transaction's locks with no server-side bound on PostgreSQL before 17. Read with a plain query, or " +
                "with DECLARE ... CURSOR and FETCH statements (each one bounded)"
            })
          )
      }
      clients.set(revocable, () => (open ? pgClientOf(conn) : undefined))
      const body: Body = {
        ended: () => !open,
        enter: () => {
          if (!open) return undefined
          nested++
          let left = false
          return () => {
            if (left) return
            left = true
            nested--
          }
        }
      }
      bodies.set(revocable, body)
      // Marked as the connection it wraps is: nested fences keep its statements running to their end.
      if (marked.has(conn)) marked.add(revocable)
      return Context.add(
        Context.add(context, SqlClient.TransactionConnection, [revocable, depth] as const),
        CurrentBody,
        body
      ) as Context.Context<R>
    }).pipe(Effect.ensuring(close))
  })

/**
 * Runs `effect` in a fiber of its own and waits for it at most `timeout`: past it (or when the caller
 * is interrupted) the caller gets `onTimeout()` (or its interruption) at once, and the fiber is
 * interrupted in the background, which stops it at the next point between statements: a statement
 * already sent runs to its end (bounded on the server), a transaction then rolls back, nothing more
 * is sent. `effect`'s statements must be uninterruptible (`Effect.uninterruptible` around a single
 * statement, `statementsRunToTheEnd` inside a transaction).
 *
 * `more`, asked when `timeout` has passed: how many milliseconds more to wait (0: none), e.g. for the
 * answer of a `COMMIT` already sent; `onTimeout` is then given how long that was.
 */
export const awaitAtMost = <A, E, E2, R>(
  effect: Effect.Effect<A, E, R>,
  timeout: Duration.DurationInput,
  onTimeout: (moreMs: number) => E2,
  more: () => number = () => 0
): Effect.Effect<A, E | E2, R> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(Effect.forkDaemon(restore(effect)), (fiber) => {
      const waitFor = (ms: Duration.DurationInput, moreMs: number): Effect.Effect<A, E | E2> =>
        restore(Effect.timeoutOption(Fiber.await(fiber), ms)).pipe(
          Effect.flatMap(Option.match({
            onNone: () => {
              const extra = moreMs === 0 ? Math.max(0, more()) : 0
              return extra > 0
                ? waitFor(Duration.millis(extra), extra)
                : Effect.zipRight(Fiber.interruptFork(fiber), Effect.fail(onTimeout(moreMs)))
            },
            onSome: (exit): Effect.Effect<A, E | E2> => exit
          }))
        )
      return waitFor(timeout, 0).pipe(Effect.onInterrupt(() => Fiber.interruptFork(fiber)))
    })
  )
