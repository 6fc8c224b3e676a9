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
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import { dual } from "effect/Function"
import * as Constants from "./internal/pg/constants.js"
import * as Statements from "./internal/pg/statements.js"
import { readCommitted } from "./internal/pg/transaction.js"
import { nestedIn, statementsRunToTheEnd, statementsWhileRunning } from "./internal/pg/noCancel.js"
import { currentRunAssignment, currentSlotsRun, type RunAssignment } from "./internal/membership/workRunner.js"
import { Membership } from "./Membership.js"
import { describe } from "./internal/pg/errors.js"
import { canonicalMemberId } from "./internal/memberId.js"
import { maxSlots } from "./internal/slots/assignment.js"
import { FenceBroken, FenceTimeout, InvalidConfig, StaleAssignment, StoreError } from "./MembershipError.js"
import { decodeDuration, maxDuration } from "./MembershipConfig.js"
import type { Assignment, AssignmentOwner, OwnedSlot, OwnedSlots } from "./MemberState.js"

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
  /**
   * Slots mode: the slots the transaction writes, each at the generation this member works it under.
   * Then the fence checks the member's lease and, for each slot, that this member holds it at that
   * generation (under FOR KEY SHARE on the slot row, and again at COMMIT); neither the epoch, the
   * index nor the size, and it takes no group lock (`epoch`, `index` and `size` are not used).
   */
  readonly slots?: ReadonlyArray<{ readonly slot: number; readonly generation: number }> | undefined
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
   * 1 second for `fencedWith`. Past it the transaction rolls back and fails with `FenceTimeout`
   * (also when the server's backstop of `timeout` + 1 s fires first, for a stalled client). A
   * statement of the body still running at `timeout` is not cancelled from the client (the driver's
   * cancel is unsafe behind a connection pooler): it runs until it ends, at the latest when the
   * backstop fires, and the transaction then rolls back.
   */
  readonly timeout?: Duration.DurationInput | undefined
  /**
   * Fence to this assignment (e.g. the `Work.Tick` a run received, or what `awaitAssigned` / `guard`
   * returned when the body's slice was taken): if the member has moved on, the transaction fails even
   * if the newer assignment would pass. Default: inside a work run (`whileAssigned`, `runEvery`,
   * `runAsLeader`, and fibers they fork), the run's assignment; **outside any run, the assignment
   * current when `fenced` is called**, which is not the one an earlier slice was taken from: pass it
   * there (docs/fencing.md, "Which assignment").
   */
  readonly assignment?: Assignment | undefined
  /**
   * Slots mode: the slot (`Membership.whileOwning`'s `OwnedSlot`) or slots (`whileOwningAll`'s
   * `OwnedSlots`) the transaction writes: it commits only if this member still holds each at the
   * generation given (checked locally first, then on the database and at COMMIT); otherwise it fails
   * with `StaleAssignment`. The slots decide then; an `assignment` given beside them is not checked
   * against the database, but one of another membership is refused, as are slots of another.
   */
  readonly slots?: OwnedSlot | OwnedSlots | undefined
}

/**
 * What a fenced transaction can fail with, besides the app's own errors (passed through unchanged):
 * `StaleAssignment` (the assignment was not current, at the start, at the end, or at `COMMIT`),
 * `FenceTimeout`, `FenceBroken` (the body ended the transaction or removed the backstop), and
 * `StoreError` (operation `"fenced"`, the `SqlError` as its `cause`) for a database error of the
 * fence's own statements, `BEGIN` or `COMMIT` (a lost connection, an app's deferred constraint), and
 * `InvalidConfig` for a `timeout` that is not a duration from 1 ms to 2^31 - 1 ms less 1 s. In
 * every case but two, nothing of the transaction committed: a `StoreError` of `COMMIT` on a lost
 * connection (unknown), and a `FenceBroken` whose reason begins "the transaction COMMITTED" (its
 * `COMMIT` ended too late after the last check to confirm the lease; do not retry the write blindly).
 *
 * @since 0.1.0
 * @category models
 */
export type FenceError = StaleAssignment | FenceTimeout | FenceBroken | StoreError | InvalidConfig

/**
 * The first key of the advisory lock that queues fenced transactions (shared) and membership changes
 * (exclusive) of one group fairly; the second key is `hashtext(group_id)`. Row share locks alone let a
 * stream of overlapping fenced transactions starve the `FOR UPDATE` of a change.
 *
 * @since 0.1.0
 * @category constants
 */
export const advisoryLockClass: number = Constants.advisoryLockClass

/**
 * The SQLSTATE with which the commit-time check (migration 0003, `modulo_group.fence_check_at_commit`)
 * fails a `COMMIT` whose assignment is no longer current; `fenced` reports it as `StaleAssignment`.
 * An app that nests `fenced` in its own transaction sees it on its own `COMMIT`.
 *
 * @since 0.1.0
 * @category constants
 */
export const commitCheckSqlState: string = Constants.commitCheckSqlState

/** An error of the app's body, carried through the fence's own error handling unchanged. */
class AppFailure {
  constructor(readonly error: unknown) {}
}

/** Slack between the client-side timeout and the server-side backstop for a hung client. */
const serverSlackMs = 1_000

/** The longest `timeout`: its backstop (`timeout` + the slack) is PostgreSQL's longest timeout. */
const longestTimeout = Duration.millis(Duration.toMillis(maxDuration) - serverSlackMs)

const num = (v: unknown): number => (typeof v === "number" ? v : Number(v))

/** The SQLSTATE and server message of a `SqlError`, if it carries them. */
const databaseError = (e: unknown): { readonly code: string; readonly message: string } | undefined => {
  if (!Predicate.isTagged(e, "SqlError")) return undefined
  const cause = (e as SqlError).cause
  if (!Predicate.hasProperty(cause, "code") || typeof cause.code !== "string") return undefined
  return { code: cause.code, message: Predicate.hasProperty(cause, "message") ? String(cause.message) : "" }
}

/**
 * `slots` with each slot once, in the order first named; or why they cannot be fenced (a slot that is
 * not an integer in `[0, 16384)`, a generation that is not a non-negative integer, a slot named at two
 * generations).
 */
const distinctSlots = (
  slots: ReadonlyArray<{ readonly slot: number; readonly generation: number }>
): ReadonlyArray<{ readonly slot: number; readonly generation: number }> | string => {
  const seen = new Map<number, number>()
  const distinct: Array<{ readonly slot: number; readonly generation: number }> = []
  for (const { generation, slot } of slots) {
    if (!Number.isSafeInteger(slot) || slot < 0 || slot >= maxSlots) {
      return `${String(slot)} is not a slot (an integer from 0 to ${maxSlots - 1})`
    }
    if (!Number.isSafeInteger(generation) || generation < 0) {
      return `slot ${slot}'s generation ${String(generation)} is not a generation (a non-negative integer)`
    }
    const before = seen.get(slot)
    if (before === undefined) {
      seen.set(slot, generation)
      distinct.push({ slot, generation })
    } else if (before !== generation) {
      return `slot ${slot} is named at generations ${before} and ${generation}: a member works a slot under one generation at a time`
    }
  }
  return distinct
}

/** A value the caller gave, as the refusal shows it: a number as is, anything else with its type
 * (`"4"` and `new Number(4)` are not the number 4: a review read "of a group of 4 slots, but ... has 4"). */
const asGiven = (value: unknown): string =>
  typeof value === "number" ? String(value) : `${typeof value === "string" ? JSON.stringify(value) : String(value)} (${
    value === null ? "null" : typeof value === "object" ? (value as object).constructor?.name ?? "object" : typeof value
  }, not a number)`

/**
 * A fenced transaction for an explicit target, without the local `guard` (`fenced` is this plus the
 * guard). The statements, in order, on one connection (each a named function in
 * `internal/pg/statements.ts`; the transaction is `internal/pg/transaction.ts`):
 *
 * 1. `BEGIN ISOLATION LEVEL READ COMMITTED` (a `SAVEPOINT` inside an app transaction)
 * 2. (`fenceBegin` in internal/pg/statements.ts) server-side timeouts for a hung client: `statement_timeout`, `idle_in_transaction_session_timeout`
 *    (and `transaction_timeout` on PostgreSQL 17+), each `timeout` + 1 s, local to the transaction;
 *    the same statement reads the values they replace and `txid_current()`
 * 3. (`fenceQueue`) `pg_advisory_xact_lock_shared(advisoryLockClass, hashtext(group_id))`: queue behind a waiting change
 * 4. (`fenceGroup`) `SELECT epoch, size FROM modulo_group.groups WHERE group_id = $1 FOR SHARE`
 * 5. (`fenceMember`) `SELECT idx, lease_expires_at > clock_timestamp() ... FROM modulo_group.members WHERE member_id = $2 FOR KEY SHARE`,
 *    which also inserts a row into `modulo_group.fence_checks`: it queues the commit-time check
 * 6. the app's `effect`
 * 7. not inside an app transaction (`fenceDeferredNow`): `SET CONSTRAINTS ALL IMMEDIATE`, so that the app's
 *    deferred checks run now and only the fence's own check is left for `COMMIT`; then (`fenceEnd`) one
 *    statement: the lease again on `clock_timestamp()`, the same transaction (`txid_current()`), the
 *    backstop settings untouched, `session_replication_role` = `origin`, the block's target still in
 *    `Statements.fencedTargetsSetting`; `fence_checks` rows again: nested in an app transaction its own
 *    (in slots mode one row naming every slot, migration 0018); in its own transaction one per target recorded there (its own and
 *    the blocks nested in the body whose savepoints stand, whose checks step 7's `SET CONSTRAINTS` ran
 *    early), its own last;
 *    inside an app transaction, the timeouts for the rest of it, which holds this block's locks until
 *    it ends: `statement_timeout` and `idle_in_transaction_session_timeout` each the app's value from
 *    before step 2 if it is non-zero and at most `timeout` + 1 s, else `timeout` + 1 s (so a client or
 *    a statement that hangs after the block cannot hold the group's changes longer);
 *    `transaction_timeout` (17+) the app's
 * 8. `COMMIT`, at which the deferred trigger on `fence_checks` checks epoch, index and lease once more,
 *    on the database clock at that moment, and fails the `COMMIT` (SQLSTATE `MGF01`) if any moved
 *
 * Fails with `StaleAssignment` (and rolls back) if the target is not current at step 4-5, the lease has
 * expired at step 7, or the commit-time check fails at step 8; with `FenceBroken` if the body ended
 * the transaction or changed the backstop, or if the `COMMIT` of its own transaction ended later
 * after step 7 than the lease had left then and the lease has ended since (the transaction committed:
 * docs/fencing.md, "The commit-time check"); with `FenceTimeout` past `timeout`.
 *
 * @since 0.1.0
 * @category fencing
 */
export const fencedWith = <A, E, R>(
  given: FenceTarget,
  effect: Effect.Effect<A, E, R>,
  options: { readonly timeout?: Duration.DurationInput | undefined } = {}
): Effect.Effect<A, E | FenceError, R | SqlClient.SqlClient> =>
  Effect.gen(function*() {
    // Slots mode: each slot once. A slot named again at its generation is dropped; at another one, or
    // a slot that is not a slot number, is refused before anything is sent (a review: a target naming
    // one slot a million times made the commit-time check that long, after its lease was read, and
    // the process's own matching of rows quadratic).
    const named = given.slots === undefined ? undefined : distinctSlots(given.slots)
    if (typeof named === "string") return yield* new StaleAssignment({ epoch: given.epoch, reason: named })
    // The member id as PostgreSQL writes it back (upper case, braces: one uuid, one member): the
    // record of the members fenced in the transaction, and what is read after a slow COMMIT, match
    // ids so (a review: a nested block's id in upper case was left out of both, and its member's
    // lease ended before the COMMIT landed, reported as a success).
    const target: FenceTarget = { ...given, memberId: canonicalMemberId(given.memberId), ...(named === undefined ? {} : { slots: named }) }
    // Without the app's name transforms: the fence reads its rows by their own column names (the
    // body runs on the app's client, transforms and all, in the same transaction).
    const sql = (yield* SqlClient.SqlClient).withoutTransforms()
    const outer = yield* Effect.serviceOption(SqlClient.TransactionConnection)
    const nested = Option.isSome(outer)
    // A duration from 1 ms up to where its backstop still fits PostgreSQL's timeouts, else
    // `InvalidConfig` before anything is sent (a review: "abc" died, an infinite one failed on the
    // server, a negative one or NaN was taken as 1 ms and timed out).
    const timeoutMs = Math.round(Duration.toMillis(
      yield* decodeDuration("timeout", options.timeout, Duration.seconds(1), Duration.millis(1), longestTimeout)
    ))
    const backstop = String(timeoutMs + serverSlackMs)
    const stale = (reason: string) => new StaleAssignment({ epoch: target.epoch, reason })
    const undoneLocks = `the fence's own setting ${Statements.fenceMarkerSetting} was undone: a ROLLBACK TO SAVEPOINT ` +
      "of a savepoint from before one of the fence's locks (in the body, or in another block or transaction " +
      "running concurrently on the same transaction) took that lock away, or the body reset it (RESET ALL). " +
      "Do not roll back to a savepoint from outside fenced inside it, and run fenced blocks of one " +
      "transaction one after the other"
    const broken = (reason: string) => new FenceBroken({ epoch: target.epoch, reason })
    // Slots mode checks the lease at COMMIT through the rows of the slots named (one each, with the
    // slot's holder and generation): with none named, nothing would be checked at COMMIT, and a
    // client stalled before it committed past the lease (an adversarial review). Refused, nothing sent.
    if (target.slots !== undefined && target.slots.length === 0) {
      return yield* stale(
        "no slots were given: a fence in slots mode checks the lease and each slot named, and with none it would " +
          "check nothing at COMMIT. Fence under the slots the work is for (an empty `owned` means this member " +
          "works no slot now)"
      )
    }

    // When the fence's last statement was sent (real time), and how long the lease had left then: the
    // COMMIT of its own transaction is judged against them (`confirmed` below).
    const lastCheck = {
      sentAt: Number.POSITIVE_INFINITY,
      leftMs: 0,
      members: [] as ReadonlyArray<readonly [string, string, string, string | null]>
    }
    const body = Effect.gen(function*() {
      // The values replaced (restored at the end inside an app transaction), the values set (compared
      // at the end) and the transaction's id (an app COMMIT or ROLLBACK inside the body changes it).
      // MATERIALIZED: the old values are read before set_config runs.
      const marker = yield* fenceMarker
      const [begun] = yield* Statements.fenceBegin(sql, backstop, !nested)
      if (begun === undefined) return yield* Effect.dieMessage("modulo-group: the fence's first statement returned no row")
      // Nested in an app transaction above READ COMMITTED, the lease checks (step 6 and the commit-time
      // trigger) would read the transaction's snapshot, not the member row as it is then: a lease cut
      // short after the snapshot (an UPDATE that does not conflict with the fence's FOR KEY SHARE) went
      // unseen, and the app's COMMIT succeeded after the lease had ended (a review). Refused, loudly.
      if (nested && begun.iso !== "read committed") {
        return yield* broken(
          `it is nested in an app transaction at ${begun.iso.toUpperCase()}, whose snapshot its lease checks would ` +
            "read instead of the member row as it is at COMMIT. Run the app's transaction at READ COMMITTED " +
            "(sql.withTransaction sends a plain BEGIN: the database's or role's default_transaction_isolation " +
            "applies), or call fenced outside it: it then runs its own READ COMMITTED transaction"
        )
      }
      // Each statement that takes a lock stamps the chain of `Statements.fenceMarkerSetting` with this
      // fence's next stage, from the stage before only: a stamp that comes back behind means a rollback
      // undid a lock this fence took (`Statements.stampMarker`).
      let before: string | undefined
      let stage = 0
      const stamped = (chain: string): Effect.Effect<void, FenceBroken> => {
        stage++
        const stamp = Statements.markerStamp(marker, stage)
        if (stage === 1 && chain.endsWith(stamp)) before = chain.slice(0, chain.length - stamp.length)
        return chain.endsWith(stamp) ? Effect.void : Effect.fail(broken(undoneLocks))
      }
      if (target.slots !== undefined) {
        // Slots mode: no group lock (changes need not wait for this transaction unless they remove
        // this member or hand over one of its slots, which lock the rows locked here).
        const [me] = yield* Statements.fenceSlotMember(sql, target, target.slots, marker)
        if (me === undefined) return yield* stale("this member's row is gone (it left or was reaped)")
        yield* stamped(me.marker)
        if (!me.live) return yield* stale(`the lease expired ${-num(me.lease_left_ms)} ms ago on the database clock`)
        const rows = target.slots.length === 0
          ? []
          : yield* Statements.fenceSlots(sql, target.groupId, target.slots.map((p) => p.slot), marker)
        const bySlot = new Map(rows.map((r) => [r.slot, r]))
        for (const { generation, slot } of target.slots) {
          const row = bySlot.get(slot)
          if (row === undefined) return yield* stale(`the group has no slot ${slot}`)
          if (row.holder !== target.memberId) return yield* stale(`slot ${slot} is held by another member now`)
          if (num(row.generation) !== generation) {
            return yield* stale(`slot ${slot} is at generation ${row.generation}, not ${generation}`)
          }
        }
        if (rows.length > 0) yield* stamped(rows[0]!.marker)
      } else {
        // Fair queueing: a shared advisory lock waits behind a change already waiting for the exclusive one.
        const [queued] = yield* Statements.fenceQueue(sql, target.groupId, marker)
        yield* stamped(queued!.marker)
        // FOR SHARE: no UPDATE or DELETE of the group row (every change bumps the epoch there, after
        // taking it FOR UPDATE) can happen until this transaction ends.
        const [group] = yield* Statements.fenceGroup(sql, target.groupId, marker)
        if (group === undefined) return yield* stale("the group no longer exists")
        yield* stamped(group.marker)
        if (num(group.epoch) !== target.epoch) return yield* stale(`the group has moved on to epoch ${group.epoch}`)
        if (num(group.size) !== target.size) return yield* stale(`the group has ${group.size} members, not ${target.size}`)
        // FOR KEY SHARE: blocks DELETE (reaping, leaving) and index changes of this member's row, but not
        // its own heartbeat, which updates only non-key columns. The fence_checks row queues the
        // commit-time check now, so even a COMMIT sent by the body itself is checked.
        const [me] = yield* Statements.fenceMember(sql, target, marker)
        if (me === undefined) return yield* stale("this member's row is gone (it left or was reaped)")
        yield* stamped(me.marker)
        if (me.idx !== target.index) return yield* stale(`this member now has index ${me.idx}, not ${target.index}`)
        if (!me.live) return yield* stale(`the lease expired ${-num(me.lease_left_ms)} ms ago on the database clock`)
      }
      if (before === undefined) return yield* Effect.dieMessage("modulo-group: bug: the fence's first lock did not stamp it")
      const marked = { chain: before + Statements.markerStamp(marker, stage), before }

      // The app's own errors are boxed, so that below they are told apart from the fence's. The body's
      // connection refuses statements once the body has ended: a fiber it forked and left running
      // would send them after the fence's checks (internal/pg/noCancel.ts, `statementsWhileRunning`).
      const strays = { nestedStillRunning: false }
      const result = yield* Effect.mapError(statementsWhileRunning(effect, strays), (error) => new AppFailure(error))
      // A fenced block nested in the body still running at its end (a fiber the body forked ran it):
      // its own end is refused from now on, so whether its savepoint still stands, and so what it
      // wrote, cannot be known (a review: one whose body had rolled back past its savepoint committed
      // with this block). Nothing commits.
      if (strays.nestedStillRunning) {
        return yield* broken(
          "a fenced block nested in the body (run by a fiber the body forked?) was still running when the body " +
            "ended. Join the fibers a fenced body forks before it returns"
        )
      }

      // Its own transaction: the app's deferred checks now, before the lease is checked again, so that
      // none of them is left to wait at COMMIT after the fence's last check there (`Statements.fenceDeferredNow`).
      // The fence's first check runs among them: a lease that ended by then fails it here, said as
      // fenceEnd says it (this is not yet the COMMIT).
      if (!nested) {
        yield* Statements.fenceDeferredNow(sql).pipe(Effect.catchAll((e): Effect.Effect<never, SqlError | StaleAssignment> => {
          const db = databaseError(e)
          if (db?.code !== commitCheckSqlState) return Effect.fail(e)
          const ms = /lease expired (\d+) ms/.exec(db.message)?.[1]
          return Effect.fail(stale(
            ms === undefined
              ? db.message.replace(/^modulo_group fence: /, "")
              : `the lease expired during the transaction (${ms} ms ago, once the body's deferred checks had run)`
          ))
        }))
      }

      // Nothing above can have changed (we hold the locks) but the lease, which only our own
      // heartbeats renew: a member that stopped renewing does not commit. In the same statement:
      // did the body end the transaction or remove the backstop? A second fence_checks row (only if
      // still in the transaction) queues the commit-time check even if the body ran SET CONSTRAINTS
      // ALL IMMEDIATE (its insert trigger puts the check back to DEFERRED).
      lastCheck.sentAt = performance.now()
      const [after] = yield* Statements.fenceEnd(sql, target, begun, nested ? backstop : undefined, marked)
      if (after === undefined) return yield* Effect.dieMessage("modulo-group: the fence's last statement returned no row")
      if (after.xact !== begun.xact) {
        return yield* broken(
          "the body ended the transaction (a COMMIT, ROLLBACK or END sent through the SqlClient): what it " +
            "wrote before that was committed only if the commit-time check passed, and its later statements ran " +
            "outside the fence. Do not end the transaction inside fenced"
        )
      }
      // Ordinary triggers fire under `origin` and `local`; under `replica` (or a value this check does
      // not know) the commit-time check would not run. Set by the body, or by the session's default
      // (`ALTER ROLE ... SET`, a connection option): either way, nothing commits.
      if (after.replication !== "origin" && after.replication !== "local") {
        return yield* broken(
          `session_replication_role is ${after.replication} (set by the body or the session's default): the ` +
            `commit-time check (a trigger) would not run. Use origin (the default) or local`
        )
      }
      // A cursor WITH HOLD declared by the body runs its query to the end at COMMIT, after the fence's
      // check there (it passed): a query that took long (a function that waited, a large sort)
      // committed the body's writes past the lease (an adversarial review: 0.5 s past it). Refused.
      // Nested, the app's COMMIT is the app's (see fencing.md, "Nesting").
      if (!nested && after.held_cursors > 0) {
        return yield* broken(
          "the body declared a cursor WITH HOLD: PostgreSQL runs its query at COMMIT, after the fence's last check, " +
            "so the transaction could commit after the lease ended. Close it before the body ends, or declare it " +
            "without HOLD"
        )
      }
      // A tighter non-zero bound is a backstop still: a fenced block nested in this body (another
      // group's, or a shorter timeout) leaves at most its own backstop for the rest of the
      // transaction (`Statements.fenceEnd`), which failed this check while nothing had been removed
      // (a review: every fenced call of a group inside another's, with a shorter statement timeout).
      const tighter = (now: string | null, set: string | null) => {
        const setMs = set === null ? undefined : Statements.settingMs(set)
        return now !== null && setMs !== undefined && setMs > 0 && Statements.boundsWithin(now, setMs)
      }
      for (
        const [name, now, set, orTighter] of [
          ["statement_timeout", after.st, begun.st, true],
          ["idle_in_transaction_session_timeout", after.idle, begun.idle, true],
          ["transaction_timeout", after.tx, begun.tx, false]
        ] as const
      ) {
        if (now !== set && !(orTighter && tighter(now, set))) {
          return yield* broken(
            `${name} is ${now} instead of the fence's ${set} (RESET ALL or SET inside the body removes the ` +
              `server-side backstop against a hung client). Do not change the timeouts inside fenced`
          )
        }
      }
      // A rollback took one of the fence's locks since its last stamp (the body's, past the fence's
      // start; or another block's or transaction's on the same transaction): what the body wrote after
      // it ran unfenced.
      if (after.marker !== marked.chain) return yield* broken(undoneLocks)
      // The record of the targets fenced in the transaction (`Statements.fencedTargetsSetting`), from
      // which this fence's end queued the nested blocks' checks again: reset or cleared by the body
      // (`RESET modulo_group.fenced`, `set_config`), those checks were lost (a review: a nested
      // block's write committed past its lease). Its own entry is in it from step 4 unless so.
      if (after.recorded !== true) {
        return yield* broken(
          `the body reset or changed the setting ${Statements.fencedTargetsSetting}, the record of the blocks fenced in ` +
            "this transaction whose checks run at COMMIT. Do not change the library's settings inside fenced"
        )
      }
      if (after.live !== true) {
        return yield* stale(
          `the lease expired during the transaction (${
            after.live === null ? "row gone" : `${-num(after.lease_left_ms)} ms ago`
          })`
        )
      }
      // Every member fenced in the transaction (its own, and the blocks nested in the body): the
      // least lease left among them is what the COMMIT is timed against.
      lastCheck.leftMs = Math.min(num(after.lease_left_ms), after.recorded_left_ms === null ? Infinity : num(after.recorded_left_ms))
      lastCheck.members = JSON.parse(after.recorded_members) as Array<[string, string, string, string | null]>
      return result
    })

    // Real elapsed time (not the Effect clock): whether the server's backstop can have fired.
    const started = performance.now()
    const limited = Effect.timeoutFail(body, {
      duration: Duration.millis(timeoutMs),
      onTimeout: () => new FenceTimeout({ epoch: target.epoch, timeoutMs, side: "client" })
    })
    // Every statement inside, the app's too, runs to its end once sent: at the timeout, the body is
    // interrupted right after the statement in flight, which the backstop ends if nothing else does,
    // never cancelled from the client (`@effect/sql-pg` would send pg_cancel_backend with the pid the
    // connection was given at startup: behind a pooler, not the server's; internal/pg/noCancel.ts).
    // Nested in a fenced body, the block is registered with it (refused once that body has ended).
    const inTransaction = nestedIn(
      Option.isSome(outer) ? outer.value[0] : undefined,
      readCommitted(sql, statementsRunToTheEnd(limited)),
      () =>
        broken(
          "this block started after the fenced body it is nested in had ended (in a fiber that body forked?): " +
            "nothing was sent"
        )
    )
    // Its own transaction committed. PostgreSQL still does work of the transaction's after the
    // commit-time check has read the lease: it writes the body's notifications (NOTIFY, pg_notify)
    // into the queue, in time that grows with their volume (a review: 150,000 of 2 kB committed the
    // write 0.4-1.2 s past the lease, and fenced reported success), and runs what an app's trigger
    // deferred again behind the check. Nothing of that can be seen from SQL, so the COMMIT's duration
    // is: when it ended later after the last check than the shortest lease fenced in it had left then,
    // those leases are read again, and unless each is live still, of the same row (a lease is never
    // renewed once ended; a rejoin or a static takeover makes the row another: `joined_at`), fenced
    // does not report success. The write has committed; the fence's locks kept every change of the group out until it
    // did (G2 holds); what cannot be confirmed is that the lease was current when it landed.
    const confirmed = nested ? inTransaction : Effect.tap(inTransaction, () =>
      Effect.suspend(() => {
        const tookMs = performance.now() - lastCheck.sentAt
        if (tookMs < lastCheck.leftMs) return Effect.void
        const late = (what: string) =>
          broken(
            `the transaction COMMITTED, but its COMMIT ended ${Math.round(tookMs)} ms after the fence's last check, when ` +
              `${lastCheck.members.length > 1 ? "the shortest lease fenced in it" : "the lease"} had ${lastCheck.leftMs} ms left, ` +
              `and ${what}: it may have committed after that lease ended. PostgreSQL ` +
              "writes a transaction's notifications (NOTIFY, pg_notify) at COMMIT after every check: keep a fenced body's " +
              "notifications few and small"
          )
        return Statements.leasesAfterCommit(sql, lastCheck.members).pipe(
          Effect.matchEffect({
            onFailure: (e) => Effect.fail(late(`the lease could not be read after it (${describe(e)})`)),
            onSuccess: (rows) => {
              const gone = lastCheck.members.find(([m, g]) => !rows.some((r) => r.member_id === m && r.group_id === g))
              const ended = rows.find((r) => !r.live)
              // Live now, but renewed since the last check: the renewal may have committed after the
              // COMMIT landed, with the lease ended in between (it checks before it commits).
              const renewed = rows.find((r) => r.live && !r.same_lease)
              const whose = (m: string, g: string) =>
                m === target.memberId && g === target.groupId ? "the lease" : `the lease of member ${m} of group ${g}, fenced in the body,`
              return gone !== undefined
                ? Effect.fail(late(`${whose(gone[0], gone[1])} has no row since, or another (a rejoin)`))
                : ended !== undefined
                ? Effect.fail(late(`${whose(ended.member_id, ended.group_id)} ended ${num(ended.past_ms)} ms ago`))
                : renewed !== undefined
                ? Effect.fail(late(`${whose(renewed.member_id, renewed.group_id)} was renewed since (a renewal that checked it before its end may have committed after the COMMIT landed)`))
                : Effect.void
            }
          })
        )
      }))
    return yield* confirmed.pipe(
      Effect.catchAll((failure) =>
        Effect.suspend((): Effect.Effect<never, E | FenceError> => {
          // The app's error, or one of the fence's own statements, BEGIN or COMMIT (a SqlError), or
          // the fence's verdict (StaleAssignment, FenceTimeout, FenceBroken).
          const error = failure instanceof AppFailure ? failure.error as E : failure
          const db = databaseError(error)
          if (db?.code === commitCheckSqlState) {
            return Effect.fail(stale(db.message.replace(/^modulo_group fence: /, "")))
          }
          // A cursor WITH HOLD declared after the fence's last statement (a fiber the body left
          // running on the connection), refused by the commit-time check itself (migration 0017).
          if (db?.code === Constants.heldCursorSqlState) {
            return Effect.fail(broken(db.message.replace(/^modulo_group fence: /, "")))
          }
          // The server's backstop (statement_timeout, idle_in_transaction_session_timeout,
          // transaction_timeout) fired before the client's timer: a stalled client. Only past the
          // client's limit, so that an app's own shorter timeout stays the app's SqlError.
          const backstopFired = db !== undefined && performance.now() - started >= timeoutMs &&
            ((db.code === "57014" && /statement timeout/.test(db.message)) || db.code === "25P03" || db.code === "25P04")
          if (backstopFired) {
            return Effect.fail(new FenceTimeout({ epoch: target.epoch, timeoutMs, side: "server", cause: error }))
          }
          if (failure instanceof AppFailure) return Effect.fail(failure.error as E)
          if (Predicate.isTagged(error, "SqlError")) {
            return Effect.fail(new StoreError({ operation: "fenced", reason: describe(error), cause: error }))
          }
          return Effect.fail(error as FenceError)
        })
      )
    )
  }).pipe(
    Effect.withSpan("modulo-group.fenced", {
      kind: "client",
      attributes: {
        "db.system": "postgresql",
        "modulo_group.group": given.groupId,
        "modulo_group.epoch": given.epoch,
        "modulo_group.index": given.index
      }
    })
  )

/**
 * Runs `effect` (the app's SQL on the same `SqlClient`) in a transaction that commits only if this
 * member's assignment is still current: the one given as `assignment`; without it, inside a work run
 * (`Membership.whileAssigned`, `Work.runEvery`, `Work.runAsLeader`, or a fiber one of them forked),
 * the run's own, the run it was built in when built in one (a plain call of another membership
 * inside a run, or built in one run and run in another, is refused: pass `assignment`); outside any
 * run, the one current when it runs. An `assignment` (or `slots`) of another membership is refused.
 * In slots mode pass `slots` (the slot or slots the transaction writes): without them it is refused.
 * **Outside a run, pass the assignment the body's slice was taken from** (`awaitAssigned`, `guard`):
 * otherwise a slice of an older assignment commits under the newer one (docs/fencing.md, "Which
 * assignment"). The local `guard` first (no round trip when already stale), then the checks of
 * `fencedWith` on the database, under locks that any renegotiation or reaping of this member waits
 * for, and once more at `COMMIT` (on the database clock). A stale call fails with `StaleAssignment`
 * and nothing of `effect` is committed; past `timeout` it fails with `FenceTimeout`; if `effect` ends
 * the transaction itself or changes the fence's timeouts, with `FenceBroken`.
 *
 * The `modulo_group` tables (schema version 3) must be in the database `SqlClient` talks to, the app's
 * role needs `SELECT, INSERT, DELETE` on `modulo_group.fence_checks`, and the member's store must judge
 * leases on the database clock (the default). It runs at READ COMMITTED whatever the default isolation.
 * Called inside an app transaction, it becomes a savepoint: its locks are then held, and its writes
 * committed, with the outer transaction, whose `COMMIT` runs the commit-time check (SQLSTATE
 * `commitCheckSqlState` on failure). After a block that succeeded, the rest of the app's transaction
 * holds the fence's locks, which every change of the group waits for: its `statement_timeout` and
 * `idle_in_transaction_session_timeout` are then at most `timeout` + 1 s each (the app's own values
 * where they are non-zero and tighter), until the app's transaction ends; after a block that failed,
 * the app's timeouts are as they were before it (docs/fencing.md, "Nesting").
 *
 * @since 0.1.0
 * @category fencing
 */
export const fenced: {
  (
    options?: FencedOptions
  ): <A, E, R>(
    effect: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | FenceError, R | Membership | SqlClient.SqlClient>
  <A, E, R>(
    effect: Effect.Effect<A, E, R>,
    options?: FencedOptions
  ): Effect.Effect<A, E | FenceError, R | Membership | SqlClient.SqlClient>
} = dual(
  (args) => Effect.isEffect(args[0]),
  <A, E, R>(effect: Effect.Effect<A, E, R>, options: FencedOptions = {}) => {
    // The work run the call was built in (the fiber that called `fenced`, if any): an effect is a
    // value, and one built in a run can be run on another fiber (a queue's consumer in the next run,
    // a runtime captured in another run); its body's slice is the run it was built in (a review).
    const builtIn = options.assignment === undefined ? builtInRun() : Option.none()
    return Effect.gen(function*() {
      const membership = yield* Membership
      // What was given names the membership that handed it out: another's (another group, another
      // member, the same group id in another database) is refused, though its numbers may match this
      // membership's by chance (a review: a daemon whose context got another group's member through
      // a joined fiber passed its run's own assignment, which matched that member's, and committed).
      // Both when both are given (the slots decide then, the assignment must not hide them: a review).
      const isThis = (of: AssignmentOwner) => of.memberId === membership.memberId && of.groupId === membership.config.groupId
      for (const [what, given] of [["slots given are", options.slots], ["assignment given is", options.assignment]] as const) {
        if (given?.owner !== undefined && !isThis(given.owner)) {
          return yield* new StaleAssignment({
            epoch: options.assignment?.epoch ?? -1,
            reason: `the ${what} member ${given.owner.memberId}'s of group ${given.owner.groupId}, not member ` +
              `${membership.memberId}'s of group ${membership.config.groupId} (the \`Membership\` this call runs under)`
          })
        }
      }
      // In a slots-mode work run (or a fiber it forked), only the run's own membership: under another
      // (a modulo one re-provided, or carried in by a joined fiber) a plain fence passed the slots-mode
      // refusal below and checked that member's assignment, which partitions nothing of the run's slots
      // (as in a modulo run, an explicit `assignment` or `slots`, checked to be that membership's, passes).
      const slotsRun = yield* FiberRef.get(currentSlotsRun)
      if (Option.isSome(slotsRun) && !isThis(slotsRun.value) && options.assignment === undefined && options.slots === undefined) {
        return yield* new StaleAssignment({
          epoch: -1,
          reason: `this call is in a slots-mode work run of member ${slotsRun.value.memberId} of group ` +
            `${slotsRun.value.groupId} but fences member ${membership.memberId} of group ${membership.config.groupId}: ` +
            "call it under the run's own membership with `slots`, or pass that membership's `assignment` explicitly"
        })
      }
      // Slots mode without slots: the member's epoch, index and size partition nothing there (a slot
      // changes hands at a release, which moves no epoch), so a check of them would let a write commit
      // beside the slot's new holder (a review). Refused, saying what to pass.
      if (options.slots === undefined && membership.config.slots !== undefined) {
        return yield* new StaleAssignment({
          epoch: options.assignment?.epoch ?? -1,
          reason: `group ${membership.config.groupId} is in slots mode: a fence there checks slots, not an ` +
            "assignment; pass `slots` (the `OwnedSlot` of `whileOwning`, or the `OwnedSlots` of `whileOwningAll` " +
            "or `owned`) for the slots the transaction writes (docs/slots.md)"
        })
      }
      if (options.slots !== undefined) {
        // Slots mode: the local check first (no round trip when already stale): this member works each
        // slot at that generation, with its lease deadline ahead.
        const wanted = "slot" in options.slots
          ? [{ slot: options.slots.slot, generation: options.slots.generation }]
          : options.slots.slots.map((slot, i) => ({ slot, generation: (options.slots as OwnedSlots).generations[i]! }))
        const owned = yield* membership.owned
        // Of this group's slot count: a slot number means other items under another count, and an
        // `OwnedSlot` built by hand with another count passed the fence while `Ownership.owned` picked
        // another member's items with it (a review, attack107, suggested).
        const count: unknown = options.slots.count
        if (count !== owned.count) {
          return yield* new StaleAssignment({
            epoch: -1,
            reason: `the slots given are of a group of ${asGiven(count)} slots, but group ` +
              `${membership.config.groupId} has ${owned.count}: items map to other slots under that count`
          })
        }
        for (const { generation, slot } of wanted) {
          const i = owned.slots.indexOf(slot)
          if (i < 0 || owned.generations[i] !== generation) {
            return yield* new StaleAssignment({
              epoch: -1,
              reason: i < 0
                ? `this member does not work slot ${slot} now`
                : `this member works slot ${slot} at generation ${owned.generations[i]}, not ${asGiven(generation)}`
            })
          }
        }
        const slotTimeout = options.timeout ?? Duration.divide(membership.config.statementTimeout, 2).pipe(
          Option.getOrElse(() => Duration.seconds(1))
        )
        return yield* fencedWith(
          {
            groupId: membership.config.groupId,
            memberId: membership.memberId,
            epoch: -1,
            index: -1,
            size: 0,
            slots: wanted
          },
          effect,
          { timeout: slotTimeout }
        )
      }
      // Without `assignment`: the assignment of the work run this fiber belongs to (whileAssigned,
      // runEvery, runAsLeader; also a fiber the run forked, which can outlive it), whose slice the
      // body's SQL was written for; outside any run, the current one (docs/fencing.md, "Which
      // assignment").
      // Inside a run, only the run's own membership: a plain `fenced` of another (another member of
      // the group, another group, the same group id in another database) cannot tell which slice the
      // body was written for, the run's or that membership's current one, and fencing to the wrong
      // one commits an old slice beside its new holder (reviews: a run's work registered where
      // another member of the group was the context's `Membership`; a daemon of a run that joined a
      // fiber of another group's run, which carried that run's `Membership` into it). Refused,
      // saying what to pass.
      const running = options.assignment === undefined ? yield* FiberRef.get(currentRunAssignment) : Option.none()
      if (Option.isSome(builtIn) && Option.isSome(running) && !sameRun(builtIn.value, running.value)) {
        const [b, r] = [builtIn.value, running.value]
        return yield* new StaleAssignment({
          epoch: b.assignment.epoch,
          reason: `this call was built in a work run of member ${b.memberId} ([${b.assignment.index}/${b.assignment.size}] ` +
            `in epoch ${b.assignment.epoch}) and runs in another (member ${r.memberId}, [${r.assignment.index}/` +
            `${r.assignment.size}] in epoch ${r.assignment.epoch}): which slice the body writes is unknown; pass ` +
            `\`assignment\` (the one the slice was taken from)`
        })
      }
      const run = Option.orElse(builtIn, () => running)
      if (Option.isSome(run) && !isThis(run.value)) {
        const { assignment: a, groupId, memberId } = run.value
        return yield* new StaleAssignment({
          epoch: a.epoch,
          reason: `this call is in a work run of member ${memberId} of group ${groupId} ([${a.index}/${a.size}] in ` +
            `epoch ${a.epoch}) but fences member ${membership.memberId} of group ${membership.config.groupId}: ` +
            `which slice the body writes is unknown; pass \`assignment\` (the one the slice was taken from), ` +
            `or call it under the run's own membership (the run's \`Membership\`)`
        })
      }
      // The local guard after the checks of which run: those refusals are the caller's mistake and hold
      // whatever the membership's state (CI: another member awaiting an epoch gave its state instead).
      const current = yield* membership.guard
      const ofRun = Option.map(run, (r) => r.assignment)
      const expected = options.assignment ?? Option.getOrElse(ofRun, () => current)
      if (expected.epoch !== current.epoch || expected.index !== current.index || expected.size !== current.size) {
        return yield* new StaleAssignment({
          epoch: expected.epoch,
          reason: `the member is now assigned [${current.index}/${current.size}] in epoch ${current.epoch}` +
            (Option.isSome(ofRun)
              ? `, not [${expected.index}/${expected.size}] in epoch ${expected.epoch}, the assignment of the work run this call is in`
              : "")
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
  }
)

/**
 * The value a fence sets `modulo_group.fence` to (Statements.fenceMarkerSetting): unique in this
 * process, so in its transactions, also with two copies of this module loaded (a bundle and the
 * library; a review: two counters alone would both start at 1).
 */
const markerPrefix = globalThis.crypto.randomUUID().slice(0, 8)
let fencesStarted = 0
const fenceMarker: Effect.Effect<string> = Effect.sync(() => `${markerPrefix}.${++fencesStarted}`)

/**
 * Two runs with one slice: of one member, at one (incarnation, epoch, index, size). Two registrations
 * of one member run in one epoch are such (a task one builds and the other runs is of the same slice).
 */
const sameRun = (a: RunAssignment, b: RunAssignment): boolean =>
  a.groupId === b.groupId && a.memberId === b.memberId && a.assignment.incarnation === b.assignment.incarnation &&
  a.assignment.epoch === b.assignment.epoch && a.assignment.index === b.assignment.index &&
  a.assignment.size === b.assignment.size

/** The work run of the fiber that is running now, when one is (see `fenced`). */
const builtInRun = (): Option.Option<RunAssignment> =>
  Option.flatMap(Fiber.getCurrentFiber(), (fiber) => fiber.getFiberRef(currentRunAssignment))
