/**
 * Two copies of the library in one process (an app whose dependencies were not deduplicated): the
 * `Membership` tag (a string key) is shared between them, and so must be the work run's assignment
 * that plain `fenced` fences to. It was a FiberRef of each copy: the other copy's `fenced` saw no run,
 * and a daemon's old slice committed under the next epoch (an adversarial review).
 */
import { expect, it } from "vitest"

it("the work run's assignment is one FiberRef for every copy of the library", async () => {
  const first = await import("../../src/internal/membership/workRunner.js")
  // The same file as a second module (the query makes it another module instance, as a second copy).
  const copy = "../../src/internal/membership/workRunner.js?second-copy"
  const second: typeof first = await import(/* @vite-ignore */ copy)
  expect(second).not.toBe(first)
  expect(second.currentRunAssignment).toBe(first.currentRunAssignment)
})
