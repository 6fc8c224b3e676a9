/**
 * The states of one member, as seen by the app. Decisions about them live in `Transition`.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"

/**
 * A member's place in one epoch of its group: the epoch, the group size in it, and the member's
 * index (it works on `item % size === index`). Every state that knows its epoch carries one.
 *
 * @since 0.1.0
 * @category models
 */
export interface Slot {
  readonly epoch: number
  readonly index: number
  readonly size: number
  /**
   * The group's incarnation: `(incarnation, epoch)` is the fencing token, never issued twice for a
   * group even after a restore (compare the pair in order; see docs/fencing.md).
   */
  readonly incarnation: number
}

/**
 * What work receives: the slot it runs under, and whether this member leads it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Assignment extends Slot {
  /** Index 0 of the current epoch: the one member that runs singleton duties. */
  readonly isLeader: boolean
  /**
   * The membership that handed this assignment out (every assignment the library gives has it;
   * copies keep it): `Fenced.fenced` refuses an assignment of another membership, whose epoch,
   * index and size may match this one's by chance (docs/fencing.md, "Which assignment").
   */
  readonly owner?: AssignmentOwner | undefined
}

/**
 * The membership an `Assignment`, `OwnedSlot` or `OwnedSlots` came from.
 *
 * @since 0.5.0
 * @category models
 */
export interface AssignmentOwner {
  readonly groupId: string
  readonly memberId: string
}

/**
 * Slots mode (docs/slots.md): one slot of the group's `count` that this member holds and works, at
 * its `generation` (the slot's fencing token with the member: `fenced` checks both). What
 * `Membership.whileOwning` work receives. (Not a `Slot`, which is a member's place in an epoch.)
 *
 * @since 0.3.0
 * @category models
 */
export interface OwnedSlot {
  readonly slot: number
  readonly generation: number
  /** The group's slot count S: items with `id mod S === slot` are this slot's. */
  readonly count: number
  /** The membership that handed it out (see `Assignment`'s `owner`). */
  readonly owner?: AssignmentOwner | undefined
}

/**
 * Slots mode: every slot this member works, ascending, with their generations (same order): what
 * `Membership.whileOwningAll` work receives. Pass it to `Ownership.owned` and `Fenced.fenced`.
 *
 * @since 0.3.0
 * @category models
 */
export interface OwnedSlots {
  readonly slots: ReadonlyArray<number>
  readonly generations: ReadonlyArray<number>
  /** The group's slot count S. */
  readonly count: number
  /** The membership that handed it out (see `Assignment`'s `owner`). */
  readonly owner?: AssignmentOwner | undefined
}

/**
 * The part of a slot that names an epoch once and for all: `(incarnation, epoch)`.
 *
 * @since 0.1.0
 * @category models
 */
export type FencingToken = Pick<Slot, "incarnation" | "epoch">

/**
 * Whether two slots (or assignments) are in the same epoch of the same group incarnation.
 *
 * @since 0.1.0
 * @category getters
 */
export const sameEpoch = (x: FencingToken, y: FencingToken): boolean =>
  x.epoch === y.epoch && x.incarnation === y.incarnation

/**
 * The assignment work runs under in `slot`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const toAssignment = (slot: Slot): Assignment => ({
  epoch: slot.epoch,
  index: slot.index,
  size: slot.size,
  incarnation: slot.incarnation,
  isLeader: slot.index === 0
})

/**
 * - `Joining`: not a member yet; the join transaction is (re)tried.
 * - `Awaiting`: member of `epoch`, has acknowledged it, waits until every member has (the barrier).
 * - `Assigned`: everyone acknowledged `epoch`; the member works on its index.
 * - `Renegotiating`: a newer epoch `next` exists; the member stops its work, then acknowledges.
 *   `next` equal to the member's own epoch: a notification claimed a newer one, which the member
 *   has not read from the database yet; once stopped it waits and asks (`Transition`'s `Notified`).
 *   `stuck`: the work did not stop within `stopTimeout`; the member keeps its lease and never
 *   acknowledges until it does (it holds the barrier, loudly).
 * - `Fenced`: the local lease deadline passed (hang, slow or unreachable database); no work until a
 *   renewal succeeds. `stopping`: the work has not finished stopping yet (`stuck`: past `stopTimeout`).
 * - `Lost`: the member's row is gone (reaped or deleted); it rejoins as a new member once its old
 *   work has stopped.
 * - `Leaving` / `Left`: graceful leave in progress / done. While `stopping`, the work has not
 *   stopped yet: the member keeps renewing and deletes its row only after it has.
 *
 * @since 0.1.0
 * @category models
 */
export type MemberState = Data.TaggedEnum<{
  Joining: {}
  Awaiting: Slot
  Assigned: Slot
  Renegotiating: Slot & { readonly next: Slot; readonly stuck: boolean }
  Fenced: Slot & { readonly stopping: boolean; readonly stuck: boolean }
  Lost: {}
  Leaving: { readonly stopping: boolean; readonly stuck: boolean }
  Left: {}
}>

/**
 * @since 0.1.0
 * @category constructors
 */
export const MemberState = Data.taggedEnum<MemberState>()

/**
 * Every state tag, in protocol order (used by the transition table and the diagram).
 *
 * @since 0.1.0
 * @category constants
 */
export const tags = ["Joining", "Awaiting", "Assigned", "Renegotiating", "Fenced", "Lost", "Leaving", "Left"] as const

/**
 * @since 0.1.0
 * @category models
 */
export type Tag = MemberState["_tag"]

/**
 * The assignment a state allows work under, if any.
 *
 * @since 0.1.0
 * @category getters
 */
export const assignment = (state: MemberState): Assignment | undefined =>
  state._tag === "Assigned" ? toAssignment(state) : undefined

/**
 * The epoch a state knows about, if any.
 *
 * @since 0.1.0
 * @category getters
 */
export const epochOf = (state: MemberState): number | undefined =>
  "epoch" in state ? state.epoch : undefined

/**
 * Whether the member's work has not stopped though it was asked to, past `stopTimeout`.
 *
 * @since 0.2.0
 * @category getters
 */
export const isStuck = (state: MemberState): boolean =>
  (state._tag === "Renegotiating" || state._tag === "Fenced" || state._tag === "Leaving") && state.stuck

/**
 * A one-line description for logs and the CLI.
 *
 * @since 0.1.0
 * @category formatting
 */
export const format = (state: MemberState): string =>
  MemberState.$match(state, {
    Joining: () => "joining",
    Awaiting: (s) => `awaiting epoch ${s.epoch} [${s.index}/${s.size}]`,
    Assigned: (s) => `assigned epoch ${s.epoch} [${s.index}/${s.size}]`,
    Renegotiating: (s) =>
      (s.next.epoch === s.epoch
        ? `renegotiating epoch ${s.epoch} -> ? (a notification claimed a newer epoch: stopping before asking)`
        : `renegotiating epoch ${s.epoch} -> ${s.next.epoch}`) +
      (s.stuck ? " (work will not stop: holding the barrier)" : ""),
    Fenced: (s) =>
      `fenced (lease deadline passed in epoch ${s.epoch})${s.stuck ? " (work will not stop)" : s.stopping ? " (stopping work)" : ""}`,
    Lost: () => "lost (membership gone; rejoining)",
    Leaving: (s) => (s.stuck ? "leaving (work will not stop: holding the barrier)" : "leaving"),
    Left: () => "left"
  })
