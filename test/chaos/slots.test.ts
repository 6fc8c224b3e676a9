/**
 * A short chaos run in slots mode (chaos/run.mjs --slots, the runner of `npm run chaos`): four
 * `modulo-group join --slots 16 --json` processes, a SIGKILL and a rejoin, and a SIGSTOP past the
 * lease and its SIGCONT (the other kinds are in the 2- and 10-minute runs of docs/reliability.md;
 * the monitor's checks of each are in test/faults/chaosSlotsMonitor.test.ts). Fails on a slot in two members' sets at once (per-slot G2), a work line naming a slot
 * another member took, a slot left in no live member's set past the fault's bound, unfair set sizes
 * at a quiet point, a slow reconvergence, a leave without `left`, an unexpected exit or non-JSON
 * output. On an embedded PostgreSQL of the runner's own, as every chaos file: the slow-COMMIT files
 * run beside the chaos runs and fill the test server's notification queue (vitest.config.ts). The
 * kinds here include no restart (the 2-minute and 10-minute runs of docs/reliability.md have them).
 * About 30 s.
 */
import { beforeAll, describe, expect, it } from "vitest"
import { assertBuilt } from "../cli/support.js"
import { reportOf, runChaos, TIMING } from "./support.js"

describe("chaos in slots mode (child processes)", () => {
  beforeAll(assertBuilt)

  it("--slots with --instance-ids is a usage error", async () => {
    const { code, output } = await runChaos(["--slots", "16", "--instance-ids"], 20_000, "test")
    expect(code).toBe(2)
    expect(output).toMatch(/--slots and --instance-ids: static membership is not available in slots mode/)
    const bad = await runChaos(["--slots", "0"], 20_000, "test")
    expect(bad.code).toBe(2)
    expect(bad.output).toMatch(/--slots: "0"/)
  })

  it("keeps every slot in at most one member, owned again within each fault's bound, sizes within one", async () => {
    const run = await runChaos(
      ["--members", "4", "--duration", "10s", "--seed", "20261202", "--every-kind", "--slots", "16", ...TIMING, "--kinds", "kill,sigstop"],
      120_000,
      "own"
    )
    const { code, output } = run
    const report = reportOf(run)
    const slots = report.slots!
    expect(report.formed).toBe(true)
    expect(slots.S).toBe(16)
    expect(slots.handoffs.total).toBeGreaterThan(0)
    for (const kind of ["kill", "join", "sigstop", "sigcont"]) expect(report.faults[kind] ?? 0, kind).toBeGreaterThan(0)
    expect(slots.violations.overlap, output).toBe(0)
    expect(slots.violations.staleWorkLines, output).toBe(0)
    expect(slots.violations.unownedBeyondBound, output).toBe(0)
    expect(slots.violations.unfairCount, output).toBe(0)
    expect(report.violations.order, output).toEqual([])
    expect(report.violations.gracefulLeave, output).toEqual([])
    expect(report.violations.slowReconvergence, output).toBe(0)
    expect(report.errors.unexpectedExits, output).toEqual([])
    expect(code, output).toBe(0)
  }, 130_000)
})
