/**
 * The store boundary: the few atomic operations the protocol needs. Two implementations,
 * `PgMembershipStore` (PostgreSQL, database clock) and `InMemoryMembershipStore` (Effect `Clock`),
 * pass one contract test suite.
 *
 * @since 0.1.0
 */
import type { Effect, Option, Scope, Stream } from "effect"
import * as Context from "effect/Context"
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
   * issued twice for a group by its changes. Every change raises it to at least the store clock in
   * milliseconds (so a change after a restore from a backup issues a token above every one issued
   * before it), and a change that finds no live member begins a new one (one above at least). A static
   * takeover keeps the token of the row it takes over.
   */
  readonly incarnation: number
  /** The store's clock when it judged the lease, in milliseconds since the Unix epoch. */
  readonly clock: number
  /**
   * The longest lease of the group's live rows (this member's included) as the join or renewal read
   * them, in milliseconds (each row's lease as its last renewal or join wrote it). What
   * a member waits out before it reaps after a step of the store's clock, or rejoins after its row
   * vanished early, is at least this: members of one group may run with different leases (an
   * adversarial review: waiting out only its own lease, a member of lease 2 s reaped, or formed a new
   * epoch beside, a member of lease 30 s still working). Absent: the member's own lease.
   *
   * @since 0.5.0
   */
  readonly longestLeaseMs?: number | undefined
  /**
   * A join only: it took over the released or expired row of its instance id (static membership):
   * same index, same epoch, no change for the others.
   */
  readonly takenOver?: boolean | undefined
  /**
   * Slots mode only (absent in modulo mode): this member's slots, read in the same statement as the
   * rest of the view. `index` and the barrier (`allAcked`) mean nothing in slots mode.
   */
  readonly slots?: SlotView | undefined
}

/**
 * One slot this member holds (it may work it), at its generation, and whether it still owns it
 * (`owned: false`: a change gave it to another member; stop its work, then release it).
 *
 * @since 0.3.0
 * @category models
 */
export interface HeldSlot {
  readonly slot: number
  readonly generation: number
  readonly owned: boolean
}

/**
 * A member's part of a slots-mode group, as a join or a renewal read it.
 *
 * @since 0.3.0
 * @category models
 */
export interface SlotView {
  /** The group's slot count S. */
  readonly count: number
  /** The slots this member holds, ascending. */
  readonly held: ReadonlyArray<HeldSlot>
  /** The slots this member owns but does not hold yet (their old holder has not released them), ascending. */
  readonly pending: ReadonlyArray<number>
}

/**
 * A slot's row, for `status` and tests.
 *
 * @since 0.3.0
 * @category models
 */
export interface SlotRow {
  readonly slot: number
  readonly owner: string | null
  readonly holder: string | null
  readonly generation: number
}

/**
 * A slot whose work this member has stopped, at the generation it worked it under (`releaseSlots`).
 *
 * @since 0.3.0
 * @category models
 */
export interface StoppedSlot {
  readonly slot: number
  readonly generation: number
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
 * How a `join` treats an overdue member (see `JoinDeferred`).
 *
 * @since 0.1.0
 * @category models
 */
export interface JoinOptions {
  /**
   * A member whose last renewal is at least this old (store clock) while its lease still holds is
   * overdue: the join then waits (fails with `JoinDeferred` after inserting its waiting row) instead
   * of starting a change that the overdue member would hold. Absent: never wait.
   */
  readonly overdueAfterMs?: number | undefined
  /**
   * The joiner was told to wait and asks again: if a change has given its waiting row an index in the
   * current epoch, the join takes that row as it is (no new change).
   */
  readonly waiting?: boolean | undefined
  /**
   * Slots mode: the group's slot count S (1..16384). A join that creates the group (no change has
   * happened in it yet) fixes it; a join that asks for another count, or for slots mode in a
   * modulo-mode group (or the reverse), fails with `SlotsMismatch` and changes nothing. Absent: modulo
   * mode.
   */
  readonly slots?: number | undefined
  /**
   * The joiner listens to the group's notifications (the member's `notifications`): a join that
   * found the group's lock held by another process's change may then try again at the group's next
   * notification (rate-limited) instead of only after its backoff. Absent: backoff only, and no
   * LISTEN on the member's behalf.
   */
  readonly notifications?: boolean | undefined
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
  /**
   * The notification's payload as it came (untrusted: a member may skip a wake-up whose payload
   * claims only what it already knows, and a working member told of a newer epoch stops its work
   * before it asks the database; nothing else is done on a payload's word). Absent on wake-ups that are not a
   * notification (a loss, a reconnect).
   */
  readonly payload?: string | undefined
  /**
   * Whether the store is listening for the group's notifications now (true: a change's
   * notification will wake the member; false: lost or never set up, the member must poll). Absent:
   * the store does not say (the member polls as if it were not listening).
   */
  readonly listening?: boolean | undefined
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
 * Static membership: a member waiting for its instance id, which a live member holds, for `status`
 * (it has no member row). Display only: nothing in the protocol reads it.
 *
 * @since 0.1.0
 * @category models
 */
export interface WaiterRow extends MemberInfo {
  readonly instanceId: string
  /** Milliseconds since its first busy join, by the store's clock. */
  readonly waitingMs: number
  /** Milliseconds since its latest retry, by the store's clock. */
  readonly seenAgoMs: number
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
  /** Slots mode: the slot count (absent or null: modulo mode). */
  readonly slots?: number | null | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface MembershipStoreService {
  /**
   * One transaction under the group lock: reap expired members, drop this member's old row,
   * insert it (acknowledging the new epoch), reassign indices, bump the epoch, notify. A store may
   * make one change of several of its own joins waiting at once (the PostgreSQL store does, for
   * plain joins: docs/protocol.md, "Changes of one process go together"); each join returns only
   * once that change has committed, with its own index. Leaves likewise.
   *
   * With an instance id (`statics`): if a row of that id exists and its lease is not live (released,
   * or run out on the store's clock), take it over instead: this member's id, a fresh lease, the
   * same index in the same epoch, acknowledged; nothing else changes (`takenOver`). If its lease is
   * live, fail with `InstanceBusy` and change nothing; unless the row is this member's own: then the
   * join is a change like any other (its old row dropped, a fresh one), never a takeover (a member
   * rejoins with a live row after refusing a view its row contradicted: a takeover would keep the
   * index in the same epoch).
   *
   * With `options.overdueAfterMs`: if a member of the group is overdue (its last renewal that old,
   * its lease still live), insert or renew only this member's waiting row (no index, not in N, no
   * reap, no new epoch) and fail with `JoinDeferred`; the next change (a reap, a join, a leave) gives
   * the waiting row an index. A waiting row waits at most `leaseMs` (from its first deferral): then
   * the join goes ahead. With `options.waiting`, a waiting row that has been given an index in the
   * current epoch is this join's result (acknowledged, lease renewed, no change).
   */
  readonly join: (
    groupId: string,
    member: MemberInfo,
    leaseMs: number,
    statics?: StaticJoin | undefined,
    options?: JoinOptions | undefined
  ) => Effect.Effect<GroupView, StoreError>
  /**
   * One statement: renew the lease if it has not expired, record the acknowledged epoch, return the
   * group's view, read from one committed state. `None` when the row is gone or its lease expired:
   * the member must rejoin. `stuck`: the member's work does not stop (shown by `status`).
   * An acknowledgement that completes the barrier notifies the group after its commit (best
   * effort); so does any renewal with `announce` that finds the barrier complete (a waiting member
   * that polled, in case two last acknowledgements raced and neither saw the other).
   *
   * A member's renewals apply in the order it sent them: one that reaches the database after a
   * later one of the same member has applied (a statement held up on a dead connection, then
   * delivered) changes nothing and returns `None` (the PostgreSQL store numbers them, migration
   * 0010; `test/safety/renewalOrder.pg.test.ts`). A member sends one renewal at a time, and its
   * interpreter relies on this order: no view of a renewal sent before the one that acknowledged
   * the group's epoch with `ackCurrent` starts work (`Member.ackingFrom` in Transition.ts).
   */
  readonly heartbeat: (
    groupId: string,
    memberId: string,
    ack: number,
    leaseMs: number,
    options?: {
      readonly announce?: boolean | undefined
      readonly stuck?: boolean | undefined
      /**
       * The member is in slots mode: the view carries its slots (`GroupView.slots`) when its group
       * is in slots mode. Without it no slot is read (a modulo-mode member's renewal needs no grant
       * on `modulo_group.slots`).
       */
      readonly slots?: boolean | undefined
      /**
       * The member's work is stopped and it waits at the barrier: acknowledge the group's epoch as
       * this statement reads it (at least `ack`), not only `ack`. So the renewal that learns a change
       * also acknowledges it (docs/protocol.md, "Stopping on a notification's word"). Never for a
       * member whose work may run.
       */
      readonly ackCurrent?: boolean | undefined
      /**
       * The place (size and index) this member holds in epoch `ack`, as it learned it: the store records
       * `ack` only if the member's row was given that place in that epoch (its stamp, `assigned_epoch`
       * equal to `ack`), and otherwise records nothing new (`ackCurrent` aside). An epoch number the
       * database issued twice (a restore that took back the change that issued it, then another change:
       * docs/guarantees.md, "Fencing tokens") names another assignment: the members' acknowledgement of
       * the first must not lower the second's barrier. Absent: `ack` is recorded as it is (slots mode,
       * and a member that knows no place of that epoch). A member leaving while its work stops names a
       * place no row is given (size -1): nothing is recorded for the epoch its row is stamped with.
       *
       * @since 0.5.0
       */
      readonly ackPlace?: { readonly size: number; readonly index: number } | undefined
      /**
       * A plain periodic renewal: the store may hold it up to this many milliseconds to send it with
       * the renewals of other members (the Postgres store renews all its members' queued requests
       * in one statement). The caller renews that much earlier than it must (docs/operations.md,
       * "Heartbeats share statements"). Default 0: sent as soon as nothing is in flight.
       */
      readonly holdMs?: number | undefined
      /**
       * A held renewal (`holdMs` above 0) that the caller may want sent early: once the store has
       * queued it, it hands `early` an effect that sends it at once, answering whether it had not been
       * sent yet (so that it goes after that call; `false`: it is on its way already). A store that
       * does not share statements (`sharesHeartbeats` unset) may ignore it: no member holds a renewal
       * there.
       */
      readonly early?: ((sendNow: Effect.Effect<boolean>) => Effect.Effect<void>) | undefined
    }
  ) => Effect.Effect<Option.Option<GroupView>, StoreError>
  /**
   * Under the group lock: delete expired members; if any, reassign (waiting joiners get an index in
   * the same change) and bump. Returns how many members were reaped (expired waiting rows are deleted
   * too, without a change, and not counted).
   */
  readonly reap: (groupId: string) => Effect.Effect<number, StoreError>
  /**
   * Under the group lock: delete this member (and expired ones); if any member went, reassign and
   * bump. Deleting a waiting row (a joiner that stopped waiting) is no change.
   */
  readonly leave: (groupId: string, memberId: string) => Effect.Effect<boolean, StoreError>
  /**
   * Static membership, the graceful leave of a member with an instance id, once its work has
   * stopped: under the group lock, its row stays (index kept, epoch unchanged: nobody renegotiates),
   * its lease ends now, and it acknowledges the current epoch. Reaping deletes the row once its
   * rejoin grace has passed; a join with its instance id takes it over before. `false` when this
   * member has no row (or no instance id).
   */
  readonly release: (groupId: string, memberId: string) => Effect.Effect<boolean, StoreError>
  /**
   * Static membership, for `status` only: this member waits for `instanceId`, which a live member
   * holds (its join failed with `InstanceBusy`). Writes (or refreshes) its waiter row, shown while
   * it is younger than `leaseMs`. Never part of a membership decision: a forged or stale row changes
   * only what `status` shows.
   */
  readonly wait: (
    groupId: string,
    member: MemberInfo,
    instanceId: string,
    leaseMs: number
  ) => Effect.Effect<void, StoreError>
  /** Static membership: deletes this member's waiter row (it took the instance over, or stopped waiting). */
  readonly stopWaiting: (groupId: string, memberId: string) => Effect.Effect<void, StoreError>
  /**
   * The group's waiters seen within their lease that hold no member row, by instance id, oldest
   * first.
   */
  readonly waiters: (groupId: string) => Effect.Effect<ReadonlyArray<WaiterRow>, StoreError>
  /**
   * Slots mode: releases slots whose work this member has stopped, each at the generation it worked
   * it under. One statement: a slot still held by this member at that generation and owned by another
   * member is handed to its owner (holder := owner, generation + 1); anything else (another
   * generation, another holder, owned by this member again, or this member's lease no longer live)
   * is left alone, so a late or repeated release is harmless. Returns the slots released; notifies
   * the group after its commit when any was (best effort).
   */
  readonly releaseSlots: (
    groupId: string,
    memberId: string,
    stopped: ReadonlyArray<StoppedSlot>
  ) => Effect.Effect<ReadonlyArray<number>, StoreError>
  /**
   * Slots mode: after a release whose outcome this member does not know, a slot it still holds and
   * owns again at the released `generation` is taken back at a new generation (generation + 1), so
   * that the late release, if it ever applies, is a no-op. `true` when it was.
   */
  readonly retakeSlot: (
    groupId: string,
    memberId: string,
    slot: number,
    generation: number
  ) => Effect.Effect<boolean, StoreError>
  /** Slots mode: the group's slot rows, ascending (empty in modulo mode). */
  readonly slotRows: (groupId: string) => Effect.Effect<ReadonlyArray<SlotRow>, StoreError>
  /** Wake-ups after any change of the group. Lossy: polling stays the source of truth. */
  readonly wakeups: (groupId: string) => Effect.Effect<Stream.Stream<Wakeup>, never, Scope.Scope>
  /**
   * The store sends its members' renewals together (the PostgreSQL store): a member's plain periodic
   * renewals then float over the last `renewalWindow` of their heartbeat (`heartbeat`'s `holdMs`).
   * Absent or false: every renewal is asked for when its heartbeat is due, as always.
   */
  readonly sharesHeartbeats?: boolean | undefined
  /**
   * With `sharesHeartbeats`: whether a member other than `memberId` renews through this store now (one
   * renewed within its lease and has not left). A member alone does not float its renewals: there is
   * nobody to send them with. Absent: always, when `sharesHeartbeats`.
   */
  readonly sharesHeartbeatsNow?: ((memberId: string) => Effect.Effect<boolean>) | undefined
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
