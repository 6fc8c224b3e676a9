/**
 * Fenced transactions (G6): the app's own SQL, in one transaction that commits only if this member's
 * assignment (epoch, index, size, lease on the database clock) is still current, checked under locks
 * that every renegotiation and every reaping of this member must wait for. Work that writes to the
 * same database then gets G2 from the database itself: a fenced transaction of epoch E commits before
 * epoch E + 1 exists, or it does not commit at all. `docs/fencing.md` has the SQL and the argument.
 *
 * @example
 * ```ts
 * import { SqlClient } from "@effect/sql"
 * import { Effect } from "effect"
 * import { Fenced, Ownership, Work } from "modulo-group"
 *
 * const drain = Work.runEvery("1 second", (tick) =>
 *   Fenced.fenced(
 *     Effect.gen(function*() {
 *       const sql = yield* SqlClient.SqlClient
 *       yield* sql`UPDATE items SET done_by = ${tick.index}, done_in = ${tick.epoch}
 *                   WHERE done_by IS NULL AND ${Ownership.owned(sql, "id", tick)}`
 *     }),
 *     { assignment: tick }
 *   ))
 * ```
 *
 * @since 0.1.0
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import type { Cause } from "effect"
import { Duration, Effect, Exit, Option } from "effect"
import { dual } from "effect/Function"
import { Membership } from "./Membership.js"
import { StaleAssignment } from "./MembershipError.js"
import type { Assignment } from "./MemberState.js"

/**
 * Which assignment a fenced transaction is checked against.
 *
 * @since 0.1.0
 * @category models
 */
export interface FenceTarget {
  readonly groupId: string
  readonly memberId: string
  readonly epoch: number
  readonly index: number
  readonly size: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface FencedOptions {
  /**
   * Upper bound on the whole transaction, lock waits included. Renegotiations of the group wait for
   * it, so keep it well under the membership's `statementTimeout` (a change must get its lock and
   * finish within that). Default: half the membership's `statementTimeout` (1 second by default);
   * 1 second for `fencedWith`. Past it the transaction rolls back and fails with a
   * `TimeoutException` (or, if the server's backstop fires first, a `SqlError`).
   */
  readonly timeout?: Duration.DurationInput | undefined
  /**
   * Fence to this assignment (e.g. the `Work.Tick` a run received) instead of the current one: if the
   * member has moved on, the transaction fails even if the newer assignment would pass.
   */
  readonly assignment?: Assignment | undefined
}

/**
 * The first key of the advisory lock that queues fenced transactions (shared) and membership changes
 * (exclusive) of one group fairly; the second key is `hashtext(group_id)`. Row share locks alone let a
 * stream of overlapping fenced transactions starve the `FOR UPDATE` of a change.
 *
 * @since 0.1.0
 * @category constants
 */
export const advisoryLockClass = 1297040455 // "MODG"

/** Slack between the client-side timeout and the server-side backstop for a hung client. */
const serverSlackMs = 1_000

const num = (v: unknown): number => (typeof v === "number" ? v : Number(v))

/**
 * Runs `body` in a transaction of its own and maps a failed COMMIT to a `SqlError` (not a defect, as
 * `withTransaction` does: a caller must be able to tell "did not commit" from a bug). Inside an app's
 * transaction it becomes a savepoint of it.
 */
const transaction = <A, E, R>(
  sql: SqlClient.SqlClient,
  body: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError, R> =>
  Effect.flatMap(Effect.serviceOption(SqlClient.TransactionConnection), (outer) =>
    Option.isSome(outer)
      ? sql.withTransaction(body)
      : Effect.uninterruptibleMask((restore) =>
        Effect.scoped(Effect.gen(function*() {
          const conn = yield* sql.reserve
          yield* conn.executeUnprepared("BEGIN", [], undefined)
          const exit = yield* Effect.exit(
            restore(body).pipe(Effect.provideService(SqlClient.TransactionConnection, [conn, 0] as const))
          )
          if (Exit.isSuccess(exit)) {
            yield* conn.executeUnprepared("COMMIT", [], undefined)
            return exit.value
          }
          // A failed ROLLBACK means a broken connection: the pool discards it, the server rolls back.
          yield* conn.executeUnprepared("ROLLBACK", [], undefined).pipe(Effect.ignore)
          return yield* exit
        }))
      ))

/**
 * A fenced transaction for an explicit target, without the local `guard` (`fenced` is this plus the
 * guard). The statements, in order, on one connection:
 *
 * 1. `BEGIN`
 * 2. server-side timeouts for a hung client: `statement_timeout`, `idle_in_transaction_session_timeout`
 *    (and `transaction_timeout` on PostgreSQL 17+), each `timeout` + 1 s, local to the transaction
 * 3. `pg_advisory_xact_lock_shared(advisoryLockClass, hashtext(group_id))`: queue behind a waiting change
 * 4. `SELECT epoch, size FROM modulo_group.groups WHERE group_id = $1 FOR SHARE`
 * 5. `SELECT idx, lease_expires_at > clock_timestamp() ... FROM modulo_group.members WHERE member_id = $2 FOR KEY SHARE`
 * 6. the app's `effect`
 * 7. the lease again, on `clock_timestamp()`
 * 8. `COMMIT`
 *
 * Fails with `StaleAssignment` (and rolls back) if the target is not current at step 4-5 or the lease
 * has expired at step 7.
 *
 * @since 0.1.0
 * @category fencing
 */
export const fencedWith = <A, E, R>(
  target: FenceTarget,
  effect: Effect.Effect<A, E, R>,
  options: { readonly timeout?: Duration.DurationInput | undefined } = {}
): Effect.Effect<A, E | StaleAssignment | SqlError | Cause.TimeoutException, R | SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const timeoutMs = Math.max(1, Math.round(Duration.toMillis(Duration.decode(options.timeout ?? Duration.seconds(1)))))
    const backstop = String(timeoutMs + serverSlackMs)
    const stale = (reason: string) => new StaleAssignment({ epoch: target.epoch, reason })

    const body = Effect.gen(function*() {
      yield* sql`
        SELECT set_config('statement_timeout', ${backstop}, true),
               set_config('idle_in_transaction_session_timeout', ${backstop}, true),
               CASE WHEN current_setting('server_version_num')::int >= 170000
                    THEN set_config('transaction_timeout', ${backstop}, true) END`
      // Fair queueing: a shared advisory lock waits behind a change already waiting for the exclusive one.
      yield* sql`SELECT pg_advisory_xact_lock_shared(${advisoryLockClass}, hashtext(${target.groupId}))`
      // FOR SHARE: no UPDATE or DELETE of the group row (every change bumps the epoch there, after
      // taking it FOR UPDATE) can happen until this transaction ends.
      const [group] = yield* sql<{ epoch: string; size: number }>`
        SELECT epoch, size FROM modulo_group.groups WHERE group_id = ${target.groupId} FOR SHARE`
      if (group === undefined) return yield* stale("the group no longer exists")
      if (num(group.epoch) !== target.epoch) return yield* stale(`the group has moved on to epoch ${group.epoch}`)
      if (num(group.size) !== target.size) return yield* stale(`the group has ${group.size} members, not ${target.size}`)
      // FOR KEY SHARE: blocks DELETE (reaping, leaving) and index changes of this member's row, but not
      // its own heartbeat, which updates only non-key columns.
      const [me] = yield* sql<{ idx: number | null; live: boolean; lease_left_ms: string }>`
        SELECT idx, lease_expires_at > clock_timestamp() AS live,
               (extract(epoch FROM lease_expires_at - clock_timestamp()) * 1000)::bigint AS lease_left_ms
          FROM modulo_group.members
         WHERE member_id = ${target.memberId} AND group_id = ${target.groupId}
           FOR KEY SHARE`
      if (me === undefined) return yield* stale("this member's row is gone (it left or was reaped)")
      if (me.idx !== target.index) return yield* stale(`this member now has index ${me.idx}, not ${target.index}`)
      if (!me.live) return yield* stale(`the lease expired ${-num(me.lease_left_ms)} ms ago on the database clock`)

      const result = yield* effect

      // Nothing above can have changed (we hold the locks) but the lease, which only our own
      // heartbeats renew: a member that stopped renewing does not commit.
      const [after] = yield* sql<{ live: boolean; lease_left_ms: string }>`
        SELECT lease_expires_at > clock_timestamp() AS live,
               (extract(epoch FROM lease_expires_at - clock_timestamp()) * 1000)::bigint AS lease_left_ms
          FROM modulo_group.members WHERE member_id = ${target.memberId}`
      if (after === undefined || !after.live) {
        return yield* stale(
          `the lease expired during the transaction (${after === undefined ? "row gone" : `${-num(after.lease_left_ms)} ms ago`})`
        )
      }
      return result
    })

    return yield* transaction(sql, Effect.timeout(body, timeoutMs))
  }).pipe(
    Effect.withSpan("modulo-group.fenced", {
      kind: "client",
      attributes: {
        "db.system": "postgresql",
        "modulo_group.group": target.groupId,
        "modulo_group.epoch": target.epoch,
        "modulo_group.index": target.index
      }
    })
  )

/**
 * Runs `effect` (the app's SQL on the same `SqlClient`) in a transaction that commits only if this
 * member's assignment is still current: the local `guard` first (no round trip when already stale),
 * then the checks of `fencedWith` on the database, under locks that any renegotiation or reaping of this
 * member waits for. A stale call fails with `StaleAssignment` and nothing of `effect` is committed.
 *
 * The `modulo_group` tables must be in the database `SqlClient` talks to, and the member's store must
 * judge leases on the database clock (the default). Called inside an app transaction, it becomes a
 * savepoint: its locks are then held, and its writes committed, with the outer transaction.
 *
 * @since 0.1.0
 * @category fencing
 */
export const fenced: {
  (
    options?: FencedOptions
  ): <A, E, R>(
    effect: Effect.Effect<A, E, R>
  ) => Effect.Effect<
    A,
    E | StaleAssignment | SqlError | Cause.TimeoutException,
    R | Membership | SqlClient.SqlClient
  >
  <A, E, R>(
    effect: Effect.Effect<A, E, R>,
    options?: FencedOptions
  ): Effect.Effect<A, E | StaleAssignment | SqlError | Cause.TimeoutException, R | Membership | SqlClient.SqlClient>
} = dual(
  (args) => Effect.isEffect(args[0]),
  <A, E, R>(effect: Effect.Effect<A, E, R>, options: FencedOptions = {}) =>
    Effect.gen(function*() {
      const membership = yield* Membership
      const current = yield* membership.guard
      const expected = options.assignment ?? current
      if (expected.epoch !== current.epoch || expected.index !== current.index || expected.size !== current.size) {
        return yield* new StaleAssignment({
          epoch: expected.epoch,
          reason: `the member is now assigned [${current.index}/${current.size}] in epoch ${current.epoch}`
        })
      }
      const timeout = options.timeout ?? Duration.divide(membership.config.statementTimeout, 2).pipe(
        Option.getOrElse(() => Duration.seconds(1))
      )
      return yield* fencedWith(
        {
          groupId: membership.config.groupId,
          memberId: membership.memberId,
          epoch: expected.epoch,
          index: expected.index,
          size: expected.size
        },
        effect,
        { timeout }
      )
    })
)
