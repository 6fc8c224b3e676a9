/**
 * Slots mode's assignment rule, pure (no I/O, no clock, no randomness): which live member owns each
 * of a group's `S` slots, and the per-slot handoffs a change implies. Not wired into the protocol yet
 * (design: docs/slots.md); the store's change transaction is meant to run it under the group lock, so
 * every member that computes it from the same committed state gets the same answer.
 *
 * The rule (`rebalance`), for `N` live members ordered by join order (the caller's array order):
 *
 * 1. Quotas: every member's quota is `floor(S / N)`; the `S mod N` extra slots go to the members that
 *    own the most slots now (ties: earlier in join order). So a newcomer (owning nothing) gets
 *    `floor(S / (N + 1))` and the members above quota are the most loaded ones.
 * 2. Each member keeps as many of its current slots as its quota allows: its lowest-numbered ones.
 * 3. The free slots (unowned, owned by a member that is not live, or above a quota), in ascending
 *    order, fill the members below quota, in join order.
 *
 * This moves the fewest slots any balanced assignment can: every move is forced (a slot without a
 * live owner, or one above its owner's quota), and giving the extra slots to the most loaded members
 * minimises the slots above quota. From a balanced state, a join moves `floor(S / (N + 1))` slots,
 * all to the newcomer, and a leave or crash moves exactly the departed member's slots, to the least
 * loaded members (tests: test/slots/assignment.test.ts).
 *
 * @since 0.3.0
 */
import * as Data from "effect/Data"

/**
 * A member's stable id (the member row's `member_id`).
 *
 * @since 0.3.0
 * @category models
 */
export type MemberId = string

/**
 * The largest slot count a group may have.
 *
 * @since 0.3.0
 * @category models
 */
export const maxSlots = 16_384

/**
 * Arguments the slot functions do not accept: a bug in the caller, thrown (a defect inside an
 * effect), as `Ownership.InvalidOwnership` is.
 *
 * @since 0.3.0
 * @category errors
 */
export class InvalidSlots extends Data.TaggedError("InvalidSlots")<{
  readonly argument: "slots" | "owners" | "live" | "holders" | "target" | "slot" | "key" | "ranges"
  readonly reason: string
}> {
  override get message() {
    return `modulo-group slots: invalid ${this.argument}: ${this.reason}`
  }
}

/** @internal */
export const checkSlotCount = (slots: number): void => {
  if (typeof slots !== "number" || !Number.isSafeInteger(slots) || slots < 1 || slots > maxSlots) {
    throw new InvalidSlots({ argument: "slots", reason: `must be an integer in [1, ${maxSlots}], got ${String(slots)}` })
  }
}

const checkOwnerArray = (
  argument: "owners" | "holders" | "target",
  slots: number,
  owners: ReadonlyArray<MemberId | null>
): void => {
  if (!Array.isArray(owners) || owners.length !== slots) {
    throw new InvalidSlots({
      argument,
      reason: `must have one entry per slot (${slots}), got ${Array.isArray(owners) ? owners.length : typeof owners}`
    })
  }
  for (const owner of owners) {
    if (owner !== null && (typeof owner !== "string" || owner === "")) {
      throw new InvalidSlots({ argument, reason: `an owner is a non-empty member id or null, got ${JSON.stringify(owner)}` })
    }
  }
}

const checkLive = (live: ReadonlyArray<MemberId>): void => {
  if (!Array.isArray(live)) throw new InvalidSlots({ argument: "live", reason: "must be an array of member ids" })
  const seen = new Set<MemberId>()
  for (const id of live) {
    if (typeof id !== "string" || id === "") {
      throw new InvalidSlots({ argument: "live", reason: `a member id is a non-empty string, got ${JSON.stringify(id)}` })
    }
    if (seen.has(id)) throw new InvalidSlots({ argument: "live", reason: `member ${JSON.stringify(id)} is listed twice` })
    seen.add(id)
  }
}

/**
 * The target owner of every slot after a change: index `s` of the result is slot `s`'s owner, a
 * member of `live`, or `null` for every slot when `live` is empty.
 *
 * - `slots`: the group's slot count `S`, an integer in `[1, 16384]`.
 * - `owners`: the current (committed) owner of each slot, `S` entries; `null` for unowned. An owner
 *   that is not in `live` (it left or was reaped) counts as unowned.
 * - `live`: the live members, distinct, **in join order** (e.g. by `join_seq`): the order breaks
 *   ties, so every caller must pass the same order to get the same answer.
 *
 * Afterwards every slot has a live owner (when any member is live), the members' slot counts differ
 * by at most one, and only the slots that must move have moved (see the module's documentation).
 * Throws `InvalidSlots` for arguments out of range.
 *
 * @since 0.3.0
 * @category assignment
 */
export const rebalance = (
  slots: number,
  owners: ReadonlyArray<MemberId | null>,
  live: ReadonlyArray<MemberId>
): ReadonlyArray<MemberId | null> => {
  checkSlotCount(slots)
  checkOwnerArray("owners", slots, owners)
  checkLive(live)
  const n = live.length
  if (n === 0) return Array.from({ length: slots }, () => null)

  const position = new Map<MemberId, number>(live.map((id, i) => [id, i]))
  // Each live member's current slots, ascending (the loop visits slots in order).
  const held: Array<Array<number>> = live.map(() => [])
  const free: Array<number> = []
  for (let s = 0; s < slots; s++) {
    const owner = owners[s]!
    const p = owner === null ? undefined : position.get(owner)
    if (p === undefined) free.push(s)
    else held[p]!.push(s)
  }

  // 1. Quotas: floor(S / N) each; the S mod N extra slots to the most loaded, ties by join order.
  const base = Math.floor(slots / n)
  const extra = slots % n
  const quota = live.map(() => base)
  const byLoad = live.map((_, i) => i).sort((a, b) => held[b]!.length - held[a]!.length || a - b)
  for (let i = 0; i < extra; i++) quota[byLoad[i]!] = base + 1

  // 2. Each member keeps its lowest-numbered slots up to its quota; the rest are freed.
  const target: Array<MemberId | null> = Array.from({ length: slots }, () => null)
  for (let p = 0; p < n; p++) {
    const mine = held[p]!
    const keep = Math.min(mine.length, quota[p]!)
    for (let j = 0; j < mine.length; j++) {
      if (j < keep) target[mine[j]!] = live[p]!
      else free.push(mine[j]!)
    }
  }

  // 3. The free slots, ascending, fill the members below quota, in join order.
  free.sort((a, b) => a - b)
  let next = 0
  for (let p = 0; p < n; p++) {
    const missing = quota[p]! - Math.min(held[p]!.length, quota[p]!)
    for (let j = 0; j < missing; j++) target[free[next++]!] = live[p]!
  }
  return target
}

/**
 * One slot changing hands: `from` (its holder now, or `null`) stops working it and `to` (its new
 * owner, or `null` when no member is live) starts it.
 *
 * - `after: "release"`: `from` is live. `to` may start only once `from` has stopped the slot's work
 *   and released it, or once `from`'s lease has expired on the database clock (its row is then reaped,
 *   and the reap hands the slot over).
 * - `after: "nothing"`: `from` is `null` or not live (it left, which it does only once all its work
 *   has stopped, or it was reaped, which happens only after its lease expired): `to` may start as
 *   soon as the change has committed.
 *
 * @since 0.3.0
 * @category models
 */
export interface Move {
  readonly slot: number
  readonly from: MemberId | null
  readonly to: MemberId | null
  readonly after: "release" | "nothing"
}

/**
 * The per-slot handoffs from who holds each slot now to its target owner: one `Move` per slot whose
 * holder is not its target, in slot order.
 *
 * - `holders`: the member that may work each slot now (`S` entries, `null` for none). Right after a
 *   settled state it equals the owners `rebalance` was given; while earlier handoffs are still in
 *   flight, a slot's holder may differ from its owner.
 * - `target`: the owners `rebalance` returned.
 * - `live`: the live members (their order does not matter here).
 *
 * Throws `InvalidSlots` unless both arrays have one entry per slot of `slots`.
 *
 * @since 0.3.0
 * @category assignment
 */
export const handoff = (
  slots: number,
  holders: ReadonlyArray<MemberId | null>,
  target: ReadonlyArray<MemberId | null>,
  live: ReadonlyArray<MemberId>
): ReadonlyArray<Move> => {
  checkSlotCount(slots)
  checkOwnerArray("holders", slots, holders)
  checkOwnerArray("target", slots, target)
  checkLive(live)
  const isLive = new Set(live)
  const moves: Array<Move> = []
  for (let s = 0; s < slots; s++) {
    const from = holders[s]!
    const to = target[s]!
    if (from === to) continue
    moves.push({ slot: s, from, to, after: from !== null && isLive.has(from) ? "release" : "nothing" })
  }
  return moves
}

/**
 * What one member must do about a list of moves, each list ascending:
 *
 * - `release`: slots it holds and loses: stop their work, then release them (before anything else of
 *   this change that concerns it; it keeps every other slot running);
 * - `startAfterRelease`: slots it gains from a live holder: start each only once that holder has
 *   released it, or its lease has expired;
 * - `startNow`: slots it gains that nobody live holds: start once the change has committed.
 *
 * @since 0.3.0
 * @category assignment
 */
export interface MemberPlan {
  readonly release: ReadonlyArray<number>
  readonly startAfterRelease: ReadonlyArray<number>
  readonly startNow: ReadonlyArray<number>
}

/**
 * `member`'s part of `moves` (see `MemberPlan`). A member with no part gets three empty lists: its
 * work goes on untouched.
 *
 * @since 0.3.0
 * @category assignment
 */
export const planFor = (moves: ReadonlyArray<Move>, member: MemberId): MemberPlan => {
  const release: Array<number> = []
  const startAfterRelease: Array<number> = []
  const startNow: Array<number> = []
  for (const move of moves) {
    if (move.from === member) release.push(move.slot)
    if (move.to === member) (move.after === "release" ? startAfterRelease : startNow).push(move.slot)
  }
  const ascending = (a: number, b: number) => a - b
  return {
    release: release.sort(ascending),
    startAfterRelease: startAfterRelease.sort(ascending),
    startNow: startNow.sort(ascending)
  }
}

/**
 * The slots `member` owns in `owners`, ascending.
 *
 * @since 0.3.0
 * @category getters
 */
export const slotsOf = (owners: ReadonlyArray<MemberId | null>, member: MemberId): ReadonlyArray<number> => {
  const mine: Array<number> = []
  owners.forEach((owner, s) => {
    if (owner === member) mine.push(s)
  })
  return mine
}

/**
 * How many slots each owner has in `owners` (unowned slots are not counted).
 *
 * @since 0.3.0
 * @category getters
 */
export const counts = (owners: ReadonlyArray<MemberId | null>): ReadonlyMap<MemberId, number> => {
  const result = new Map<MemberId, number>()
  for (const owner of owners) if (owner !== null) result.set(owner, (result.get(owner) ?? 0) + 1)
  return result
}
