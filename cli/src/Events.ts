/**
 * What `join` prints: one line per state change and one per work tick, as text or JSON Lines.
 *
 * @since 0.1.0
 * @internal
 */
import { MemberState as State, Slots } from "modulo-group"
type Assignment = State.Assignment
type MemberState = State.MemberState

/**
 * One JSON Lines record of `join --json`. Exactly these fields; `null` where not known.
 *
 * @since 0.1.0
 * @internal
 */
export interface JoinEvent {
  /** ISO-8601 UTC with milliseconds, when the line was written. */
  readonly ts: string
  readonly member: string
  readonly group: string
  readonly event: "state" | "work"
  /** `joining`, `awaiting`, `assigned`, `renegotiating`, `fenced`, `lost`, `leaving`, `left`. */
  readonly state: string
  /** The epoch the state refers to (for `renegotiating`, the epoch being left). */
  readonly epoch: number | null
  readonly index: number | null
  readonly size: number | null
  /**
   * The member's instance id (static membership, `--instance-id`), `null` without one. `join`
   * always writes it (optional in the type for records of older versions).
   */
  readonly instance?: string | null
  /** Slots mode only: the slots the member works, ascending (`index` is then `null`, `size` the member count). */
  readonly slots?: ReadonlyArray<number>
}

/**
 * @since 0.1.0
 * @internal
 */
export const stateName = (state: MemberState): string => state._tag.toLowerCase()

const slotOf = (state: MemberState) =>
  "epoch" in state ? { epoch: state.epoch, index: state.index, size: state.size } : { epoch: null, index: null, size: null }

/**
 * @since 0.1.0
 * @internal
 */
export const stateEvent = (
  member: string,
  group: string,
  state: MemberState,
  now: Date,
  instance: string | null = null,
  slots?: ReadonlyArray<number> | undefined
): JoinEvent => ({
  ts: now.toISOString(),
  member,
  group,
  event: "state",
  state: stateName(state),
  ...slotOf(state),
  ...(slots === undefined ? {} : { index: null, slots }),
  instance
})

/**
 * Slots mode: a work line's record, with the slots the member works (ascending), the member count
 * as `size`, and `index` `null`.
 *
 * @since 0.3.0
 * @internal
 */
export const slotsWorkEvent = (
  member: string,
  group: string,
  slots: ReadonlyArray<number>,
  size: number,
  epoch: number | null,
  now: Date,
  instance: string | null = null
): JoinEvent => ({
  ts: now.toISOString(),
  member,
  group,
  event: "work",
  state: "assigned",
  epoch,
  index: null,
  size,
  instance,
  slots
})

/**
 * Slots mode, the text of a work line: `<group>:[slots 16/64 of 4 members: 0-15] working away as usual...`
 * (`none` while it works no slot).
 *
 * @since 0.3.0
 * @internal
 */
export const slotsWorkText = (group: string, slots: ReadonlyArray<number>, count: number, size: number): string =>
  `${group}:[slots ${slots.length}/${count} of ${size} member${size === 1 ? "" : "s"}: ${
    slots.length === 0 ? "none" : Slots.toRanges(slots)
  }] working away as usual...`

/**
 * @since 0.1.0
 * @internal
 */
export const workEvent = (
  member: string,
  group: string,
  a: Assignment,
  now: Date,
  instance: string | null = null
): JoinEvent => ({
  ts: now.toISOString(),
  member,
  group,
  event: "work",
  state: "assigned",
  epoch: a.epoch,
  index: a.index,
  size: a.size,
  instance
})

/**
 * The text form of a state line: `<group>: assigned epoch 3 [1/4]`.
 *
 * @since 0.1.0
 * @internal
 */
export const stateText = (group: string, state: MemberState): string => `${group}: ${State.format(state)}`

/**
 * Slots mode, the text form of a state line: the index means nothing there, so the member count
 * replaces it: `<group>: assigned epoch 3 (4 members)`.
 *
 * @since 0.3.0
 * @internal
 */
export const slotsStateText = (group: string, state: MemberState): string =>
  stateText(group, state).replace(/ \[\d+\/(\d+)\]/, (_, n: string) => ` (${n} member${n === "1" ? "" : "s"})`)

/**
 * The text form of a work tick, as the original printed it: `<group>:[<k>/<N>] working away as usual...`.
 *
 * @since 0.1.0
 * @internal
 */
export const workText = (group: string, a: Assignment): string => `${group}:[${a.index}/${a.size}] working away as usual...`
