/**
 * `status` in text: indices with no member row and orphaned slots as runs. A group whose size was set
 * by hand to 100,000 (one member at index 0) listed its 65,535 missing indices one by one, a line of
 * about 400 KB, and said nothing of the indices past the 65,536 it looks at.
 */
import { describe, expect, it } from "vitest"
import { renderMissing } from "../../cli/src/commands/status.js"

const group = (fields: Record<string, unknown>) =>
  ({ groupId: "g", epoch: 1, size: 30, changedAt: new Date(0), changesHeldMs: 0, ...fields }) as Parameters<typeof renderMissing>[0]

describe("status: missing indices as runs", () => {
  it("missing indices and orphaned slots as runs, spelt as a member's held slots are (Slots.toRanges)", () => {
    expect(renderMissing(group({}))).toEqual([])
    expect(renderMissing(group({ missingIndices: [4] }))[0]).toMatch(/^index 4 of 30 has no member row/)
    expect(renderMissing(group({ missingIndices: [1, 2, 3, 7, 9, 10, 11, 12, 20, 21] }))[0]).toMatch(
      /^indices 1-3,7,9-12,20-21 of 30 have no member row/
    )
    expect(renderMissing(group({ orphanSlots: [0, 1, 5] }))[0]).toMatch(/^slots 0-1,5 are held by a member id no row has/)
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
