/**
 * A short chaos run with a fixed seed (chaos/run.mjs, the same runner as `npm run chaos`): five
 * `modulo-group join --json` processes on an embedded PostgreSQL of the runner's own, every fault
 * kind (SIGKILL and a rejoin under the same name, SIGTERM, SIGSTOP past the lease and SIGCONT,
 * pg_terminate_backend of a pool and of a LISTEN connection, a database restart). Fails on any G1 or
 * G2 violation seen by the independent monitor (a duplicate (epoch, index) start included), on a
 * member told to leave that never prints `left` (G5), on a reconvergence slower than its bound
 * (lease + 2 heartbeats; a restart: its stop + start time + lease), on a member that exits
 * unexpectedly or prints anything but JSON Lines. About a minute.
 */
import { beforeAll, describe, expect, it } from "vitest"
import { assertBuilt } from "../cli/support.js"
import { expectPassed, reportOf, runChaos, TIMING } from "./support.js"

describe("chaos (fixed seed, child processes)", () => {
  beforeAll(assertBuilt)

  it("keeps G1 and G2 and reconverges within bounds through every kind of fault", async () => {
    const run = await runChaos(["--members", "5", "--duration", "45s", "--seed", "20261126", "--every-kind", ...TIMING], 200_000, "own")
    // Every kind of fault happened.
    for (const kind of ["kill", "join", "leave", "sigstop", "sigcont", "term-backend", "term-listener", "restart"]) {
      expect(reportOf(run).faults[kind] ?? 0, `${kind} faults`).toBeGreaterThan(0)
    }
    expectPassed(run)
  }, 220_000)
})
