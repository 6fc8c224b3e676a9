/**
 * Errors a caller can act on. Each carries a message a person understands.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"

/**
 * A configuration value is unusable (zero or negative duration, lease too short, ...).
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidConfig extends Data.TaggedError("InvalidConfig")<{
  readonly field: string
  readonly reason: string
}> {
  override get message() {
    return `Invalid modulo-group config "${this.field}": ${this.reason}`
  }
}

/**
 * The group id is empty, too long, or contains characters we refuse.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidGroupId extends Data.TaggedError("InvalidGroupId")<{
  readonly groupId: string
  readonly reason: string
}> {
  override get message() {
    const id = typeof this.groupId === "string" ? this.groupId : String(this.groupId)
    // The first 40 characters (code points: an emoji is not cut in half).
    const chars = Array.from(id)
    const shown = chars.length > 40 ? `${JSON.stringify(chars.slice(0, 40).join(""))}...` : JSON.stringify(id)
    return `Invalid group id ${shown}: ${this.reason}`
  }
}

/**
 * The database could not be reached (after a bounded retry) or refused us; also every database
 * error of `Migrations` (`cause` is the `SqlError`).
 *
 * @since 0.1.0
 * @category errors
 */
export class DatabaseUnavailable extends Data.TaggedError("DatabaseUnavailable")<{
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message() {
    return `Database unavailable: ${this.reason}`
  }
}

/**
 * The schema is not installed and automatic migration is off, or it is newer than this library.
 *
 * @since 0.1.0
 * @category errors
 */
export class SchemaMismatch extends Data.TaggedError("SchemaMismatch")<{
  readonly found: number
  readonly expected: number
}> {
  override get message() {
    return this.found === 0
      ? `The modulo_group schema is not installed and migrations are disabled: run \`modulo-group migrate\`, apply migrations/*.sql with your own tool, or set migrate: true`
      : this.found > this.expected
      ? `The modulo_group schema is at version ${this.found}, newer than this library supports (${this.expected}): upgrade modulo-group`
      : `The modulo_group schema is at version ${this.found} but this library needs ${this.expected}: run \`modulo-group migrate\` or set migrate: true`
  }
}

/**
 * A database call of the library failed or timed out: a store operation (retried by the membership
 * loops; surfaced only by direct store use), or the statements, `BEGIN` or `COMMIT` of a fenced
 * transaction (`operation: "fenced"`). `cause` is the database error (a `SqlError`, its SQLSTATE in
 * `cause.cause.code`).
 *
 * @since 0.1.0
 * @category errors
 */
export class StoreError extends Data.TaggedError("StoreError")<{
  readonly operation: string
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message() {
    return `modulo-group ${this.operation} failed: ${this.reason}`
  }
}

/**
 * The member has left its group (scope closed or `leave` called): it has no assignment any more.
 *
 * @since 0.1.0
 * @category errors
 */
export class MembershipClosed extends Data.TaggedError("MembershipClosed")<{
  readonly groupId: string
}> {
  override get message() {
    return `This member has left group ${JSON.stringify(this.groupId)}`
  }
}

/**
 * Work was attempted under an assignment that is no longer current (newer epoch, lease gone).
 * `epoch` is the assignment's, or -1 where there is none (slots mode, whose fences name slots and
 * generations: see `reason`).
 *
 * @since 0.1.0
 * @category errors
 */
export class StaleAssignment extends Data.TaggedError("StaleAssignment")<{
  readonly epoch: number
  readonly reason: string
}> {
  override get message() {
    return this.epoch < 0
      ? `Assignment is stale: ${this.reason}`
      : `Assignment of epoch ${this.epoch} is stale: ${this.reason}`
  }
}

/** A fenced transaction, named by its epoch; slots mode's fences (epoch -1) name slots, not an epoch. */
const fencedTransaction = (epoch: number): string => epoch < 0 ? "Fenced transaction" : `Fenced transaction of epoch ${epoch}`

/**
 * A fenced transaction ran past its time limit and was rolled back: nothing of it committed. The
 * limit is the `timeout` option of `Fenced.fenced` / `Fenced.fencedWith`; `side` says which clock
 * ended it: `"client"` (the library's own timer) or `"server"` (the backstop of `timeout` + 1 s that
 * PostgreSQL enforces for a stalled client, reported as SQLSTATE 57014, 25P03 or 25P04). `epoch` is
 * the assignment's, or -1 in slots mode (as `StaleAssignment`'s).
 *
 * @since 0.1.0
 * @category errors
 */
export class FenceTimeout extends Data.TaggedError("FenceTimeout")<{
  readonly epoch: number
  readonly timeoutMs: number
  readonly side: "client" | "server"
  readonly cause?: unknown
}> {
  override get message() {
    return `${fencedTransaction(this.epoch)} exceeded its ${this.timeoutMs} ms limit${
      this.side === "server" ? " (ended by the server's backstop)" : ""
    } and was rolled back: nothing committed. Do less per transaction, or raise the \`timeout\` option of fenced (keep it well under the membership's statementTimeout)`
  }
}

/**
 * A fenced transaction's fence was undone: its body ended the transaction (`COMMIT`, `ROLLBACK`),
 * rolled back past the fence's start (`ROLLBACK TO SAVEPOINT` of a savepoint from before it), or
 * removed the server-side backstop (`RESET ALL`, `SET statement_timeout ...`), or the body or the
 * session's default turned ordinary triggers off (`session_replication_role = replica`), or the block
 * is nested in an app transaction above READ COMMITTED (its lease checks would read that transaction's
 * snapshot: docs/fencing.md, "Isolation"). The
 * transaction is rolled back; statements the body ran after its own `COMMIT` ran outside any fence
 * (see `reason`). One case **committed**, and its `reason` begins "the transaction COMMITTED": a fence
 * of its own transaction whose `COMMIT` ended later after the fence's last check than the lease had
 * left then, with the lease ended by the time it was read again (PostgreSQL writes a body's
 * notifications at `COMMIT`, after every check: docs/fencing.md). `epoch` is the assignment's, or -1
 * in slots mode (as `StaleAssignment`'s).
 *
 * @since 0.1.0
 * @category errors
 */
export class FenceBroken extends Data.TaggedError("FenceBroken")<{
  readonly epoch: number
  readonly reason: string
}> {
  override get message() {
    return `${fencedTransaction(this.epoch)} was broken: ${this.reason}`
  }
}

/**
 * A join with an instance id (static membership) found that id held by a live member: another
 * process with the same instance id renews its lease. The join does not take it (that process may be
 * working); the member waits and retries until the holder releases it or its lease runs out on the
 * database clock. A `StoreError` of operation `"join"` (so every store wrapper passes it through),
 * told apart by `instanceof`.
 *
 * @since 0.1.0
 * @category errors
 */
export class InstanceBusy extends StoreError {
  /** The instance id asked for. */
  declare readonly instanceId: string
  /** Who holds it: `name (host/pid)`. */
  declare readonly holder: string
  constructor(args: { readonly instanceId: string; readonly holder: string }) {
    super({
      operation: "join",
      reason: `instance id ${JSON.stringify(args.instanceId)} is held by a live member (${args.holder})`
    })
    Object.assign(this, { instanceId: args.instanceId, holder: args.holder })
  }
}

/**
 * A join found a member of the group **overdue**: its last renewal is older than the joiner's
 * `overdueAfterMs` while its lease has not run out (crashed or hung, and not reaped yet; or slow).
 * A change now would make every working member stop for a barrier that this member may never clear
 * until its lease runs out. So the join changed nothing but its own **waiting row** (no index, not
 * counted in N): the others keep working, and the next change (the reap of the overdue member, in
 * the same transaction, or any other) gives the waiting row an index. The joiner polls (`join` with
 * `waiting`) until then, or until the overdue member renews, for at most one lease. A `StoreError`
 * of operation `"join"`, told apart by `instanceof`.
 *
 * @since 0.1.0
 * @category errors
 */
export class JoinDeferred extends StoreError {
  /** The overdue member: `name (host/pid)`. */
  declare readonly overdue: string
  /** How long ago it last renewed, by the store's clock. */
  declare readonly heartbeatAgeMs: number
  /** How long its lease has left, by the store's clock. */
  declare readonly leaseLeftMs: number
  constructor(args: { readonly overdue: string; readonly heartbeatAgeMs: number; readonly leaseLeftMs: number }) {
    super({
      operation: "join",
      reason: `member ${args.overdue} has not renewed for ${args.heartbeatAgeMs} ms (lease left ${args.leaseLeftMs} ms); ` +
        "waiting for it to renew or be reaped instead of stopping the group"
    })
    Object.assign(this, { overdue: args.overdue, heartbeatAgeMs: args.heartbeatAgeMs, leaseLeftMs: args.leaseLeftMs })
  }
}

/**
 * A join asked for another mode than its group's: slots mode with another slot count, slots mode in
 * a modulo-mode group, or modulo mode in a slots-mode group. A group's mode and slot count are fixed
 * when it is created (its first join); the join changed nothing. `group` and `requested`: the slot
 * counts, `null` for modulo mode.
 *
 * @since 0.3.0
 * @category errors
 */
export class SlotsMismatch extends StoreError {
  /** The group's slot count (`null`: the group is in modulo mode). */
  declare readonly group: number | null
  /** The slot count this member asked for (`null`: modulo mode). */
  declare readonly requested: number | null
  declare readonly groupId: string
  constructor(args: { readonly groupId: string; readonly group: number | null; readonly requested: number | null }) {
    const mode = (slots: number | null) => (slots === null ? "modulo mode" : `slots mode with ${slots} slots`)
    super({
      operation: "join",
      reason: `group ${JSON.stringify(args.groupId)} is in ${mode(args.group)}, but this member asked for ${
        mode(args.requested)
      }: a group's mode and slot count are fixed when it is created`
    })
    Object.assign(this, { group: args.group, requested: args.requested, groupId: args.groupId })
  }
}
