/**
 * The slot rows of one group and the statements of docs/slots.md that write them, as pure functions
 * over an immutable table: what the in-memory store will run, and what the Postgres statements must
 * do (`change` under the group lock, `release` and `retake` by a member). Not wired in yet.
 *
 * The invariant they keep (docs/slots.md): a slot's holder changes only by its holder's own release,
 * or in a change that no longer counts the holder as live (its row was deleted: a leave after its
 * work stopped, or a reap after its lease expired). Every holder change bumps the slot's generation.
 *
 * @since 0.3.0
 */
import type { MemberId, Move } from "./assignment.js"
import { handoff, InvalidSlots, rebalance } from "./assignment.js"

/**
 * One slot's row: its owner (the target, written by changes), its holder (who may work it now) and
 * its generation (bumped whenever the holder changes; the slot's fencing token).
 *
 * @since 0.3.0
 * @category models
 */
export interface SlotRow {
  readonly owner: MemberId | null
  readonly holder: MemberId | null
  readonly generation: number
}

/**
 * A group's slot rows, index = slot.
 *
 * @since 0.3.0
 * @category models
 */
export type SlotTable = ReadonlyArray<SlotRow>

/**
 * The rows of a new slots-mode group: `slots` rows, unowned, at generation 0.
 *
 * @since 0.3.0
 * @category constructors
 */
export const empty = (slots: number): SlotTable =>
  Array.from({ length: slots }, (): SlotRow => ({ owner: null, holder: null, generation: 0 }))

/**
 * A membership change (join, leave, reap; run under the group lock with the live members after it,
 * in join order): every slot's owner becomes its `rebalance` target, and every slot whose holder is
 * not live (or that had none) is handed to its owner at once, its generation bumped. Returns the new
 * rows and the change's moves (`handoff`).
 *
 * @since 0.3.0
 * @category statements
 */
export const change = (
  table: SlotTable,
  live: ReadonlyArray<MemberId>
): { readonly table: SlotTable; readonly moves: ReadonlyArray<Move> } => {
  const slots = table.length
  const target = rebalance(slots, table.map((r) => r.owner), live)
  const moves = handoff(slots, table.map((r) => r.holder), target, live)
  const next: Array<SlotRow> = table.map((row, s) => (row.owner === target[s] ? row : { ...row, owner: target[s]! }))
  for (const move of moves) {
    if (move.after === "nothing") {
      const row = next[move.slot]!
      next[move.slot] = { owner: row.owner, holder: move.to, generation: row.generation + 1 }
    }
  }
  return { table: next, moves }
}

/**
 * A member's release of slots whose work it has stopped, each at the generation it worked: a slot
 * still held by `member` at that generation and owned by someone else is handed to its owner, its
 * generation bumped. Anything else (another generation, another holder, owned by `member` again) is
 * left alone, so a late or repeated release is harmless. `live`: whether `member`'s row is live (the
 * statement's lease check); a member that is not live releases nothing. Returns the new rows and the
 * slots released.
 *
 * @since 0.3.0
 * @category statements
 */
export const release = (
  table: SlotTable,
  member: MemberId,
  stopped: ReadonlyArray<{ readonly slot: number; readonly generation: number }>,
  live: boolean
): { readonly table: SlotTable; readonly released: ReadonlyArray<number> } => {
  if (!live) return { table, released: [] }
  const next = [...table]
  const released: Array<number> = []
  for (const { generation, slot } of stopped) {
    const row = next[slot]
    if (row === undefined) throw new InvalidSlots({ argument: "slot", reason: `no slot ${slot} in ${table.length}` })
    if (row.holder === member && row.generation === generation && row.owner !== member) {
      next[slot] = { owner: row.owner, holder: row.owner, generation: row.generation + 1 }
      released.push(slot)
    }
  }
  return { table: next, released }
}

/**
 * A member takes back, at a new generation, a slot it holds and owns again after a release whose
 * outcome it does not know: any late release of the old generation becomes a no-op. Does nothing
 * unless `member` holds and owns `slot` at `generation`.
 *
 * @since 0.3.0
 * @category statements
 */
export const retake = (table: SlotTable, member: MemberId, slot: number, generation: number): SlotTable => {
  const row = table[slot]
  if (row === undefined) throw new InvalidSlots({ argument: "slot", reason: `no slot ${slot} in ${table.length}` })
  if (row.holder !== member || row.owner !== member || row.generation !== generation) return table
  const next = [...table]
  next[slot] = { ...row, generation: row.generation + 1 }
  return next
}
