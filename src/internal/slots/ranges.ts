/**
 * A set of slots as text for people (the CLI's lines, `status`): ascending runs joined by commas,
 * `"0-15,32-47"`, a run of one slot as `"5"`, the empty set as `""`.
 *
 * @since 0.3.0
 */
import { InvalidSlots } from "./assignment.js"

/**
 * `slots` as ranges: `[0, 1, 2, 3, 7, 9, 10]` is `"0-3,7,9-10"`. Duplicates are ignored and the order
 * of `slots` does not matter. Throws `InvalidSlots` for a slot that is not a non-negative integer.
 *
 * @since 0.3.0
 * @category formatting
 */
export const toRanges = (slots: Iterable<number>): string => {
  const sorted = [...new Set(slots)].sort((a, b) => a - b)
  for (const s of sorted) {
    if (typeof s !== "number" || !Number.isSafeInteger(s) || s < 0) {
      throw new InvalidSlots({ argument: "slot", reason: `must be a non-negative integer, got ${String(s)}` })
    }
  }
  const runs: Array<string> = []
  let i = 0
  while (i < sorted.length) {
    const start = sorted[i]!
    let end = start
    while (i + 1 < sorted.length && sorted[i + 1] === end + 1) end = sorted[++i]!
    runs.push(start === end ? `${start}` : `${start}-${end}`)
    i++
  }
  return runs.join(",")
}

const run = /^(0|[1-9][0-9]*)(?:-(0|[1-9][0-9]*))?$/

/**
 * The inverse of `toRanges`: `"0-3,7"` is `[0, 1, 2, 3, 7]` (ascending, no duplicates); `""` is `[]`.
 * Throws `InvalidSlots` for text `toRanges` does not write (a run whose end is below its start,
 * overlapping or unordered runs, spaces, signs).
 *
 * @since 0.3.0
 * @category formatting
 */
export const fromRanges = (text: string): ReadonlyArray<number> => {
  if (text === "") return []
  const result: Array<number> = []
  for (const part of text.split(",")) {
    const match = run.exec(part)
    const start = match === null ? NaN : Number(match[1])
    const end = match === null ? NaN : match[2] === undefined ? start : Number(match[2])
    const last = result.length === 0 ? -2 : result[result.length - 1]!
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end < start || start <= last + 1) {
      throw new InvalidSlots({ argument: "ranges", reason: `${JSON.stringify(part)} in ${JSON.stringify(text)} is not a run toRanges writes` })
    }
    for (let s = start; s <= end; s++) result.push(s)
  }
  return result
}
