/**
 * A short chaos run with every member's LISTEN/NOTIFY disabled and the churn schedule: in bursts,
 * the member holding index 0 leaves and a new one joins every few hundred ms, mixed with the other
 * faults. G7: the guarantees hold without notifications, and no (epoch, index) is ever started by
 * two members. About 30 s.
 */
import { beforeAll, describe, expect, it } from "vitest"
import { assertBuilt } from "../cli/support.js"
import { expectPassed, reportOf, runChaos, TIMING } from "./support.js"

describe("chaos (fixed seed, child processes)", () => {
  beforeAll(assertBuilt)

  it("with notifications off, under churn of the index-0 member mixed with the other faults, too", async () => {
    const run = await runChaos(
      ["--members", "5", "--duration", "15s", "--seed", "20261127", ...TIMING, "--schedule", "churn", "--notifications", "off"],
      90_000,
      "own"
    )
    const { output } = run
    const report = reportOf(run)
    expect([report.schedule, report.notifications]).toEqual(["churn", "off"])
    // No member ever held a LISTEN connection, and the runner did look.
    expect(report.listenConnections.checks).toBeGreaterThan(0)
    expect(report.listenConnections.max, output).toBe(0)
    expect(report.violations.listenWithNotificationsOff).toEqual([])
    expect(report.bursts).toBeGreaterThan(1)
    // The churn itself: members left (index 0 among them) and new ones joined, several times, with
    // other faults mixed in. (How many depends on how fast a process starts on this machine.)
    expect(report.faults["leave"] ?? 0, output).toBeGreaterThanOrEqual(3)
    expect(report.faults["join"] ?? 0, output).toBeGreaterThanOrEqual(3)
    expect(report.churnLeaves.index0, output).toBeGreaterThan(0)
    expect(report.faultCount - report.faults["leave"]! - report.faults["join"]!, output).toBeGreaterThan(0)
    expectPassed(run)
  }, 100_000)
})
