/**
 * Slots mode helpers for apps and tools (docs/slots.md): which slot an item belongs to, and a set of
 * slots as ranges for people. The work API is `Membership.whileOwning` / `whileOwningAll`; the SQL
 * condition is `Ownership.owned` with an `OwnedSlot` or `OwnedSlots`; fencing is `Fenced.fenced` with
 * `slots`.
 *
 * @since 0.3.0
 */
import { maxSlots as maxSlotCount } from "./internal/slots/assignment.js"
import * as Keys from "./internal/slots/keys.js"
import * as Ranges from "./internal/slots/ranges.js"

/**
 * The largest slot count a group may have (16,384).
 *
 * @since 0.3.0
 * @category constants
 */
export const maxSlots: number = maxSlotCount

/**
 * The slot of one key among `slots`: `key mod slots` for integer keys (non-negative for negative
 * ones), the same hash as `Ownership.ownerOf` for text and uuid keys. Throws for a slot count out of
 * `[1, 16384]` or a key its type does not accept.
 *
 * @since 0.3.0
 * @category slots
 */
export const slotOf: typeof Keys.slotOf = Keys.slotOf

/**
 * A set of slots as ranges: `[0, 1, 2, 3, 7, 9, 10]` is `"0-3,7,9-10"` (the empty set `""`).
 *
 * @since 0.3.0
 * @category formatting
 */
export const toRanges: typeof Ranges.toRanges = Ranges.toRanges

/**
 * The inverse of `toRanges`: `"0-3,7"` is `[0, 1, 2, 3, 7]`.
 *
 * @since 0.3.0
 * @category formatting
 */
export const fromRanges: typeof Ranges.fromRanges = Ranges.fromRanges
