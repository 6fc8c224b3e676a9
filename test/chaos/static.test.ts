/**
 * A short chaos run with static membership (chaos/run.mjs --instance-ids): four members restarted
 * with the same instance id (SIGTERM and SIGKILL) among kills, leaves and SIGSTOPs, on an embedded
 * PostgreSQL of the runner's own. The same checks as faults.test.ts. About 30 s.
 */
import { beforeAll, describe, expect, it } from "vitest"
import { assertBuilt } from "../cli/support.js"
import { expectPassed, reportOf, runChaos, TIMING } from "./support.js"

describe("chaos (fixed seed, child processes)", () => {
  beforeAll(assertBuilt)

  it("static membership: restarts with the same instance id (SIGTERM and SIGKILL) among the other faults", async () => {
    const run = await runChaos(
      [
        "--members", "4", "--duration", "25s", "--seed", "13", "--every-kind", ...TIMING,
        "--instance-ids", "--rejoin-grace", "2s", "--kinds", "static-restart,static-kill,kill,leave,sigstop"
      ],
      120_000,
      "own"
    )
    for (const kind of ["static-restart", "static-kill"]) {
      expect(reportOf(run).faults[kind] ?? 0, `${kind} faults`).toBeGreaterThan(0)
    }
    expectPassed(run)
  }, 140_000)
})
