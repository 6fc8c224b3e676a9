/**
 * The store boundary: the few atomic operations the protocol needs. Two implementations,
 * `PgMembershipStore` (PostgreSQL, database clock) and `InMemoryMembershipStore` (Effect `Clock`),
 * pass one contract test suite.
 *
 * @since 0.1.0
 */
import type { Effect, Option, Scope, Stream } from "effect"
import { Context } from "effect"
import type { StoreError } from "./MembershipError.js"

/**
 * What a member learns from a join or a renewal.
 *
 * @since 0.1.0
 * @category models
 */
export interface GroupView {
  /** The group's current epoch. */
  readonly epoch: number
  /** Members in the current epoch. */
  readonly size: number
  /** This member's index in the current epoch. */
  readonly index: number
  /** The epoch this member has acknowledged, as stored. */
  readonly acked: number
  /**
   * Every member of the group has acknowledged `epoch`: work under it may start. Always `false` when
   * the view could not be read from one committed state as a whole (a renewal that waited for a
   * change's row lock learns its new epoch, size and index from its own row, and no more).
   */
  readonly allAcked: boolean
  /** Some member's lease has expired (or the rows need repair) by the store's clock: whoever sees this reaps. */
  readonly expired: boolean
  /**
   * The group's incarnation: with `epoch`, the fencing token `(incarnation, epoch)`, which is never
   * issued twice for a group (a new incarnation, never below the store clock in milliseconds, begins
   * whenever a change finds no live member, e.g. after a restore from a backup).
   */
  readonly incarnation: number
  /** The store's clock when it judged the lease, in milliseconds since the Unix epoch. */
  readonly clock: number
  /**
   * A join only: it took over the released or expired row of its instance id (static membership):
   * same index, same epoch, no change for the others.
   */
  readonly takenOver?: boolean | undefined
}

/**
 * Static membership, for `join`: the member's instance id (a stable identity within its group) and
 * how long its row is held for it after its lease ran out or it released it.
 *
 * @since 0.1.0
 * @category models
 */
export interface StaticJoin {
  readonly instanceId?: string | undefined
  readonly rejoinGraceMs?: number | undefined
}

/**
 * A hint that the group may have changed. Notifications come from anyone who can connect (any role
 * can `pg_notify` on any channel), so a wake-up carries nothing to act on: it only makes the member
 * ask the database sooner. `lost`: the notification connection was lost, and why (notifications may
 * have been missed meanwhile).
 *
 * @since 0.1.0
 * @category models
 */
export interface Wakeup {
  readonly lost?: string | undefined
  /** The notification connection is back after a loss that was reported (`lost`), said once too. */
  readonly restored?: boolean | undefined
}

/**
 * Who a member is, for `status`.
 *
 * @since 0.1.0
 * @category models
 */
export interface MemberInfo {
  readonly memberId: string
  readonly name: string
  readonly host: string
  readonly pid: number
}

/**
 * A member row, for `status`.
 *
 * @since 0.1.0
 * @category models
 */
export interface MemberRow extends MemberInfo {
  readonly index: number | null
  /** Since when the member's work has not stopped though it was asked to (it holds the barrier). */
  readonly stoppingSince: Date | null
  readonly ackedEpoch: number
  readonly joinedAt: Date
  /** Milliseconds since the last renewal, by the store's clock. */
  readonly heartbeatAgeMs: number
  /** Milliseconds of lease left (negative: expired), by the store's clock. */
  readonly leaseLeftMs: number
  /** Static membership: the member's instance id (null or absent: none). */
  readonly instanceId?: string | null | undefined
  /** Static membership: when the row was released (a graceful leave); it is held, not live. */
  readonly releasedAt?: Date | null | undefined
  /** Static membership: milliseconds until reaping may delete the row (lease plus rejoin grace). */
  readonly graceLeftMs?: number | null | undefined
}

/**
 * A group row, for `status` and `groups`.
 *
 * @since 0.1.0
 * @category models
 */
export interface GroupRow {
  readonly groupId: string
  readonly epoch: number
  readonly size: number
  readonly changedAt: Date
  /** See `GroupView.incarnation`. */
  readonly incarnation: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface MembershipStoreService {
  /**
   * One transaction under the group lock: reap expired members, drop this member's old row,
   * insert it (acknowledging the new epoch), reassign indices, bump the epoch, notify.
   *
   * With an instance id (`statics`): if a row of that id exists and its lease is not live (released,
   * or run out on the store's clock), take it over instead: this member's id, a fresh lease, the
   * same index in the same epoch, acknowledged; nothing else changes (`takenOver`). If its lease is
   * live, fail with `InstanceBusy` and change nothing.
   */
  readonly join: (
    groupId: string,
    member: MemberInfo,
    leaseMs: number,
    statics?: StaticJoin | undefined
  ) => Effect.Effect<GroupView, StoreError>
  /**
   * One statement: renew the lease if it has not expired, record the acknowledged epoch, return the
   * group's view, read from one committed state. `None` when the row is gone or its lease expired:
   * the member must rejoin. `stuck`: the member's work does not stop (shown by `status`).
   * An acknowledgement that completes the barrier notifies the group after its commit (best
   * effort); so does any renewal with `announce` that finds the barrier complete (a waiting member
   * that polled, in case two last acknowledgements raced and neither saw the other).
   */
  readonly heartbeat: (
    groupId: string,
    memberId: string,
    ack: number,
    leaseMs: number,
    options?: { readonly announce?: boolean | undefined; readonly stuck?: boolean | undefined }
  ) => Effect.Effect<Option.Option<GroupView>, StoreError>
  /** Under the group lock: delete expired members; if any, reassign and bump. Returns how many were reaped. */
  readonly reap: (groupId: string) => Effect.Effect<number, StoreError>
  /** Under the group lock: delete this member (and expired ones); if any, reassign and bump. */
  readonly leave: (groupId: string, memberId: string) => Effect.Effect<boolean, StoreError>
  /**
   * Static membership, the graceful leave of a member with an instance id, once its work has
   * stopped: under the group lock, its row stays (index kept, epoch unchanged: nobody renegotiates),
   * its lease ends now, and it acknowledges the current epoch. Reaping deletes the row once its
   * rejoin grace has passed; a join with its instance id takes it over before. `false` when this
   * member has no row (or no instance id).
   */
  readonly release: (groupId: string, memberId: string) => Effect.Effect<boolean, StoreError>
  /** Wake-ups after any change of the group. Lossy: polling stays the source of truth. */
  readonly wakeups: (groupId: string) => Effect.Effect<Stream.Stream<Wakeup>, never, Scope.Scope>
  /** The group row, if the group exists. */
  readonly group: (groupId: string) => Effect.Effect<Option.Option<GroupRow>, StoreError>
  /** The group's member rows, by index. */
  readonly members: (groupId: string) => Effect.Effect<ReadonlyArray<MemberRow>, StoreError>
  /** Every group. */
  readonly groups: Effect.Effect<ReadonlyArray<GroupRow>, StoreError>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class MembershipStore extends Context.Tag("modulo-group/MembershipStore")<MembershipStore, MembershipStoreService>() {}
