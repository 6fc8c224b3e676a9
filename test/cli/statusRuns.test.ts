/**
 * `status` in text: indices with no member row and orphaned slots as runs. A group whose size was set
 * by hand to 100,000 (one member at index 0) listed its 65,535 missing indices one by one, a line of
 * about 400 KB, and said nothing of the indices past the 65,536 it looks at.
 */
import { describe, expect, it } from "vitest"
import { asRuns, renderMissing } from "../../cli/src/commands/status.js"

describe("status: missing indices as runs", () => {
  it("consecutive numbers become a run; a pair stays a pair; singles stay", () => {
    expect(asRuns([])).toBe("")
    expect(asRuns([4])).toBe("4")
    expect(asRuns([1, 2])).toBe("1, 2")
    expect(asRuns([1, 2, 3, 7, 9, 10, 11, 12, 20, 21])).toBe("1-3, 7, 9-12, 20, 21")
  })

  it("a hand-set size of 100,000 with one member: one short line that says what was looked at", () => {
    const missing = Array.from({ length: 65_535 }, (_, i) => i + 1)
    const [line, ...rest] = renderMissing({
      groupId: "g",
      epoch: 1,
      size: 100_000,
      changedAt: new Date(0),
      missingIndices: missing,
      changesHeldMs: 1_500
    } as Parameters<typeof renderMissing>[0])
    expect(rest).toEqual([])
    expect(line).toBe(
      "indices 1-65535 of 100000 (of the first 65536 looked at) have no member row (deleted or moved by hand?): " +
        "no join, leave or reap for 1.5s more"
    )
  })
})
