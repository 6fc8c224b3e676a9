/**
 * The failover suite skips with one line that says how to enable it when it cannot run here.
 */
import { afterEach, expect, it, vi } from "vitest"
import { unavailable } from "./Cluster.js"

afterEach(() => {
  vi.restoreAllMocks()
})

it("not root: says the servers need root", () => {
  vi.spyOn(process as { getuid: () => number }, "getuid").mockReturnValue(1000)
  const reason = unavailable()
  // Without the binaries the first reason is how to install them; with them, that root is needed.
  expect(reason).toMatch(/needs root|apt-get install -y postgresql-15/)
})
