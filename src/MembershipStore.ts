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
  /** Every member of the group has acknowledged `epoch`: work under it may start. */
  readonly barrier: boolean
  /** Some member's lease has expired by the store's clock: whoever sees this reaps. */
  readonly expired: boolean
}

/**
 * A hint that the group changed: `epoch` is the epoch it announces (unknown after a reconnect),
 * `ready` that every member of that epoch has acknowledged it (the barrier is down), `lost` that
 * the notification connection was lost, and why (notifications may have been missed).
 *
 * @since 0.1.0
 * @category models
 */
export interface Wakeup {
  readonly epoch: number | undefined
  readonly ready: boolean
  readonly lost?: string
}

/**
 * Parses a notification payload: `"<epoch>"` or `"<epoch>:ready"`.
 *
 * @since 0.1.0
 * @category models
 */
export const parseWakeup = (payload: string | undefined): Wakeup => {
  const [epoch, flag] = (payload ?? "").split(":")
  const n = Number(epoch)
  return Number.isSafeInteger(n) && n > 0 ? { epoch: n, ready: flag === "ready" } : { epoch: undefined, ready: false }
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
  readonly ackedEpoch: number
  readonly joinedAt: Date
  /** Milliseconds since the last renewal, by the store's clock. */
  readonly heartbeatAgeMs: number
  /** Milliseconds of lease left (negative: expired), by the store's clock. */
  readonly leaseLeftMs: number
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
}

/**
 * @since 0.1.0
 * @category models
 */
export interface MembershipStoreService {
  /**
   * One transaction under the group lock: reap expired members, drop this member's old row,
   * insert it (acknowledging the new epoch), reassign indices, bump the epoch, notify.
   */
  readonly join: (groupId: string, member: MemberInfo, leaseMs: number) => Effect.Effect<GroupView, StoreError>
  /**
   * One statement: renew the lease if it has not expired, record the acknowledged epoch, return the
   * group's view. `None` when the row is gone or its lease expired: the member must rejoin.
   * The acknowledgement that completes the barrier notifies the group; so does any renewal with
   * `announce` that finds the barrier complete (a waiting member that polled, in case two last
   * acknowledgements raced and neither saw the other).
   */
  readonly heartbeat: (
    groupId: string,
    memberId: string,
    ack: number,
    leaseMs: number,
    announce?: boolean
  ) => Effect.Effect<Option.Option<GroupView>, StoreError>
  /** Under the group lock: delete expired members; if any, reassign and bump. Returns how many were reaped. */
  readonly reap: (groupId: string) => Effect.Effect<number, StoreError>
  /** Under the group lock: delete this member (and expired ones); if any, reassign and bump. */
  readonly leave: (groupId: string, memberId: string) => Effect.Effect<boolean, StoreError>
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
