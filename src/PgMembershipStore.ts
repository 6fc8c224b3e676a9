/**
 * The PostgreSQL store. Leases are judged on the database clock (`statement_timestamp()`), unless
 * the store is built with `clock: "effect"`: then the time is passed in as a parameter, so tests
 * drive the real SQL with the `TestClock`.
 *
 * @since 0.1.0
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type * as Statement from "@effect/sql/Statement"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import { monotonicMillisOf } from "./internal/clock.js"
import * as Batcher from "./internal/pg/batcher.js"
import { describe, lockNotAvailable, sqlState } from "./internal/pg/errors.js"
import { awaitAtMost, statementsRunToTheEnd } from "./internal/pg/noCancel.js"
import * as Notifier from "./internal/pg/notifier.js"
import { canonicalMemberId, elsewhereError } from "./internal/memberId.js"
import { waitingRowLeaseMs } from "./internal/reassign.js"
import * as Statements from "./internal/pg/statements.js"
import * as Riders from "./internal/pg/riders.js"
import { ownReadCommitted } from "./internal/pg/transaction.js"
import * as Table from "./internal/slots/table.js"
import { defaults as MembershipConfigDefaults, maxDuration } from "./MembershipConfig.js"
import { DatabaseUnavailable, InstanceBusy, JoinDeferred, SchemaMismatch, SlotsMismatch, StoreError } from "./MembershipError.js"
import * as Metrics from "./MembershipMetrics.js"
import type { GroupRow, GroupView, MemberInfo, MemberRow, MembershipStoreService, SlotView, WaiterRow } from "./MembershipStore.js"
import { MembershipStore } from "./MembershipStore.js"
import * as Migrations from "./Migrations.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** `"database"` (production): leases on the database clock. `"effect"`: the Effect `Clock`, for tests. */
  readonly clock?: "database" | "effect" | undefined
  /** Apply pending migrations when the store starts (default true); otherwise a missing schema fails. */
  readonly migrate?: boolean | undefined
  /** How long to retry an unreachable database before failing (default 10 seconds). */
  readonly startupTimeout?: Duration.DurationInput | undefined
  /**
   * Timeout of each database call (default 2 seconds): the member stops waiting for an answer after
   * it, and the database ends the statement by the same bound (`statement_timeout`, `lock_timeout`
   * set local to its transaction or inside the statement); also bounds how long a change holds the
   * group lock. A statement is never cancelled from the client (docs/operations.md, "Connection poolers").
   * A change whose `COMMIT` was sent when the timeout passed is waited for once more as long: it may
   * have committed.
   */
  readonly statementTimeout?: Duration.DurationInput | undefined
  /**
   * Called before every statement an operation sends (`step` names it; `"commit"` precedes the
   * COMMIT of a change), for tests that interleave operations statement by statement; and with step
   * `"busy"` when a change found the group's lock held by another change and will try again (after
   * its rollback, before its backoff). A busy join's transaction under the lock shared: steps
   * `"share"` to `"share commit"`.
   */
  readonly onStatement?: ((operation: string, step: string) => Effect.Effect<void>) | undefined
  /**
   * For tests that run one member's operations from two stores (as `onStatement` interleaves them):
   * the id this store writes on the member rows (a uuid; default: a random one per store, which is
   * what tells one process's member from another's with the same member id, migration 0012). Stores
   * given one writer count as one process.
   */
  readonly writer?: string | undefined
  /**
   * The URL of the LISTEN connection (`layer` only), when the app's `PgClient` goes through a
   * connection pooler in transaction mode, where LISTEN cannot work: a direct connection to
   * PostgreSQL (or a session-mode pool). Default: the `PgClient`'s settings. Without it, behind such
   * a pooler, the notifier says so once and members poll (docs/operations.md, "Connection poolers").
   */
  readonly listenUrl?: string | Redacted.Redacted<string> | undefined
  /**
   * The `pg` pool the app's `PgClient` was made from (`PgClient.layerFromPool`), when it has one
   * connection (`max: 1`, `idleTimeoutMillis: 0`): the store then LISTENs on that connection instead
   * of opening one of its own, so a process needs one connection, not two (`layer` only; see
   * docs/operations.md, "Connections"). Ignored for any other pool, and with `listenUrl`.
   */
  readonly listenPool?: Notifier.ListenPool | undefined
}

const num = (v: unknown): number => (typeof v === "number" ? v : Number(v))

// SQLSTATE classes that retrying cannot fix: bad password or role, missing database, bad config.
const permanentCodes = new Set(["28000", "28P01", "3D000", "42501", "0A000"])

// Serialization failure, deadlock: the statement can simply be sent again.
const conflictCodes = new Set(["40001", "40P01"])

/** A change found the group's lock held by another change: rolled back, to be tried again. */
class LockBusy {
  readonly reason = "the group's lock is held by another change"
}

/**
 * A change found member rows missing (deleted by hand) that have not been missing for a lease yet
 * (`Statements.markMissing`): not made; nothing but the time they were found missing committed (the
 * change's transaction returns it, so that it commits, and fails with it after).
 */
class RowsMissing {
  constructor(readonly reason: string) {}
}

/**
 * What a busy join found under the lock shared (`busyJoin`): its join done (a change gave its
 * waiting row an index); `Try` the group's lock again (its row waits for a change that nobody is
 * making); or `Wait` (a change holds the lock: its commit decides).
 */
type Meanwhile<A> =
  | { readonly _tag: "Done"; readonly value: A }
  | { readonly _tag: "Try" }
  | { readonly _tag: "Wait" }

const tryLock: Meanwhile<never> = { _tag: "Try" }
const waitForChange: Meanwhile<never> = { _tag: "Wait" }

/** A join as a rider (internal/pg/riders.ts). */
interface JoinRide {
  readonly member: MemberInfo
  readonly leaseMs: number
  readonly overdueAfterMs: number | undefined
}

// A member id as the database writes a uuid back (canonical form), to match the rows of riders and of
// batched renewals (an id in braces or in upper case was told "no row" in a batch: it went Gone).
const uuidKey = canonicalMemberId

/**
 * Whether the change an operation runs has sent its `COMMIT` (set just before it is sent): read by the
 * operation's bound (`wrap`), which then waits for the answer rather than report a timeout.
 */
interface CommitWatch {
  sent: boolean
}
const commitWatch = FiberRef.unsafeMake<CommitWatch | undefined>(undefined)
const commitSending: Effect.Effect<void> = FiberRef.getWith(commitWatch, (commit) =>
  Effect.sync(() => {
    if (commit !== undefined) commit.sent = true
  }))

// The highest epoch the store counts to (`Statements.highestEpoch`), to compare the database's
// epochs (bigint text) with, exactly.
const highestEpoch = BigInt(Statements.highestEpoch)
const aboveHighest = (epoch: string): boolean => BigInt(epoch) > highestEpoch

/** Sleeps `millis` on the real clock: waiting for other transactions, which run on real time. */
const pause = (millis: number) =>
  Effect.async<void>((resume) => {
    const timer = setTimeout(() => resume(Effect.void), millis)
    return Effect.sync(() => clearTimeout(timer))
  })

/**
 * The planned cost of the members' heartbeats (EXPLAIN without ANALYZE: nothing runs), the single
 * and the batched form, with made-up ids: what JIT would compile them at (`prepare`).
 */
const heartbeatCost = (sql: SqlClient.SqlClient) => {
  const id = "00000000-0000-4000-8000-000000000000"
  const planned = (statement: Statement.Statement<unknown>) =>
    sql<{ "QUERY PLAN": ReadonlyArray<{ readonly Plan: { readonly "Total Cost": number } }> }>`EXPLAIN (FORMAT JSON) ${statement}`.pipe(
      Effect.map((rows) => rows[0]?.["QUERY PLAN"][0]?.Plan["Total Cost"] ?? 0)
    )
  return Effect.zipWith(
    planned(Statements.renewLease(sql, "-", id, 1, 1000, false, null, 1000, 1, id)),
    planned(Statements.renewLeases(sql, [{ memberId: id, groupId: "-", ack: 1, leaseMs: 1000, stuck: false, slots: false, seq: 1 }], id, null, 1000)),
    Math.max
  )
}

/** Why `session_replication_role = replica` is refused, at a store's start and at every change. */
const replicaWhy = "session_replication_role is replica in this connection's sessions (a default of the database or the " +
  "role, or the URL's options): PostgreSQL then fires no trigger, so the database's own checks of the group " +
  "(one member per index, the foreign keys, the fence's commit-time check) would not run."

/** Why a store refuses to start under `replica`. */
const replicaRefusal = `${replicaWhy} Members do not start; have a superuser run ALTER DATABASE ... RESET ` +
  "session_replication_role (or ALTER ROLE ...), or remove it from the options"

/**
 * Why a change refuses under `replica`, said to members already running: a session keeps the default
 * it was opened with, so a reset reaches only new sessions (a review, attack111: after the RESET the
 * process's one pooled connection, opened under `replica`, stayed, and a crashed member was never
 * reaped).
 */
const replicaChangeRefusal = `${replicaWhy} No change of the group (join, leave, reap) is made until it is reset: have a ` +
  "superuser run ALTER DATABASE ... RESET session_replication_role (or ALTER ROLE ...), then end the members' " +
  "sessions opened under it (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE ...; they reconnect) " +
  "or restart the members"

/**
 * Readies the schema: migrates (default) or checks it, retrying an unreachable database for a
 * bounded time with a log line per attempt.
 *
 * @since 0.1.0
 * @category constructors
 */
export const prepare = (options: Options = {}) =>
  Effect.gen(function*() {
    const startupTimeout = Duration.decode(options.startupTimeout ?? Duration.seconds(10))
    const attempt = (options.migrate ?? true) ? Effect.asVoid(Migrations.run) : Migrations.check
    // Said once, not per attempt (a server refusing connections to many starting members at once
    // would otherwise fill their logs), and again when it answered.
    let notReady = false
    // An attempt that waits without failing (a migration in another session, a `LOCK TABLE` on the
    // schema's tables, held in an open transaction): said once after a second of one attempt, not a
    // silent wait (a review: `join` printed nothing for as long as the lock was held).
    let saidSlow = false
    const sayingIfSlow = Effect.flatMap(
      Effect.fork(Effect.zipRight(
        Effect.sleep(Duration.seconds(1)),
        Effect.suspend(() => {
          if (saidSlow) return Effect.void
          saidSlow = true
          return Effect.logWarning(
            "modulo-group: the schema check has waited 1 s; another session may hold a lock on modulo_group's " +
              "tables (a migration running, or an open transaction that locked them), or the server is slow; still waiting"
          )
        })
      )),
      (slow) => Effect.ensuring(attempt, Fiber.interrupt(slow))
    )
    yield* sayingIfSlow.pipe(
      Effect.tapError((e) =>
        e._tag === "DatabaseUnavailable" && !notReady
          ? Effect.zipRight(
            Effect.sync(() => (notReady = true)),
            Effect.logWarning(`modulo-group: database not ready: ${e.reason}; retrying`)
          )
          : Effect.void
      ),
      Effect.retry({
        schedule: Schedule.exponential(Duration.millis(100)).pipe(
          Schedule.union(Schedule.spaced(Duration.seconds(2))),
          Schedule.upTo(startupTimeout)
        ),
        while: (e) => e._tag === "DatabaseUnavailable" && !permanentCodes.has(sqlState(e.cause) ?? "")
      }),
      Effect.tap(() => (notReady ? Effect.logWarning("modulo-group: database ready") : Effect.void))
    )
    const sql = yield* SqlClient.SqlClient
    // Triggers off in the members' sessions (`session_replication_role = replica`, a superuser's default
    // for the database or role): the database would no longer check one member per index, the
    // foreign keys or a fenced commit (fenced refuses it on its own). Members do not start (a review:
    // they ran, with every constraint's check off, and no check at start looked at the setting).
    const [settings] = yield* Statements.selectSessionSettings(sql).pipe(
      Effect.mapError((e) => new DatabaseUnavailable({ reason: `cannot read the session's settings: ${describe(e)}`, cause: e }))
    )
    if (settings?.role === "replica") {
      return yield* new DatabaseUnavailable({ reason: replicaRefusal })
    }
    // Planner methods turned off for the members' sessions (`ALTER DATABASE/ROLE ... SET enable_nestloop
    // = off`, the URL's options): the statements are planned for PostgreSQL's defaults. Said once,
    // loudly (a review: under enable_nestloop = off with JIT on, every heartbeat of a lone member was
    // compiled at each execution, 0.3 s of the server's CPU, 1-2 s under load: renewals missed their
    // deadlines and members fenced themselves). Nothing else depends on it.
    if (settings !== undefined && settings.disabled.length > 0) {
      yield* Effect.logWarning(
        `modulo-group: planner method(s) ${settings.disabled.join(", ")} turned off for the members' sessions (a default ` +
          "of the database or role, or the URL's options): the members' statements are planned for PostgreSQL's " +
          `defaults, and some cost far more so${settings.jit ? " (with JIT on, a statement costed past jit_above_cost is " +
            "compiled at every execution; changes and fenced transactions of their own turn JIT off for themselves, " +
            "heartbeats and fenced blocks inside an app's transaction cannot)" : ""}; ` +
          "heartbeats and fenced transactions may miss their deadlines and timeouts. Reset them for the " +
          "members' role (ALTER ROLE ... RESET ...) or give the members " +
          "a role of their own (docs/operations.md, \"Session defaults an operator may set\")"
      )
    }
    // JIT thresholds below what the members' heartbeats are planned at (`jit_above_cost = 0`, cost
    // settings raised, planner methods off): PostgreSQL compiles every heartbeat at each execution,
    // 20-30 times its cost (a review, attack85; no warning then). The heartbeat's plan read with
    // EXPLAIN (nothing runs); said once, loudly. A change and a fence of its own transaction turn JIT
    // off for themselves (`noJit` in statements.ts); a heartbeat is one statement and cannot.
    if (settings !== undefined && settings.jit && settings.jit_above_cost >= 0) {
      const cost = yield* heartbeatCost(sql).pipe(Effect.orElseSucceed(() => 0))
      if (cost > settings.jit_above_cost) {
        yield* Effect.logWarning(
          `modulo-group: the members' heartbeat is planned at cost ${Math.round(cost)}, above jit_above_cost ` +
            `(${settings.jit_above_cost}) with JIT on for the members' sessions: PostgreSQL compiles every heartbeat ` +
            "at each execution, many times its cost in the server's CPU, and renewals may miss their deadlines. Turn " +
            "JIT off for the members' role (ALTER ROLE ... SET jit = off), or reset jit_above_cost and the planner's " +
            "cost settings for it (docs/operations.md, \"Session defaults an operator may set\")"
        )
      }
    }
    // Schemas of the search path open to every role (docs/operations.md, "The members' search_path"):
    // said once as the store starts, loudly; nothing else depends on the answer.
    yield* Statements.selectOpenSchemas(sql).pipe(
      Effect.flatMap((rows) =>
        rows.length === 0 ? Effect.void : Effect.logWarning(
          `modulo-group: schema(s) ${rows.map((r) => JSON.stringify(r.schema)).join(", ")} of the members' search_path ` +
            "let every role CREATE objects: a function or operator planted there can run in the members' statements " +
            "and change what they decide (CVE-2018-1058). REVOKE CREATE ON SCHEMA ... FROM PUBLIC, or take the " +
            "schema out of the members' search_path (docs/operations.md, \"The members' search_path\")"
        )
      ),
      Effect.catchAllCause(() => Effect.void)
    )
  })

/**
 * The store's operations over the app's `SqlClient` and a `Notifier` (`layer` provides both).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}) => makeStore(options, false)

// `warmAtStart`: the layers, whose schema check has just opened a connection (see `startWarmUp`).
const makeStore = (options: Options, warmAtStart: boolean) =>
  Effect.gen(function*() {
    // The library's own statements read their rows by their own (snake_case) column names: without
    // the app's name transforms (`transformResultNames`, `transformQueryNames`; an adversarial review).
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const notifier = yield* Notifier.Notifier
    const statementTimeoutMs = Duration.toMillis(Duration.decode(options.statementTimeout ?? Duration.seconds(2)))
    // A change waits for a lock at most this long (behind fenced transactions, whose default timeout
    // is half the statement timeout), then rolls back and tries again: within its statement bound,
    // so that the server, not the client's timeout, ends the wait.
    const lockWaitMs = Math.max(1, Math.floor(statementTimeoutMs * 0.75))
    // How long a change keeps trying while the group's lock is busy before it fails: 64 joins at once
    // queue for a few seconds on a loaded server.
    const busyBudgetMs = Math.max(30_000, 15 * statementTimeoutMs)
    const useEffectClock = options.clock === "effect"
    const onStatement = options.onStatement ?? (() => Effect.void)

    // The order of this store's writes of a member's lease (joins, takeovers, renewals): renewals apply
    // only in that order (`Statements.renewLease`, migration 0010). Increasing in this store, which
    // is all a member id needs (one member, one store; a takeover gives the row a new member id). It
    // starts from the wall clock in microseconds, so a store's numbers are above those an earlier
    // process wrote. It cannot tell two stores apart (both count from the wall clock): `writer`, below,
    // does.
    let lastSeq = 0
    const nextSeq = (): number => (lastSeq = Math.max(lastSeq + 1, Date.now() * 1_000))

    // This store's id on the member rows it writes (migration 0012, `Statements.written`): member ids
    // must be unique, and a row of a member id that another store wrote (another process's member, the
    // id given twice against `MemberIdentity`'s contract) is never renewed, left, released, adopted or
    // deleted here: the join refuses it (its lease order above cannot tell two stores apart: both
    // count from the wall clock).
    const writer = options.writer ?? globalThis.crypto.randomUUID()

    // The store's clock, read once: every duration the store measures itself (the batcher's, a
    // missing row's wait, who renews here) is on its monotonic reading, the same for every caller
    // (members on clocks of their own, in tests, made a row missing for a lease at once).
    const clock = yield* Effect.clock
    const storeMillis = monotonicMillisOf(clock)

    // The time every statement judges leases by: the database's, or one passed in.
    const nowParam: Effect.Effect<string | null> = useEffectClock
      ? Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms).toISOString())
      : Effect.succeed(null)

    // How long a change whose COMMIT was sent when its bound fired waits for the answer (see `wrap`).
    let commitPatienceMs = statementTimeoutMs

    // Every operation's failures are store errors; `bounded`: whether the operation bounds its own
    // wait (the heartbeat, through the batcher), else it is bounded here.
    // `abandon`: called when the caller stops waiting (timeout, interruption) while the operation may
    // still run in the background (the riders its change took are freed then, `Riders.attempt`).
    const wrap = <A>(
      operation: string,
      effect: Effect.Effect<A, SqlError | StoreError | LockBusy | RowsMissing>,
      bounded = false,
      abandon?: () => void
    ) =>
      effect.pipe(
        Effect.mapError((cause) =>
          cause instanceof StoreError
            ? cause
            : new StoreError({
              operation,
              reason: cause instanceof LockBusy || cause instanceof RowsMissing ? cause.reason : describe(cause),
              cause
            })
        ),
        // A defect of the driver (a backend killed in the middle of a statement) is a store error too.
        Effect.catchAllDefect((cause) => Effect.fail(new StoreError({ operation, reason: describe(cause), cause }))),
        // On timeout or interruption, return at once, but never interrupt a statement (the driver
        // would cancel it with pg_cancel_backend, which behind a pooler can hit another client's
        // statement): the operation stops after the statement in flight, which its server-side bound
        // ends, and a transaction then rolls back, in the background (internal/pg/noCancel.ts).
        // A change whose COMMIT was sent when the bound fired is waited for one statement timeout
        // more (the server's bound on the COMMIT): it may have committed, and its caller, told it
        // timed out, would retry it as a second change (a join: the member's row deleted and inserted
        // again, a change every member acknowledges; a review, attack99: one member's id joined 8 times
        // in a row). A process stopped (SIGSTOP) with its COMMIT in flight lost it so: on SIGCONT its
        // timer fires before the answer, long there, is read. Its member's deadline counts from before
        // the attempt, whenever the answer comes. A COMMIT unanswered in that time doubles the wait
        // for the next (`commitPatienceMs`, up to four statement timeouts): answers that slow came
        // again and again, and each retry was a change that committed and was lost the same way (a
        // review, attack101: COMMIT's answer 1.2 s late against a 500 ms timeout, one member's id
        // joined 32 times in 40 s and never worked).
        (effect) =>
          bounded ? effect : Effect.suspend(() => {
            const commit: CommitWatch = { sent: false }
            return awaitAtMost(
              Effect.locally(effect, commitWatch, commit),
              statementTimeoutMs,
              (moreMs) => {
                abandon?.()
                if (moreMs === 0) return timedOut(operation, statementTimeoutMs)
                commitPatienceMs = Math.max(commitPatienceMs, Math.min(4 * statementTimeoutMs, 2 * moreMs))
                return new StoreError({
                  operation,
                  reason: `timed out after ${statementTimeoutMs} ms, and its COMMIT, sent, had no answer ${moreMs} ms later: ` +
                    `it may have committed (this store's next changes wait ${commitPatienceMs} ms for a COMMIT's answer; ` +
                    `if the database answers later than the statement timeout, raise statementTimeout)`
                })
              },
              () => commit.sent ? commitPatienceMs : 0
            )
          }).pipe((waited) => abandon === undefined ? waited : Effect.onInterrupt(waited, () => Effect.sync(abandon))),
        Effect.withSpan(`modulo-group.${operation}`, { kind: "client", attributes: { "db.system": "postgresql" }, captureStackTrace: false })
      )
    const timedOut = (operation: string, ms: number) => new StoreError({ operation, reason: `timed out after ${ms} ms` })

    // This store's changes of one group take turns here, first come first served, before they try
    // the group's lock: waiting for a turn holds no connection, and the next change begins as soon as
    // the one before it has committed, instead of finding the lock busy and sleeping a backoff (64
    // members of one process joining at once made ~10 attempts each, most of them while the lock was
    // free). A turn ends when its attempt ends or its caller stops waiting for it (`wrap`'s bound), so
    // a change that hangs on a dead connection delays the next by that bound at most, which then
    // finds the lock busy as before. Only an order among this process's own attempts: the group's
    // lock in the database stays the only arbiter.
    const turns = new Map<string, Effect.Semaphore>()
    const inTurn = <A, E>(groupId: string, attempt: Effect.Effect<A, E>): Effect.Effect<A, E> =>
      Effect.suspend(() => {
        let turn = turns.get(groupId)
        if (turn === undefined) {
          turn = Effect.unsafeMakeSemaphore(1)
          turns.set(groupId, turn)
        }
        return turn.withPermits(1)(attempt)
      })

    // A change queued behind others: the group's lock was busy (`LockBusy`, or a lock wait ran into
    // lock_timeout): held by another process's change (this store's own take turns, `inTurn`). The
    // transaction has rolled back and its connection is back in the pool; try again after a jittered
    // backoff (10 ms doubling, at most 100 ms), on the real clock. Not a failure, unless the lock
    // stays busy for `busyBudgetMs`.
    //
    // A join or a leave may pass `whileBusy` (see `busyJoin`, `busyLeave`): after a busy attempt it
    // waits the backoff or `wake` (the group's next notification: a change committed, the lock may be
    // free), whichever comes first, then runs `meanwhile`, which may finish the call (`Done`), or say
    // `Try` the lock again, or `Wait` (a change is under way: its commit decides, and is the next
    // wake-up), at most `maxWaits` times in a row.
    const maxWaits = 8
    const queued = <A>(
      operation: string,
      groupId: string,
      change: Effect.Effect<A, StoreError>,
      whileBusy?: { readonly meanwhile: Effect.Effect<Meanwhile<A>>; readonly wake: Effect.Effect<void> | undefined }
    ): Effect.Effect<A, StoreError> =>
      Effect.suspend(() => {
        const started = performance.now()
        let tries = 0
        const attempt = inTurn(groupId, change)
        const backoff = () => {
          const cap = Math.min(100, 10 * 2 ** Math.min(tries++, 4))
          return pause(cap / 2 + Math.random() * (cap / 2))
        }
        const overBudget = (e: StoreError) => {
          const waited = performance.now() - started
          return waited < busyBudgetMs ? undefined : Effect.fail(
            new StoreError({
              operation,
              reason: `the group's lock stayed busy for ${Math.round(waited)} ms (${e.reason})`,
              cause: e.cause
            })
          )
        }
        // Busy, with `whileBusy`: wait, then ask `meanwhile` whether to try the lock again.
        const waitThenTry = (e: StoreError, waits: number): Effect.Effect<A, StoreError> =>
          overBudget(e) ?? Effect.suspend(() => {
            const { meanwhile, wake } = whileBusy!
            return (wake === undefined ? backoff() : Effect.raceFirst(backoff(), wake)).pipe(
              Effect.zipRight(meanwhile),
              Effect.flatMap((next) =>
                next._tag === "Done"
                  ? Effect.succeed(next.value)
                  : next._tag === "Wait" && waits < maxWaits
                  ? waitThenTry(e, waits + 1)
                  : loop
              )
            )
          })
        const loop: Effect.Effect<A, StoreError> = Effect.catchIf(
          attempt,
          // A leave held by missing rows (`RowsMissing`) takes the busy path: its member has stopped,
          // and its lease may end without a change (`busyLeave`).
          (e) =>
            e.cause instanceof LockBusy || sqlState(e.cause) === lockNotAvailable ||
            (e.cause instanceof RowsMissing && operation === "leave"),
          (e) => {
            if (whileBusy === undefined) {
              return overBudget(e) ??
                onStatement(operation, "busy").pipe(Effect.zipRight(backoff()), Effect.zipRight(loop))
            }
            return onStatement(operation, "busy").pipe(Effect.zipRight(waitThenTry(e, 0)))
          }
        )
        return loop
      })

    // A change's transaction: READ COMMITTED whatever the database's or role's default isolation (a
    // change waits for the group lock and must then read the state that lock protects), and never part
    // of a caller's transaction. See internal/pg/transaction.ts.
    // Its statements run to their end even when the operation is interrupted (see `wrap`).
    const readCommitted = <A, E, R>(operation: string, body: Effect.Effect<A, E, R>) =>
      ownReadCommitted(
        sql,
        statementsRunToTheEnd(body),
        Effect.zipRight(onStatement(operation, "commit"), commitSending)
      )

    // A single statement outside a transaction: never interrupted once sent (see `wrap`).
    const single = Effect.uninterruptible

    // A member's waiter-row statements (`wait`, `stopWaiting`), one at a time, never cancelled: one
    // held up on the server by a table lock (taken as the statement is parsed, before its own
    // lock_timeout is set: a migration, a VACUUM FULL) keeps its connection until it ends, and a
    // second would take another (a review: six waits of one member emptied a pool of four, and a live
    // member's heartbeat timed out). While one is in flight the next is skipped: the rows serve
    // `status` only, and go stale on their own (`selectWaiters`).
    const waiterInFlight = new Set<string>()
    const oneWaiterStatement = (memberId: string, statement: Effect.Effect<unknown, SqlError>): Effect.Effect<void, SqlError> =>
      Effect.suspend(() => {
        const key = canonicalMemberId(memberId)
        if (waiterInFlight.has(key)) return Effect.void
        waiterInFlight.add(key)
        return single(Effect.ensuring(Effect.asVoid(statement), Effect.sync(() => void waiterInFlight.delete(key))))
      })

    // A single statement that, under a REPEATABLE READ or SERIALIZABLE default, waited on a change's
    // row lock (or met another SERIALIZABLE transaction) fails with 40001 where READ COMMITTED re-reads
    // the row: it is asked again in a READ COMMITTED transaction of its own; all that, three times at
    // most while it conflicts. Written out rather than as `Effect.retry`, whose schedule cost every
    // renewal about 17 KB of allocation though it hardly ever retries (docs/benchmarks.md).
    const isConflict = (e: SqlError) => conflictCodes.has(sqlState(e) ?? "")
    const singleAtReadCommitted = <A>(operation: string, statement: Effect.Effect<A, SqlError>): Effect.Effect<A, SqlError> => {
      const attempt = Effect.catchIf(single(statement), isConflict, () => readCommitted(operation, statement))
      const tries = (retries: number): Effect.Effect<A, SqlError> =>
        retries === 0 ? attempt : Effect.catchIf(attempt, isConflict, () => tries(retries - 1))
      return tries(2)
    }

    // A join's view of the group, read in its transaction: who has not acknowledged `at.epoch` yet and
    // the database clock (`Statements.selectJoinedView`); the index is the row's, unless given.
    const joinedView = (
      groupId: string,
      memberId: string,
      now: string | null,
      at: { readonly epoch: number; readonly size: number; readonly incarnation: number; readonly index?: number }
    ) =>
      Effect.gen(function*() {
        yield* onStatement("join", "view")
        const [me] = yield* Statements.selectJoinedView(sql, groupId, memberId, at.epoch, now)
        // The rows add up in a change: what a repair of a row found missing later waits out (`rowsOff`).
        const longestLeaseMs = longestOf(me!, 0)
        yield* Ref.update(longestWhole, HashMap.set(groupId, longestLeaseMs))
        return {
          epoch: at.epoch,
          size: at.size,
          index: at.index ?? me!.idx,
          acked: at.epoch,
          allAcked: num(me!.unacked) === 0,
          expired: false,
          incarnation: at.incarnation,
          clock: num(me!.clock_ms),
          longestLeaseMs
        } satisfies GroupView
      })

    // After a commit, best effort: a notification only wakes members sooner (G7), so a change or an
    // acknowledgement must never fail because it cannot be sent (a full notification queue, a role
    // that may not call pg_notify).
    const notify = (operation: string, groupId: string, payload: string) =>
      onStatement(operation, "notify").pipe(
        Effect.zipRight(single(Statements.notifyGroup(sql, groupId, payload, statementTimeoutMs))),
        (send) => awaitAtMost(send, statementTimeoutMs, () => "timed out" as const),
        Effect.catchAllCause((cause) =>
          Effect.logDebug(`modulo-group: notification not sent (members will find the change by polling)`, cause)
        )
      )

    // Inside a change transaction holding the group lock: reassign indices (keep index < N, fill
    // holes in join order; mirrors internal/reassign.ts), stamp every member row with the epoch and
    // size its index belongs to, bump the epoch. A new incarnation begins when no member survived
    // into this change (`fresh`). Two statements, both under the lock; then the change log's row
    // (`cause`, `subject`: who joined or left), for people only (migration 0004).
    const rebalance = (
      operation: string,
      groupId: string,
      now: string | null,
      epoch: number,
      fresh: boolean,
      cause: "join" | "leave" | "reap" | "repair",
      subject: string | null,
      slots: number | null,
      // Slots mode, a join: the joining member id, whose earlier row's slots get new generations.
      reissue: string | null = null
    ) =>
      Effect.gen(function*() {
        yield* onStatement(operation, "reassign")
        yield* Statements.reassignIndices(sql, groupId, epoch + 1, now)
        if (slots !== null) {
          // After the member rows, before the slot rows are read: the lock order of a fenced
          // transaction (member row, then slot rows). Before the reassignment, a fenced transaction
          // of a member whose index moves, waiting for one of those slots, deadlocked with the join
          // (test/explorer/slots.pg.test.ts).
          if (reissue !== null) {
            yield* onStatement(operation, "reissue")
            yield* Statements.reissueHeldSlots(sql, groupId, reissue, now)
          }
          yield* rebalanceSlots(operation, groupId, now, slots, reissue)
        }
        yield* onStatement(operation, "bump")
        const [g] = yield* Statements.bumpEpoch(sql, groupId, now, epoch + 1, fresh)
        yield* onStatement(operation, "log")
        yield* Statements.logChange(sql, groupId, cause, subject, now)
        return { epoch: num(g!.epoch), size: num(g!.size), incarnation: num(g!.incarnation) }
      })

    // Slots mode, inside a change holding the group lock (docs/slots.md, "A change"): read the slot
    // rows (locked against releases, see Statements.selectSlotsForChange) and the members in join
    // order, run the pure rule (Table.change: rebalance, then hand over at once the slots whose holder
    // is gone), and write the rows that changed in one UPDATE.
    // The group's slot rows must be exactly 0..S-1 (S: its slot count, fixed at creation): rows added
    // or deleted by hand would be handed out to members that map items by another count, or leave
    // items of no slot. Refused, the change fails and says why; nothing moves until an operator
    // repairs the rows (docs/slots.md, "Hand edits"). Migration 0019 refuses a change of the count.
    // `joining`: a join's member id (its row is among the live ones already).
    const rebalanceSlots = (operation: string, groupId: string, now: string | null, count: number, joining: string | null) =>
      Effect.gen(function*() {
        yield* onStatement(operation, "slots")
        const rows = yield* Statements.selectSlotsForChange(sql, groupId)
        if (rows.length !== count || rows.some((r, i) => num(r.slot) !== i)) {
          const numbers = rows.map((r) => num(r.slot))
          return yield* new StoreError({
            operation,
            reason: `group ${JSON.stringify(groupId)} has ${count} slots, but its slot rows are ${describeSlotRows(numbers)}` +
              ` (added or deleted by hand?): no change moves slots until they are exactly 0..${count - 1} again` +
              ` (docs/slots.md, "Hand edits")`
          })
        }
        yield* onStatement(operation, "order")
        const live = (yield* Statements.selectMemberOrder(sql, groupId)).map((r) => r.member_id)
        // A slot no member holds, in a group that had members before this change: no change leaves
        // one (a change hands every slot whose holder is gone to a live owner; a release, to its live
        // owner). Inserted by hand, it would go at once to this change's owner, beside members that
        // may work its items under another mode or count (an adversarial review, attack106: slot
        // rows inserted unheld into a live modulo-mode group, the guard passed by deleting and
        // putting back every member row around the edit; a slots-mode joiner worked them beside the
        // modulo-mode members until their next renewal, or 7 s with their rows locked). Refused.
        const joiningKey = joining === null ? null : uuidKey(joining)
        const unheld = rows.filter((r) => r.holder === null).map((r) => num(r.slot))
        if (unheld.length > 0 && live.some((id) => id !== joiningKey)) {
          return yield* new StoreError({
            operation,
            reason: `group ${JSON.stringify(groupId)} has members, but its slots ${describeSlotRows(unheld)} are held by ` +
              `nobody (inserted or edited by hand?): no change moves slots until an operator repairs them ` +
              `(docs/slots.md, "Hand edits")`
          })
        }
        const table: Table.SlotTable = rows.map((r) => ({ owner: r.owner, holder: r.holder, generation: num(r.generation) }))
        const next = Table.change(table, live).table
        const changed: Array<{ slot: number; owner: string | null; handTo: string | null | undefined }> = []
        next.forEach((row, slot) => {
          const before = table[slot]!
          if (row === before) return
          changed.push({
            slot: rows[slot]!.slot,
            owner: row.owner,
            handTo: row.generation !== before.generation ? row.holder : undefined
          })
        })
        if (changed.length === 0) return
        yield* onStatement(operation, "handoff")
        yield* Statements.updateSlots(sql, groupId, changed, now)
      })

    // Every membership change: one transaction that first takes the group row lock (the arbiter).
    // `body` gets the epoch to build on, whether the epochs were found behind an acknowledgement, and
    // the group row's size and incarnation.
    // A fresh connection's first change. A new server process (backend) loads its catalog caches, the
    // PL/pgSQL library and `log_change`'s plans on the first statements it runs: on this machine a
    // process's first join spent 20-60 ms more on the server than the same join on a warm connection
    // (docs/benchmarks.md, "A fresh connection's first change"), all of it under the group's lock,
    // while the other members waited to renegotiate. So the store runs a change's statements once, on
    // a group and a member that do not exist, in a transaction it rolls back (nothing is written, no
    // lock of any group is taken; an error, a read-only server, a timeout are ignored: it is only a
    // warm-up), and its first join waits for that to end, at most a statement timeout (not counted in
    // the join's own), before it takes a connection: the warm one, which the pool hands out next (most
    // recently used first). Started by the layers as the store starts (`warmAtStart`), in the
    // background, once their schema check has opened a connection and had its answer: the warm-up then
    // opens none of its own. Otherwise (`make`) by the first join: a store made and never used opens no
    // connection (it did once, and an app's pool with no connect timeout, against a server that never
    // answered, could not be closed: an adversarial review). It moves that cost out of the group's
    // lock, not out of the process's start: a join asked for at once waits for the warm-up.
    class WarmedUp {}
    const warmed = yield* Deferred.make<void>()
    let warmUpStarted = false
    const startWarmUp: Effect.Effect<void> = Effect.suspend(() => {
      if (warmUpStarted) return Effect.void
      warmUpStarted = true
      return Effect.asVoid(Effect.forkDaemon(
        Effect.gen(function*() {
          const now = yield* nowParam
          const scratchGroup = `modulo-group warm-up ${globalThis.crypto.randomUUID()}`
          const scratchMember = globalThis.crypto.randomUUID()
          yield* ownReadCommitted(
            sql,
            Effect.gen(function*() {
              yield* Statements.boundTransaction(sql, statementTimeoutMs)
              yield* Statements.selectGroupForUpdate(sql, scratchGroup, now)
              yield* Statements.deleteExpiredAndOwnRow(sql, scratchGroup, scratchMember, writer, now)
              yield* Statements.reassignIndices(sql, scratchGroup, 1, now)
              yield* Statements.bumpEpoch(sql, scratchGroup, now, 1, false)
              yield* Statements.logChange(sql, scratchGroup, "join", scratchMember, now)
              yield* Statements.selectJoinedView(sql, scratchGroup, scratchMember, 1, now)
              yield* Statements.renewLease(
                sql, scratchGroup, scratchMember, 1, 1, false, now, statementTimeoutMs, nextSeq(), writer
              )
              return yield* Effect.fail(new WarmedUp())
            })
          )
        }).pipe(
          statementsRunToTheEnd,
          Effect.catchAllCause(() => Effect.void),
          Effect.ensuring(Deferred.succeed(warmed, undefined))
        )
      ))
    })
    if (warmAtStart) yield* startWarmUp
    let warm = false
    const warmedUp: Effect.Effect<void> = Effect.suspend(() =>
      warm ? Effect.void : Effect.zipRight(startWarmUp, Effect.raceFirst(Deferred.await(warmed), pause(statementTimeoutMs))).pipe(
        Effect.ensuring(Effect.sync(() => void (warm = true)))
      )
    )

    // `holds`: whether the change may reassign indices (a join, a leave, a reap; not a release), and
    // so waits while member rows are missing (`RowsMissing`).
    const change = <A, E, R>(
      operation: string,
      groupId: string,
      now: string | null,
      body: (
        epoch: number,
        behind: boolean,
        group: { readonly size: number; readonly incarnation: number; readonly slots: number | null }
      ) => Effect.Effect<A, E, R>,
      holds = true
    ) =>
      Effect.flatMap(readCommitted(
        operation,
        Effect.gen(function*() {
          // Server-side bounds, then the group's advisory lock, which fenced transactions take shared:
          // it queues fairly, where their row share locks alone would let overlapping ones starve the
          // FOR UPDATE below. Tried without waiting: behind another change, roll back and try again
          // (`queued`) rather than hold a connection while changes ahead of this one commit; behind
          // fenced transactions only, wait in the queue (see Statements.tryLockGroup).
          yield* onStatement(operation, "lock")
          const [lock] = yield* Statements.tryLockGroup(sql, groupId, now, statementTimeoutMs, lockWaitMs)
          if (lock?.replica === true) return yield* new StoreError({ operation, reason: replicaChangeRefusal })
          if (lock?.locked !== true) {
            if (lock?.changing !== false) return yield* Effect.fail(new LockBusy())
            yield* onStatement(operation, "wait")
            yield* Statements.lockGroup(sql, groupId, now)
          }
          // The arbiter: the group row lock. Never below an epoch a member has acknowledged (an epoch
          // moved back by hand, a restored backup): that also starts a new incarnation.
          yield* onStatement(operation, "group")
          const [g] = yield* Statements.selectGroupForUpdate(sql, groupId, now)
          // Epochs are JavaScript numbers here: past 2^53 `epoch + 1` rounds back, and the change would
          // write the group's epoch again with a new assignment (one token for two). Only a hand edit
          // gets there (2^52 changes at a thousand a second take 142,000 years): refuse every change
          // that would write an epoch above the highest (from the highest itself too: a change from
          // 2^52 - 1 wrote 2^52, which no member takes a view from, a review), saying why, and let the
          // members wait rather than work under a reissued epoch.
          if (BigInt(g!.epoch) >= highestEpoch) {
            return yield* new StoreError({
              operation,
              reason: `the group's epoch is ${g!.epoch}, at or above ${Statements.highestEpoch} (2^52 - 1), the highest ` +
                `modulo-group counts to: set by hand? No change of this group (join, leave, reap) can be made until ` +
                `an operator repairs it (docs/operations.md, "An epoch set out of range")`
            })
          }
          // Indices no member row holds (rows deleted by hand, indices set out of range; outside a
          // change no statement of the library deletes a row or moves an index): the rows' members
          // may still work them until their own deadlines, which came before the edit. No change
          // that would give those indices to others until they have been missing for the longest
          // lease of the group's rows, as the first change that found them missing recorded it
          // (`Statements.markMissing`). Before, a join, a leave or a reap made meanwhile reassigned
          // at once (an adversarial review: 1.4 s of two epochs at once). On the database's clock,
          // as leases are.
          // Slots mode: slots held by a member id that no row has (a row deleted, or its member id
          // changed, by hand), as -1 - slot. The change that deletes a holder's row hands its slots over
          // itself, so one found at a change's start was not let go by its holder: its member may still
          // work it until its own deadline. Handed over at once, it ran twice (an adversarial review: a
          // row whose member id was changed by hand, 2.1-2.4 s of two holders). Waited out as an index is.
          const orphans = holds && g!.slots !== null
            ? (yield* Statements.selectOrphanSlots(sql, groupId))[0]?.orphans ?? []
            : []
          const missing = [...(g!.missing ?? []), ...orphans]
          if (holds && missing.length > 0) {
            // The record as a change left it, unless edited by hand: an age that is not a finite
            // non-negative number (a time ahead of now, or infinity), or a wait that is not one
            // (null, NaN, negative: each switched the wait off, an adversarial review), is no record.
            const left = missingWait(missing, { sinceMs: g!.missing_ms, waitMs: g!.missing_wait_ms, indices: g!.missing_was })
            let waitMs: number
            let heldMs: number
            if (Option.isNone(left)) {
              // The longest lease of the group's rows: as its last change left them, of the rows
              // now, and as this process has read them (each only if a number: NaN set by hand took
              // the wait off); none of them only when no row is left in a group no change has made
              // since migration 0015: then the default lease.
              const known = [sane(g!.lease_ms), sane(g!.rows_lease_ms), Option.getOrUndefined(HashMap.get(yield* Ref.get(longestWhole), groupId))]
                .filter((ms): ms is number => ms !== undefined)
              waitMs = Math.min(
                Duration.toMillis(maxDuration),
                known.length === 0 ? Duration.toMillis(MembershipConfigDefaults.lease) : Math.max(...known)
              )
              heldMs = waitMs
              yield* onStatement(operation, "missing")
              yield* Statements.markMissing(sql, groupId, now, waitMs, missing)
            } else {
              waitMs = Math.min(Duration.toMillis(maxDuration), num(g!.missing_wait_ms))
              heldMs = left.value
            }
            if (heldMs > 0) {
              const indices = missing.length - orphans.length
              return new RowsMissing(
                [
                  ...(indices > 0 ? [`${indices} of the ${g!.size} indices of group "${groupId}" have no member row`] : []),
                  ...(orphans.length > 0
                    ? [`${orphans.length} slot(s) of group "${groupId}" are held by a member id no row has`]
                    : [])
                ].join(", and ") +
                  ` (deleted or changed by hand?): their members may still work them until their own deadlines. No ` +
                  `join, leave or reap is made until they have been missing for the longest lease of the group's rows ` +
                  `(${Math.round(waitMs)} ms) (docs/operations.md, "A member row deleted by hand")`
              )
            }
          } else if (holds && (g!.missing_ms !== null || g!.missing_wait_ms !== null || g!.missing_was !== null)) {
            // They add up again without a change (a row put back by hand): forget them.
            yield* onStatement(operation, "missing")
            yield* Statements.markMissing(sql, groupId, now, 0, null)
          }
          const epoch = num(g!.epoch)
          const acked = num(g!.acked)
          return yield* body(Math.max(epoch, acked), acked > epoch, {
            size: num(g!.size),
            incarnation: num(g!.incarnation),
            slots: g!.slots === null ? null : num(g!.slots)
          })
        })
      ), (result) => result instanceof RowsMissing ? Effect.fail(result) : Effect.succeed(result as A))

    // A member's renewal alone (`Statements.renewLease`): for a member whose row a batch found locked
    // (a change in progress): it waits for the lock, within its bound, and reads its row as the
    // change left it (the stamp rule, see `toView`).
    // `lockWaitMs`: how long it may wait for its row (default: the statement timeout).
    const renewAlone = (req: Statements.RenewalRequest, now: string | null, lockWaitMs = statementTimeoutMs) => {
      const renewal = Statements.renewLease(
        sql, req.groupId, req.memberId, req.ack, req.leaseMs, req.stuck, now, lockWaitMs, req.seq, writer, req.slots,
        req.ackCurrent === true, req.ackPlace
      )
      return Effect.map(singleAtReadCommitted("heartbeat", renewal), ([r]) => r)
    }

    // The heartbeats of this store's members, any groups, in one statement per batch
    // (internal/pg/batcher.ts, Statements.renewLeases). Each answer carries whether its member is the
    // one to announce a barrier this batch completed (one notification per group and batch). A member
    // whose row was locked by a change in progress renews alone next (`renewAlone`). One renewal of a
    // member on the server at a time: the batcher keeps a member's next request until the one in
    // flight has ended, or for `2 × statementTimeout` at most (then its connection is taken for dead;
    // should the older one still reach the row, it writes nothing: `renewal_seq`, `Statements.renewLease`).
    interface Renewal extends Statements.RenewalRequest {
      readonly announce: boolean
    }
    interface Renewed {
      readonly row: Statements.RenewedRow | undefined
      readonly announce: boolean
    }
    const completes = (r: Statements.RenewedRow, announce: boolean) =>
      barrierDown(r) && (num(r.prev_acked ?? 0) < num(r.epoch) || announce)
    // A renewal's answer from `renewLease`'s row (none: no live row).
    const answer = (req: Renewal, row: Statements.RenewedRow | undefined): Renewed => ({
      row,
      announce: row !== undefined && completes(row, req.announce)
    })
    const alone = (req: Renewal, now: string | null): Batcher.Outcome<Renewed, SqlError | StoreError> => ({
      _tag: "Alone",
      effect: Effect.map(renewAlone(req, now), (row) => answer(req, row))
    })
    // Members that renewed through this store, each until its lease would run out (`sharesHeartbeatsNow`).
    const renewers = new Map<string, number>()
    const batcher = Batcher.make<Renewal, Renewed, SqlError | StoreError>(
      (reqs) =>
        Effect.gen(function*() {
          const now = yield* nowParam
          // A batch of one (a process of one member, most of the time) is the single-member statement,
          // which the server plans and runs in about a third of the batch statement's time. Like the
          // batch, it does not wait for a row a change holds: a lock wait of more than 1 ms ends it
          // (nothing written) and the member renews alone next, waiting for the lock as always; so a
          // lone renewal never holds the process's next batch back behind a change.
          if (reqs.length === 1) {
            const req = reqs[0]!
            return yield* renewAlone(req, now, 1).pipe(
              Effect.map((row): ReadonlyArray<Batcher.Outcome<Renewed, SqlError | StoreError>> => [{ _tag: "Done", value: answer(req, row) }]),
              Effect.catchIf((e) => sqlState(e) === lockNotAvailable, () => Effect.succeed([alone(req, now)]))
            )
          }
          const statement = Statements.renewLeases(sql, reqs, writer, now, statementTimeoutMs)
          // As `renewAlone` (a batch never waits for a row lock, but may meet a SERIALIZABLE one).
          const rows = yield* singleAtReadCommitted("heartbeat", statement)
          // By the id's canonical form: the statement returns `member_id::text`, lower case, whatever
          // case the caller's id was in (an upper-case id's answer was lost: its member went Gone).
          const byMember = new Map(rows.map((r) => [uuidKey(r.member_id), r]))
          const announced = new Set<string>()
          return reqs.map((req): Batcher.Outcome<Renewed, SqlError | StoreError> => {
            const r = byMember.get(uuidKey(req.memberId))
            if (r?.busy === true) return alone(req, now)
            if (r === undefined || !r.ok) return { _tag: "Done", value: { row: undefined, announce: false } }
            const row = r as unknown as Statements.RenewedRow
            const announce = !announced.has(req.groupId) && completes(row, req.announce)
            if (announce) announced.add(req.groupId)
            return { _tag: "Done", value: { row, announce } }
          })
        }).pipe(
          // Never inside a caller's transaction: a batch carries other members' renewals. (Taken out
          // only when there is one: a new context for every batch cost about 12 KB of allocation.)
          (batch) =>
            Effect.contextWithEffect((context: Context.Context<never>) =>
              Option.isNone(Context.getOption(context, SqlClient.TransactionConnection))
                ? batch
                : Effect.mapInputContext(batch, Context.omit(SqlClient.TransactionConnection))
            )
        ),
      // The store's clock (the TestClock in tests), not each caller's.
      { flightMs: statementTimeoutMs, patienceMs: 2 * statementTimeoutMs, clock }
    )

    const deleteExpired = (operation: string, groupId: string, now: string | null, epoch: number | null = null) =>
      Effect.zipRight(onStatement(operation, "reap"), Statements.deleteExpired(sql, groupId, now, epoch))

    // Static rows whose rejoin grace ran out (deleted by a reap, a leave or a join), and takeovers.
    const countGraceExpiries = (groupId: string, n: number) =>
      n > 0 ? Metric.update(Metrics.graceExpiries.pipe(Metric.tagged("group", groupId)), n) : Effect.void

    // Rows that no longer add up to the group's size were edited by hand. A surplus is repaired at
    // once (a new row must acknowledge before anyone starts). A missing row is repaired only after it
    // has been missing for a lease: its member, if alive, may still be working; by then it has seen
    // its row gone and stopped (or rejoined, which repairs it), or its lease would have run out. The
    // lease is the longest of the member's own and those of the group's rows as the last view that
    // found them all read them (`longestWhole`): the missing row's member may run with a longer one
    // (an adversarial review: members of lease 2 s repaired, and started a new epoch, 2 s after a row
    // of lease 20 s was deleted, while its member still worked).
    // `missingSince`: per group, since when (the store's monotonic clock, ms: on the wall clock a step
    // forward repaired at once, while the missing row's member could still work) a row has been found
    // missing, and how long to wait.
    const missingSince = yield* Ref.make(HashMap.empty<string, { readonly since: number; readonly waitMs: number }>())
    const longestWhole = yield* Ref.make(HashMap.empty<string, number>())
    const rowsOff = (groupId: string, rows: number, size: number, leaseMs: number, longestMs: number) =>
      Effect.flatMap(Effect.zip(storeMillis, Ref.get(longestWhole)), ([nowMs, longest]) => {
        if (rows >= size) {
          return Effect.zipRight(
            Ref.update(longestWhole, HashMap.set(groupId, longestMs)),
            Ref.modify(missingSince, (missing) => [rows > size, HashMap.remove(missing, groupId)] as const)
          )
        }
        return Ref.modify(missingSince, (missing) => {
          const known = HashMap.get(missing, groupId)
          const off = Option.getOrElse(known, () => ({
            since: nowMs,
            waitMs: Math.max(leaseMs, Option.getOrElse(HashMap.get(longest, groupId), () => 0))
          }))
          // Also when first found: the reap it asks for records in the database since when the rows
          // are missing (`Statements.markMissing`), which holds every change until then.
          return [Option.isNone(known) || nowMs - off.since >= off.waitMs, HashMap.set(missing, groupId, off)] as const
        })
      })

    // One view from one committed state. The UPDATE reads this member's row at its newest version
    // (after waiting for a change that locked it), the rest of the statement from the statement's
    // snapshot. A change stamps every row it keeps with its epoch and size, so when the row's stamp
    // is the group row's epoch, every part of the statement comes from the same state. When the row
    // is newer (a change committed while this statement waited), only the row's own epoch, size and
    // index are known together: the barrier is reported up, and the member asks again.
    const toView = (groupId: string, r: Statements.RenewedRow, leaseMs: number) => {
      const longestLeaseMs = longestOf(r, leaseMs)
      return Effect.map(rowsOff(groupId, num(r.rows), num(r.size), leaseMs, longestLeaseMs), (off): GroupView => {
        const rowEpoch = num(r.assigned_epoch)
        const epoch = num(r.epoch)
        const whole = wholeState(r)
        return {
          epoch: Math.max(rowEpoch, epoch),
          size: rowEpoch > epoch ? num(r.assigned_size) : num(r.size),
          index: num(r.idx),
          acked: num(r.acked),
          allAcked: barrierDown(r),
          // A row stamped below the group's epoch was written by hand or by an older release: a
          // reap restamps every row. One stamped above it whose member had acknowledged above it
          // before this renewal (its row as the statement's snapshot read it): the group row went
          // back (a restore of `groups` alone), and only a change moves it past them: before, no
          // view was whole, nobody reaped, and a crashed member's index stayed unworked (a review,
          // attack90). Not a renewal that waited for a change's row lock (its row stamped by that
          // change, the group read as before it): its row had acknowledged nothing above the group then.
          expired: whole ? num(r.expired) > 0 || off : rowEpoch < epoch || (rowEpoch > epoch && num(r.prev_acked ?? 0) > epoch),
          incarnation: num(r.incarnation),
          clock: num(r.clock_ms),
          longestLeaseMs,
          ...(r.slots === null ? {} : { slots: toSlotView(num(r.slots), r.held, r.pending) })
        }
      })
    }

    // A busy join: the group's lock was held by another process's change (this store's own changes
    // take turns, `inTurn`). Under the lock **shared** (`tryShareGroup`; no change runs meanwhile),
    // the joiner takes the index a change has given the waiting row it left before (`adoptRow`: its
    // join, without a change of its own), or leaves or renews that waiting row (`deferJoin`). The next
    // change, whoever makes it, gives every waiting row an index (`reassignIndices`): a burst of joins
    // from many processes is admitted by a few changes, in a few epochs, instead of one change and one
    // epoch each, and each joiner then takes its index under the shared lock, concurrently. Only in
    // modulo mode and without an instance id (a takeover is decided under the lock), in a group that
    // exists and is not found behind an acknowledgement (the next change sorts that out). Best
    // effort: a failure, or the shared lock not got, only means the next attempt at the lock decides.
    // The group's lock stays the only arbiter of every change.
    const busyJoin = (
      groupId: string,
      member: MemberInfo,
      leaseMs: number,
      registered: { value: boolean },
      overdueAfterMs: number | undefined
    ): Effect.Effect<Meanwhile<GroupView>> =>
      wrap(
        "join",
        Effect.flatMap(nowParam, (now) =>
          ownReadCommitted(
            sql,
            statementsRunToTheEnd(Effect.gen(function*() {
              yield* onStatement("join", "share")
              const [lock] = yield* Statements.tryShareGroup(sql, groupId, statementTimeoutMs)
              if (lock?.locked !== true) return waitForChange
              const [g] = yield* Statements.selectBusyJoin(sql, groupId, member.memberId, writer, now)
              if (g === undefined || g.slots !== null) return tryLock
              const epoch = num(g.epoch)
              if (num(g.acked) > epoch || (g.row_group !== null && g.row_group !== groupId)) return tryLock
              if (g.idx !== null) {
                // Only the waiting row this join left: any other row of this member is the change's to drop.
                if (!registered.value || num(g.assigned_epoch) !== epoch || g.live !== true) return tryLock
                yield* onStatement("join", "adopt")
                // A busy join is never a static member's (those joins are not coalesced): no rejoin grace.
                const [own] = yield* Statements.adoptRow(sql, groupId, member.memberId, epoch, leaseMs, now, nextSeq(), writer, 0)
                if (own === undefined) return tryLock
                const value = yield* joinedView(groupId, member.memberId, now, {
                  epoch,
                  size: num(own.assigned_size),
                  index: num(own.idx),
                  incarnation: num(g.incarnation)
                })
                return { _tag: "Done", value } as const
              }
              yield* onStatement("join", "defer")
              // The row runs out an overdue threshold plus a lock wait after this (the joiner touches
              // it again within a lock wait: its turn, or this path once more), not its whole lease:
              // a joiner that dies while it waits holds a change that promoted its row that long at
              // most (a review, attack94: a deferred joiner's poll that came this way re-leased its
              // row for the whole lease, and its death held every survivor at the barrier 19.8 s).
              const [waiting] = yield* Statements.deferJoin(sql, groupId, member, epoch, leaseMs, now, nextSeq(), writer, null, waitingRowLeaseMs(leaseMs, overdueAfterMs, lockWaitMs))
              if (waiting !== undefined) registered.value = true
              // Its row waits for a change: nobody makes one now (the lock was free), so try.
              return tryLock
            })),
            Effect.zipRight(onStatement("join", "share commit"), commitSending)
          ))
      ).pipe(Effect.orElseSucceed(() => tryLock))

    // A leave that found the group's lock busy: it waits its turn as any change, for half a
    // statement timeout. Still busy then (a mass shutdown: every leave a change of its own, each
    // waiting its turn, most of them past the final leave's budget, the statement timeout), it ends
    // its own lease instead (`Statements.expireLease`, one statement, no lock): its member has
    // stopped working. It tries the lock once more (its own change then deletes its row and every
    // expired one), and is done if that is busy too. The next change (the reap the others' renewals
    // ask for, or any change) deletes its row with every other one that ended so: one change for
    // many leaves. Its notification wakes the others. It waits its turn as before when the statement
    // changed nothing (a static member, slots mode, no row) or failed. A few leaves at once (a small
    // group shut down) still each make their change; only a group left by everyone at once that way
    // keeps rows with their lease ended until its next change (`status` shows them expired).
    const busyLeave = (groupId: string, memberId: string): Effect.Effect<Meanwhile<boolean>> => {
      const since = performance.now()
      // The leave's place in this store's order of lease writes: its expireLease ends only a row
      // written before it (`Statements.expireLease`), never a later life's row of the same id.
      const leaveSeq = nextSeq()
      // Its lease ended; or the statement found no row to end (then not asked again).
      let expired = false
      let noRow = false
      const expire = wrap(
        "leave",
        Effect.gen(function*() {
          const now = yield* nowParam
          yield* onStatement("leave", "expire")
          const statement = Statements.expireLease(sql, groupId, memberId, writer, now, statementTimeoutMs, leaveSeq)
          const rows = yield* singleAtReadCommitted("leave", statement)
          if (rows.length === 0) {
            noRow = true
            return
          }
          expired = true
          yield* notify("leave", groupId, "leave")
        })
      ).pipe(Effect.ignore)
      return Effect.suspend((): Effect.Effect<Meanwhile<boolean>> =>
        expired
          ? Effect.succeed({ _tag: "Done", value: true })
          : noRow || performance.now() - since < statementTimeoutMs / 2
          ? Effect.succeed(tryLock)
          : Effect.as(expire, tryLock)
      )
    }

    // The group's next notification, for a busy join: a change committed, so the lock may be free.
    // Anyone can notify (docs/reliability.md, "forged notifications"): a wake-up only brings the next
    // attempt forward, and at most `wakeBurst` times in a row (one more per `wakeRefillMs`); past
    // that the backoff alone paces the attempts, as without notifications.
    const wakeBurst = 8
    const wakeRefillMs = 50
    const wakeOf = (groupId: string) =>
      Effect.gen(function*() {
        const pull = yield* Effect.flatMap(notifier.wakeups(groupId), Stream.toPull)
        let tokens = wakeBurst
        let refilledAt = performance.now()
        return Effect.suspend(() => {
          const t = performance.now()
          tokens = Math.min(wakeBurst, tokens + (t - refilledAt) / wakeRefillMs)
          refilledAt = t
          if (tokens < 1) return Effect.never
          tokens -= 1
          return Effect.ignore(pull)
        })
      })

    // Joins and leaves that ride along the change of the one whose turn it is (internal/pg/riders.ts):
    // a join rides with its member and lease, and only a plain one (modulo mode, no instance id) with
    // the same overdue rule as the join that takes it, which has checked that rule under the lock.
    const joinRiders = Riders.make<JoinRide, GroupView>()
    // A leave rides with its member id; its result: whether its row was there.
    const leaveRiders = Riders.make<string, boolean>()
    // A reap rides with nothing: the change that takes it reaps for it (after the take, under the
    // lock); its result is 0 (the count is the taker's, which logs it).
    const reapRiders = Riders.make<null, number>()
    // A call found taken along by a change in progress at its turn: it waits for that change's
    // outcome as behind a busy lock (`queued`).
    const takenAlong = (operation: string) =>
      new StoreError({ operation, reason: "taken along by a change in progress", cause: new LockBusy() })
    // A rider's turn: done when a change took it along, waiting while one has it taken (as behind a
    // busy lock), else its own change. A join or a leave adds its busy path (`busyJoin`, `busyLeave`),
    // which the same rules guard; its own attempts (its change, its busy path) keep it from being
    // taken while they run.
    const turnOrRide = <In, Out>(
      operation: string,
      groupId: string,
      self: Riders.Rider<In, Out>,
      ownChange: Effect.Effect<Out, StoreError>,
      whileBusy?: { readonly busy: Effect.Effect<Meanwhile<Out>>; readonly wake: Effect.Effect<void> | undefined }
    ) =>
      queued(
        operation,
        groupId,
        Effect.suspend(() =>
          self.result !== undefined
            ? Effect.succeed(self.result)
            : self.state === "taken"
            ? Effect.fail(takenAlong(operation))
            : Riders.own(self, ownChange, () => true)
        ),
        whileBusy && {
          meanwhile: Effect.suspend(() =>
            self.result !== undefined
              ? Effect.succeed<Meanwhile<Out>>({ _tag: "Done", value: self.result })
              : self.state === "taken"
              ? Effect.succeed(waitForChange)
              : Riders.own(self, whileBusy.busy, (m) => m._tag === "Done")
          ),
          wake: whileBusy.wake
        }
      )

    const store: MembershipStoreService = {
      // After the warm-up (see `warmedUp`), outside the join's own bound: a slow warm-up (a loaded
      // server, a pooler short of server connections) must not take the join's statement timeout.
      join: (groupId, member, leaseMs, statics = {}, joinOptions = {}) =>
        Effect.zipRight(warmedUp, Effect.suspend((): Effect.Effect<GroupView, StoreError> => {
          // A waiting row this join left while the lock was busy (`busyJoin`).
          const registered = { value: false }
          // A group to reap once this join has failed (its row of this member id expired there).
          let reapAfter: string | undefined = undefined
          const coalesce = (statics.instanceId ?? null) === null && (joinOptions.slots ?? null) === null
          const riding = Riders.attempt<JoinRide, GroupView>()
          const overdueAfterMs = joinOptions.overdueAfterMs
          const exclusive = (self: Riders.Rider<JoinRide, GroupView> | undefined) => wrap(
          "join",
          Effect.flatMap(nowParam, (now) =>
            change("join", groupId, now, (epoch, behind, found) =>
              Effect.gen(function*() {
                // The group's mode is fixed by its first join (no change yet); any other asks for the same.
                const requested = joinOptions.slots ?? null
                let group = found
                if (requested !== found.slots) {
                  if (epoch !== 0 || found.slots !== null || requested === null) {
                    return yield* new SlotsMismatch({ groupId, group: found.slots, requested })
                  }
                  yield* onStatement("join", "create slots")
                  yield* Statements.createSlots(sql, groupId, requested, now)
                  group = { ...found, slots: requested }
                }
                // Slots mode: the joined member's slots, read last in the change's transaction.
                const withSlots = (view: GroupView) =>
                  group.slots === null ? Effect.succeed(view) : Effect.gen(function*() {
                    yield* onStatement("join", "slot view")
                    const [v] = yield* Statements.selectSlotView(sql, groupId, member.memberId)
                    return { ...view, slots: toSlotView(group.slots!, v?.held ?? [], v?.pending ?? []) }
                  })
                // A row of this member id in another group (the id reused while that membership's row
                // stayed: a leave that gave up; or a static row held for its instance's rejoin grace):
                // that group's, gone only by its own change. Refused; when it is reapable (lease and
                // grace run out), that group is reaped after this join has rolled back (it may have no
                // live member left to do it), and the next attempt goes through.
                const refuseElsewhere = (elsewhere: Statements.ElsewhereRow) => {
                  if (elsewhere.reapable) reapAfter = elsewhere.group
                  return elsewhereError(member.memberId, elsewhere)
                }
                const instanceId = statics.instanceId ?? null
                const rejoinGraceMs = instanceId === null ? 0 : Math.max(0, Math.round(statics.rejoinGraceMs ?? 0))
                // Static: the instance's row first (a row past its grace counts as gone). A takeover
                // changes nothing else, not even expired rows: reaping them is a change, left to the
                // ordinary reap, so a takeover never moves anyone.
                let held: Statements.InstanceRow | undefined = undefined
                if (instanceId !== null) {
                  // Before a takeover, which gives the instance's row this member id (the plain path
                  // learns it from its reap statement below).
                  yield* onStatement("join", "elsewhere")
                  const [found] = yield* Statements.selectElsewhere(sql, groupId, member.memberId, now)
                  if (found !== undefined) return yield* refuseElsewhere(found.elsewhere)
                  yield* onStatement("join", "instance")
                  ;[held] = yield* Statements.selectInstance(sql, groupId, instanceId, now)
                  if (held !== undefined) {
                    // Live and not ours: its process may be working. Never steal it: wait.
                    if (held.live && held.member_id !== member.memberId) {
                      return yield* new InstanceBusy({ instanceId, holder: `${held.name} (${held.host}/${held.pid})` })
                    }
                    // Its lease is not live (released after its work stopped, or run out on this
                    // clock: G3): take it over, same index in the same epoch, unless the rows were
                    // found out of step with the group (then a fresh row and a change, as without).
                    // Never this member's own live row: its rejoin after a refused view (indices
                    // swapped or set out of range by hand) must be a change, as a plain member's
                    // is; taking it over kept the bad index, in the same epoch, at once (an
                    // adversarial review: two static members worked one index for up to a heartbeat).
                    // Nor a row whose index is out of range (set by hand): the takeover would keep
                    // it, and the member, refused, would take it over again after every lease.
                    // Nor a row of this member id that another store wrote (the id given to two processes,
                    // against MemberIdentity's contract): its old process's fenced transactions find
                    // their row by member id, and would pass against this member's lease in the same
                    // epoch and index (a review of migration 0012: a stale fenced write committed). A
                    // change instead: a new epoch, new slot generations. A row with no writer too: an
                    // earlier release's process, running on during a rolling upgrade, wrote it.
                    const othersOwnId = held.member_id === uuidKey(member.memberId) && held.writer !== writer
                    if (
                      !held.live && !behind && held.idx !== null && held.idx >= 0 && held.idx < group.size &&
                      num(held.assigned_epoch) === epoch && !othersOwnId
                    ) {
                      yield* onStatement("join", "takeover")
                      const [taken] = yield* Statements.takeOver(
                        sql, groupId, held.member_id, member, epoch, leaseMs, rejoinGraceMs, now, nextSeq(), writer
                      )
                      if (taken !== undefined) {
                        const view = yield* joinedView(groupId, member.memberId, now, {
                          epoch,
                          size: group.size,
                          index: taken.idx,
                          incarnation: group.incarnation
                        })
                        yield* Metric.update(Metrics.takeovers.pipe(Metric.tagged("group", groupId)), 1)
                        return yield* withSlots({ ...view, takenOver: true })
                      }
                    }
                  }
                }
                // An overdue member (last renewal old, lease still live: crashed or hung, not reaped
                // yet) would hold the barrier of any change made now, and every working member would
                // stop until its lease runs out. Wait instead: only this member's waiting row (no
                // index, no new epoch); the change that reaps the overdue member, or any other, gives
                // it an index. Never when an instance row of another member would have to be dropped
                // (that is a change).
                const mayWait = held === undefined || held.member_id === member.memberId
                // A waiting row: left by a deferred join (`waiting`) or by this one while the lock was busy.
                if (((overdueAfterMs !== undefined && joinOptions.waiting === true) || registered.value) && mayWait && !behind) {
                  // Given an index by a change while waiting: that change was this join.
                  yield* onStatement("join", "adopt")
                  const [own] = yield* Statements.adoptRow(sql, groupId, member.memberId, epoch, leaseMs, now, nextSeq(), writer, rejoinGraceMs)
                  if (own !== undefined) {
                    return yield* withSlots(yield* joinedView(groupId, member.memberId, now, {
                      epoch,
                      size: own.assigned_size,
                      index: own.idx,
                      incarnation: group.incarnation
                    }))
                  }
                }
                if (overdueAfterMs !== undefined && mayWait) {
                  yield* onStatement("join", "overdue")
                  const [late] = yield* Statements.selectOverdue(
                    sql, groupId, member.memberId, Math.max(0, Math.round(overdueAfterMs)), leaseMs, now
                  )
                  if (late !== undefined) {
                    yield* onStatement("join", "defer")
                    // The waiting row runs out one overdue threshold (two heartbeats, eight polls) after
                    // the joiner's last poll (see deferJoin); a poll that finds the lock busy touches it
                    // on the busy path, which adds its lock wait.
                    // A waiting row an earlier process of this instance left, run out: gone (no change).
                    if (instanceId !== null) yield* Statements.deleteRunOutWaiting(sql, groupId, instanceId, member.memberId, now)
                    const [waiting] = yield* Statements.deferJoin(sql, groupId, member, epoch, leaseMs, now, nextSeq(), writer, instanceId, waitingRowLeaseMs(leaseMs, overdueAfterMs))
                    if (waiting !== undefined) {
                      return new JoinDeferred({
                        overdue: `${late.name} (${late.host}/${late.pid})`,
                        heartbeatAgeMs: num(late.heartbeat_age_ms),
                        leaseLeftMs: num(late.lease_left_ms)
                      })
                    }
                  }
                }
                // Joins of this store waiting for their turn ride along (see `joinRiders`).
                const took = riding.record(
                  self !== undefined && group.slots === null
                    ? joinRiders.take(groupId, self, (r) => r.overdueAfterMs === overdueAfterMs)
                    : []
                )
                if (took.length > 0) {
                  yield* onStatement("join", "riders drop")
                  yield* Statements.deleteRiderRows(sql, took.map((r) => r.input.member.memberId), writer, groupId)
                }
                // Reap expired members, and this member's own earlier row if any (but the row of its
                // instance id: dropped below, whoever it was).
                yield* onStatement("join", "reap")
                const [left] = yield* Statements.deleteExpiredAndOwnRow(sql, groupId, member.memberId, writer, now, instanceId)
                // A live row of this member id that another store wrote: another process's member with
                // the same id. Never delete it (its member may be working): refuse, and say whose it is.
                const foreign = left!.foreign
                if (foreign !== null) {
                  return yield* new StoreError({
                    operation: "join",
                    reason: `member id ${member.memberId} is in use by a live member of group "${foreign.group}" ` +
                      `(${foreign.name} on ${foreign.host}, pid ${foreign.pid}) that another process wrote: every ` +
                      `member needs an id of its own (MemberIdentity.newMemberId). This member does not join until ` +
                      `that member leaves or its lease runs out`
                  })
                }
                // A row of this member id in another group: refused (see `refuseElsewhere`).
                if (left!.elsewhere !== null) return yield* refuseElsewhere(left!.elsewhere)
                yield* countGraceExpiries(groupId, num(left!.grace_expired))
                if (held !== undefined) {
                  yield* onStatement("join", "drop")
                  yield* Statements.deleteInstanceRow(sql, groupId, held.member_id)
                }
                yield* onStatement("join", "insert")
                yield* Statements.insertMember(sql, groupId, member, epoch + 1, leaseMs, now, nextSeq(), writer, { instanceId, rejoinGraceMs })
                if (took.length > 0) {
                  yield* onStatement("join", "riders insert")
                  yield* Statements.insertRiders(sql, groupId, took.map((r) => r.input), epoch + 1, now, nextSeq(), writer)
                }
                const g = yield* rebalance(
                  "join",
                  groupId,
                  now,
                  epoch,
                  behind || num(left!.survivors) === 0,
                  "join",
                  member.memberId,
                  group.slots,
                  member.memberId
                )
                const view = yield* withSlots(yield* joinedView(groupId, member.memberId, now, g))
                if (took.length > 0) {
                  // The riders' indices, in the same transaction; the rest of their view is the leader's.
                  yield* onStatement("join", "riders view")
                  const rows = yield* Statements.selectRiderIndices(sql, groupId, took.map((r) => r.input.member.memberId), writer)
                  const index = new Map(rows.map((r) => [uuidKey(r.member_id), num(r.idx)]))
                  riding.resultsAre(took.flatMap((r) => {
                    const i = index.get(uuidKey(r.input.member.memberId))
                    return i === undefined ? [] : [[r, { ...view, index: i }] as const]
                  }))
                }
                return view
              })).pipe(
                // The riders' views, only after a commit; whatever the outcome, they are free again.
                Effect.onExit(riding.settle),
                // Deferred: the waiting row has committed; the member is told to wait (no change, no
                // notification).
                Effect.flatMap((view) => view instanceof JoinDeferred ? Effect.fail(view) : Effect.succeed(view)),
                Effect.tap((view) => view.takenOver === true ? Effect.void : notify("join", groupId, String(view.epoch)))
              )),
            false,
            riding.abandon
          )
          const withWake = <A>(run: (wake: Effect.Effect<void> | undefined) => Effect.Effect<A, StoreError>) =>
            Effect.scoped(Effect.flatMap(
              joinOptions.notifications === true ? Effect.asSome(wakeOf(groupId)) : Effect.succeedNone,
              (wake) => run(Option.getOrUndefined(wake))
            ))
          // Best effort: a failed reap leaves the row to that group's members, and to the next join.
          const reapingAfter = <A>(join: Effect.Effect<A, StoreError>) =>
            Effect.tapError(join, () => reapAfter === undefined ? Effect.void : Effect.ignore(store.reap(reapAfter)))
          if (!coalesce) {
            return reapingAfter(
              withWake((wake) => queued("join", groupId, exclusive(undefined), { meanwhile: Effect.succeed(tryLock), wake }))
            )
          }
          return reapingAfter(joinRiders.ride(groupId, { member, leaseMs, overdueAfterMs }, (self) =>
            withWake((wake) =>
              turnOrRide("join", groupId, self, exclusive(self), {
                busy: busyJoin(groupId, member, leaseMs, registered, overdueAfterMs),
                wake
              })
            )))
        }).pipe(
          // The joined epoch is the LISTEN connection's baseline for this group, as a renewal's is:
          // a later epoch that no notification announced makes it check itself (notifier.ts). A
          // group can form with no renewal at all (its members' joins in one change, all of them
          // acknowledged at once), and a listener that hung then would have gone unnoticed until
          // one more change.
          Effect.tap((view) => notifier.observed(groupId, view.epoch))
        )),

      heartbeat: (groupId, memberId, ack, leaseMs, hbOptions = {}) => {
        // A plain periodic renewal may be held this long to share a statement (leaseKeeper.ts).
        const holdMs = Math.max(0, Math.min(hbOptions.holdMs ?? 0, 60_000))
        return wrap(
          "heartbeat",
          Effect.gen(function*() {
            renewers.set(memberId, (yield* storeMillis) + leaseMs)
            yield* onStatement("heartbeat", "renew")
            // Bounded like any operation (`wrap`), here by the batcher: the statement already runs in
            // the batch's fiber, never interrupted, so only the wait for its answer needs a bound,
            // which the batcher's one watchdog fiber ends (`awaitAtMost` forked every call and raced
            // it with a timer: three fibers more per renewal, docs/benchmarks.md). The notification
            // of a barrier it completed (below) has its own bound.
            const { announce, row: r } = yield* batcher.submit(memberId, {
              seq: nextSeq(),
              memberId,
              groupId,
              ack,
              leaseMs,
              stuck: hbOptions.stuck === true,
              slots: hbOptions.slots === true,
              ackCurrent: hbOptions.ackCurrent === true,
              ackPlace: hbOptions.ackPlace,
              announce: hbOptions.announce === true
            }, holdMs, { ms: statementTimeoutMs + holdMs, onTimeout: () => timedOut("heartbeat", statementTimeoutMs + holdMs) }, holdMs > 0 ? hbOptions.early : undefined)
            if (r === undefined) return Option.none<GroupView>()
            // An epoch above what the store counts to (set by hand; every change refuses it too) is
            // no view: the member neither stops for it nor acknowledges it, and its heartbeat fails,
            // saying why, until an operator repairs it. Taken as a view, every member acknowledged it
            // and waited in it for ever, also after the repair, every later view being older (a review).
            if (aboveHighest(r.epoch)) {
              return yield* new StoreError({
                operation: "heartbeat",
                reason: `the group's epoch is ${r.epoch}, above ${Statements.highestEpoch} (2^52 - 1), the highest ` +
                  `modulo-group counts to: set by hand? No member takes a view from it until an operator repairs it ` +
                  `(docs/operations.md, "An epoch set out of range")`
              })
            }
            // Only its own row stamped out of range (by hand): no row, as for an index out of range;
            // the member rejoins, and its join (a change) restamps every row. Refused as the group's
            // epoch (a review), the row was renewed for ever while its member stayed fenced.
            if (aboveHighest(r.assigned_epoch)) return Option.none<GroupView>()
            // A group in the other mode than this member's (`groups.slots` set or cleared by hand,
            // past migration 0019's guard; an adversarial review, attack105, set it on a live
            // modulo-mode group with the app's grants): a slots-mode member would read a modulo-mode
            // view, a modulo-mode member none of the slots a joiner of the new mode is given, and go
            // on working items that joiner works. No row, as for an index out of range: the member
            // stops its work at once and rejoins, which is refused (`SlotsMismatch`) while the mode
            // differs. Said here, at error level: the member only sees its row gone.
            const groupSlots = r.slots === null ? null : num(r.slots)
            if ((hbOptions.slots === true) !== (groupSlots !== null)) {
              const mode = (slots: number | null) => (slots === null ? "modulo mode" : `slots mode with ${slots} slots`)
              yield* Effect.logError(
                `modulo-group: group ${JSON.stringify(groupId)} is in ${mode(groupSlots)}, but this member works in ` +
                  `${hbOptions.slots === true ? "slots mode" : "modulo mode"}: a group's mode is fixed when it is created ` +
                  "(changed by hand?); the member stops its work and takes no view until an operator puts it back"
              ).pipe(Effect.annotateLogs({ "modulo_group.group": groupId, "modulo_group.member": memberId }))
              return Option.none<GroupView>()
            }
            const view = yield* toView(groupId, r, leaseMs)
            // Lets the LISTEN connection check itself when this epoch was never notified.
            yield* notifier.observed(groupId, view.epoch)
            // The acknowledgement that completes the barrier wakes the others (after its commit): one
            // member of each group a batch completed the barrier of.
            if (announce) yield* notify("heartbeat", groupId, `${view.epoch}:ready`)
            return Option.some(view)
          }),
          true
        )
      },

      reap: (groupId) =>
        reapRiders.ride(groupId, null, (self) => {
          const riding = Riders.attempt<null, number>()
          return turnOrRide("reap", groupId, self, wrap(
          "reap",
          Effect.flatMap(nowParam, (now) =>
            change("reap", groupId, now, (epoch, behind, group) =>
              Effect.gen(function*() {
                // Reaps of this store waiting for their turn ride along (see `reapRiders`): this
                // one reaps for them, after taking them. Every member that saw an expired row asks
                // for a reap; one is enough.
                const took = riding.record(reapRiders.take(groupId, self, () => true))
                riding.resultsAre(took.map((r) => [r, 0] as const))
                // Also acknowledges the epoch for held static rows (see Statements.deleteExpired).
                const rows = yield* deleteExpired("reap", groupId, now, epoch)
                // Expired waiting rows (joiners that stopped waiting) go without a change.
                const gone = rows.filter((r) => !r.acked && !r.waiting)
                yield* countGraceExpiries(groupId, gone.filter((r) => r.instance_id !== null).length)
                // Also when the rows no longer match the group (a row deleted, added or restamped by hand).
                yield* onStatement("reap", "check")
                const [c] = yield* Statements.selectRowsOff(sql, groupId)
                // And when a member has acknowledged an epoch the group has not reached (`behind`: the
                // database went back, a restore or a failover that lost commits, while members
                // worked on): past every epoch acknowledged, in a new incarnation.
                const changed = gone.length > 0 || c?.off === true || behind
                if (changed) {
                  const cause = gone.length > 0 ? "reap" : "repair"
                  yield* rebalance("reap", groupId, now, epoch, behind || num(c?.live ?? 0) === 0, cause, null, group.slots)
                }
                // The new epoch's number is the notification (a working member may stop on it, see
                // Transition's `Notified`); held static rows acknowledged without a change: "reap".
                return { gone: gone.length, changed: changed || rows.some((r) => r.acked), epoch: changed ? epoch + 1 : undefined }
              })).pipe(
                // The riders' results, only after a commit; whatever the outcome, they are free again.
                Effect.onExit(riding.settle),
                Effect.tap(({ changed, epoch }) =>
                  changed ? notify("reap", groupId, epoch === undefined ? "reap" : String(epoch)) : Effect.void
                ),
                Effect.map(({ gone }) => gone)
              )),
            false,
            riding.abandon
          ))
        }),

      leave: (groupId, memberId) =>
        leaveRiders.ride(groupId, memberId, (self) => {
          renewers.delete(memberId)
          const riding = Riders.attempt<string, boolean>()
          const leaveChange = wrap(
            "leave",
            Effect.flatMap(nowParam, (now) =>
              change("leave", groupId, now, (epoch, behind, group) =>
                Effect.gen(function*() {
                  yield* onStatement("leave", "delete")
                  const [mine] = yield* Statements.deleteMember(sql, groupId, memberId, writer)
                  // Leaves of this store waiting for their turn ride along (see `leaveRiders`): their
                  // members have stopped their work, as this one has. Modulo mode only.
                  const took = riding.record(group.slots === null ? leaveRiders.take(groupId, self, () => true) : [])
                  let ridersLeft = 0
                  if (took.length > 0) {
                    yield* onStatement("leave", "riders delete")
                    const rows = yield* Statements.deleteRiderRows(sql, took.map((r) => r.input), writer, groupId)
                    const deleted = new Set(rows.map((r) => uuidKey(r.member_id)))
                    ridersLeft = rows.filter((r) => !r.waiting).length
                    riding.resultsAre(took.map((r) => [r, deleted.has(uuidKey(r.input))] as const))
                  }
                  const expired = yield* deleteExpired("leave", groupId, now)
                  yield* countGraceExpiries(groupId, expired.filter((r) => r.instance_id !== null).length)
                  // A waiting joiner that leaves, and expired waiting rows, change nothing.
                  const left = mine !== undefined && !mine.waiting
                  const gone = expired.filter((r) => !r.waiting)
                  const changed = left || ridersLeft > 0 || gone.length > 0
                  if (changed) {
                    yield* rebalance(
                      "leave", groupId, now, epoch, behind, left || ridersLeft > 0 ? "leave" : "reap", left ? memberId : null, group.slots
                    )
                  }
                  return { mine: mine !== undefined, changed, epoch: epoch + 1 }
                })).pipe(
                  // The riders' results, only after a commit; whatever the outcome, they are free again.
                  Effect.onExit(riding.settle),
                  // The new epoch's number (a working member may stop on it, see Transition's `Notified`).
                  Effect.tap(({ changed, epoch }) => (changed ? notify("leave", groupId, String(epoch)) : Effect.void)),
                  Effect.map(({ mine }) => mine)
                )),
            false,
            riding.abandon
          )
          return turnOrRide("leave", groupId, self, leaveChange, { busy: busyLeave(groupId, memberId), wake: undefined })
        }),

      release: (groupId, memberId) =>
        Effect.suspend(() => {
          renewers.delete(memberId)
          return queued("release", groupId, wrap(
            "release",
            Effect.flatMap(nowParam, (now) =>
              change("release", groupId, now, (epoch) =>
                Effect.gen(function*() {
                  yield* onStatement("release", "release")
                  const rows = yield* Statements.releaseMember(sql, groupId, memberId, epoch, writer, now)
                  return rows.length > 0
                }), false).pipe(
                  // Its acknowledgement may complete a barrier: wake the others.
                  Effect.tap((had) => (had ? notify("release", groupId, "release") : Effect.void))
                ))
          ))
        }),

      releaseSlots: (groupId, memberId, stopped) =>
        stopped.length === 0 ? Effect.succeed([]) : wrap(
          "releaseSlots",
          Effect.gen(function*() {
            const now = yield* nowParam
            yield* onStatement("releaseSlots", "release")
            const release = Statements.releaseSlots(sql, groupId, memberId, stopped, writer, now, statementTimeoutMs)
            const rows = yield* singleAtReadCommitted("releaseSlots", release)
            const released = rows.map((r) => num(r.slot)).sort((a, b) => a - b)
            // The new owners learn at their next renewal: wake them (after the commit, best effort).
            if (released.length > 0) yield* notify("releaseSlots", groupId, "release")
            return released
          })
        ),

      retakeSlot: (groupId, memberId, slot, generation) =>
        wrap(
          "retakeSlot",
          Effect.gen(function*() {
            const now = yield* nowParam
            yield* onStatement("retakeSlot", "retake")
            const retake = Statements.retakeSlot(sql, groupId, memberId, slot, generation, writer, now, statementTimeoutMs)
            const rows = yield* singleAtReadCommitted("retakeSlot", retake)
            return rows.length > 0
          })
        ),

      slotRows: (groupId) =>
        wrap(
          "slotRows",
          Effect.zipRight(
            onStatement("slotRows", "read"),
            Effect.map(single(Statements.selectSlotRows(sql, groupId)), (rows) =>
              rows.map((r) => ({ slot: num(r.slot), owner: r.owner, holder: r.holder, generation: num(r.generation) })))
          )
        ),

      wait: (groupId, member, instanceId, leaseMs) =>
        wrap(
          "wait",
          Effect.flatMap(nowParam, (now) =>
            Effect.zipRight(
              onStatement("wait", "upsert"),
              // One statement, bounded on the server (its lock_timeout), never cancelled from the client
              // (a review: a waiter row held by another session drew pg_cancel_backend at every timeout).
              oneWaiterStatement(member.memberId, Statements.upsertWaiter(sql, groupId, member, instanceId, Math.round(leaseMs), now, statementTimeoutMs))
            ))
        ),

      stopWaiting: (_groupId, memberId) =>
        wrap(
          "stopWaiting",
          Effect.zipRight(onStatement("stopWaiting", "delete"), oneWaiterStatement(memberId, Statements.deleteWaiter(sql, memberId, statementTimeoutMs)))
        ),

      waiters: (groupId) =>
        wrap(
          "waiters",
          Effect.flatMap(nowParam, (now) =>
            Effect.zipRight(
              onStatement("waiters", "read"),
              Effect.map(single(Statements.selectWaiters(sql, groupId, now)), (rows) =>
                rows.map((r): WaiterRow => ({
                  memberId: r.member_id,
                  instanceId: r.instance_id,
                  name: r.name,
                  host: r.host,
                  pid: r.pid,
                  waitingMs: num(r.waiting_ms),
                  seenAgoMs: num(r.seen_ago_ms)
                })))
            ))
        ),

      wakeups: notifier.wakeups,

      sharesHeartbeats: true,

      // Stops at the first other live renewer (a member of 1,000 in one process looked at all of them,
      // every heartbeat: M² steps per heartbeat in all); expired entries on the way are dropped.
      sharesHeartbeatsNow: (memberId) =>
        Effect.map(storeMillis, (now) => {
          for (const [id, until] of renewers) {
            if (until <= now) renewers.delete(id)
            else if (id !== memberId) return true
          }
          return false
        }),

      group: (groupId) =>
        wrap(
          "group",
          Effect.zipRight(
            onStatement("group", "read"),
            Effect.map(
              single(Statements.selectGroup(sql, groupId)),
              (rows) => Option.map(Option.fromNullable(rows[0]), toGroupRow)
            )
          )
        ),

      members: (groupId) =>
        wrap(
          "members",
          Effect.flatMap(nowParam, (now) =>
            Effect.zipRight(
              onStatement("members", "read"),
              Effect.map(
                single(Statements.selectMembers(sql, groupId, now)),
                (rows) =>
                  rows.map((r): MemberRow => ({
                    memberId: r.member_id,
                    name: r.name,
                    host: r.host,
                    pid: r.pid,
                    index: r.idx,
                    stoppingSince: Statements.dateOf(r.stopping_since),
                    ackedEpoch: num(r.acked_epoch),
                    joinedAt: Statements.dateOf(r.joined_at)!,
                    heartbeatAgeMs: num(r.heartbeat_age_ms),
                    leaseLeftMs: num(r.lease_left_ms),
                    instanceId: r.instance_id,
                    releasedAt: Statements.dateOf(r.released_at),
                    graceLeftMs: r.grace_left_ms === null ? null : num(r.grace_left_ms)
                  }))
              )
            ))
        ),

      groups: wrap(
        "groups",
        Effect.zipRight(
          onStatement("groups", "read"),
          Effect.map(
            single(Statements.selectGroups(sql)),
            (rows) => rows.map(toGroupRow)
          )
        )
      )
    }
    return store
  })

/** A renewal read one committed state: its row carries the group row's epoch and size (see `toView`). */
const wholeState = (r: Statements.RenewedRow) =>
  num(r.assigned_epoch) === num(r.epoch) && num(r.assigned_size) === num(r.size)

/**
 * A renewal's view has the barrier down: one state, in which every row has acknowledged its epoch,
 * and no row is missing: a row deleted by hand before it acknowledged (its member still working the
 * epoch before) is no acknowledgement (a review of migration 0015: the others started beside it).
 * The change that repairs, after the wait (`RowsMissing`), starts an epoch of its own.
 */
const barrierDown = (r: Statements.RenewedRow) =>
  wholeState(r) && num(r.rows) >= num(r.size) && num(r.unacked) === 0 && num(r.acked) === num(r.epoch)

const toGroupRow = (r: Statements.GroupRow): GroupRow => ({
  groupId: r.group_id,
  epoch: num(r.epoch),
  size: num(r.size),
  changedAt: Statements.dateOf(r.changed_at)!,
  incarnation: num(r.incarnation),
  slots: r.slots === null ? null : num(r.slots)
})

/** A duration read from the database as a finite number of ms, at least 0; else none (null, NaN, ±Infinity, negative: set by hand). */
const sane = (ms: number | string | null): number | undefined => {
  if (ms === null) return undefined
  const n = num(ms)
  return Number.isFinite(n) && n >= 0 ? n : undefined
}

/**
 * How a group's changes stand with indices that no member row holds (migration 0015; docs/protocol.md,
 * "Indices with no row"), from `missing` (the indices, now) and the record a change left in the
 * group row: `sinceMs` (how long ago it found them missing; null if none did, or not a time),
 * `waitMs` (how long it found the changes must wait) and `indices` (which it found). `None`: no
 * usable record for these indices (none, edited by hand, or of other indices): the next change
 * records one and waits a whole lease. `Some(ms)`: how much longer the changes wait (0: the next
 * repairs). What the store decides by and `status` shows.
 *
 * @since 0.5.0
 * @category missing rows
 */
export const missingWait = (
  missing: ReadonlyArray<number>,
  record: {
    readonly sinceMs: number | string | null
    readonly waitMs: number | string | null
    readonly indices: ReadonlyArray<number> | null
  }
): Option.Option<number> => {
  const sinceMs = sane(record.sinceMs)
  const waitMs = sane(record.waitMs)
  const was = new Set(record.indices ?? [])
  if (sinceMs === undefined || waitMs === undefined || !missing.every((i) => was.has(i))) return Option.none()
  return Option.some(Math.max(0, Math.min(Duration.toMillis(maxDuration), waitMs) - sinceMs))
}

// A view's longest lease of the group's live rows (`GroupView.longestLeaseMs`), at least this
// member's own, at most the longest duration a config takes (`maxDuration`: the longest a timer takes).
const longestOf = (r: { readonly longest_lease_ms: number | string | null }, leaseMs: number): number =>
  Math.min(Math.max(leaseMs, r.longest_lease_ms === null ? 0 : num(r.longest_lease_ms)), Duration.toMillis(maxDuration))

/** Slot numbers, ascending, for a message: runs of consecutive numbers as ranges (`0..15, 20`). */
const describeSlotRows = (numbers: ReadonlyArray<number>): string => {
  if (numbers.length === 0) return "none"
  const runs: Array<string> = []
  let from = numbers[0]!
  let to = from
  for (const n of numbers.slice(1)) {
    if (n === to + 1) {
      to = n
      continue
    }
    runs.push(from === to ? `${from}` : `${from}..${to}`)
    from = to = n
  }
  runs.push(from === to ? `${from}` : `${from}..${to}`)
  return runs.length > 8 ? `${runs.slice(0, 8).join(", ")}, ... (${numbers.length} rows)` : runs.join(", ")
}

/** A slot view from `Statements.slotViewOf`'s JSON arrays. */
const toSlotView = (
  count: number,
  held: ReadonlyArray<readonly [number, number | string, boolean]>,
  pending: ReadonlyArray<number>
): SlotView => ({
  count,
  held: held.map(([slot, generation, owned]) => ({ slot: num(slot), generation: num(generation), owned: owned === true })),
  pending: pending.map(num)
})

/**
 * The store over the app's `PgClient` and a notifier provided from outside (several stores can then
 * share one LISTEN connection; tests watch it), schema readied first.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerUsingNotifier = (
  options: Options = {}
): Layer.Layer<
  MembershipStore,
  DatabaseUnavailable | SchemaMismatch,
  PgClient.PgClient | SqlClient.SqlClient | Notifier.Notifier
> => Layer.effect(MembershipStore, Effect.zipRight(prepare(options), makeStore(options, true)))

/**
 * The store over the app's `PgClient`, schema readied first, with a notifier of its own: one LISTEN
 * connection (over `options.listenUrl` when given), shared by every member and group that uses this
 * store, closed with the layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<MembershipStore, DatabaseUnavailable | SchemaMismatch, PgClient.PgClient | SqlClient.SqlClient> =>
  layerUsingNotifier(options).pipe(
    Layer.provide(Notifier.layerWith({ listenUrl: options.listenUrl, listenPool: options.listenPool }))
  )
