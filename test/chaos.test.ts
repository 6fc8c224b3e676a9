/**
 * A short chaos run with a fixed seed (chaos/run.mjs, the same runner as `npm run chaos`): five
 * `modulo-group join --json` processes on an embedded PostgreSQL of the runner's own, every fault
 * kind (SIGKILL and a rejoin under the same name, SIGTERM, SIGSTOP past the lease and SIGCONT,
 * pg_terminate_backend of a pool and of a LISTEN connection, a database restart). Fails on any G1 or
 * G2 violation seen by the independent monitor (a duplicate (epoch, index) start included), on a
 * member told to leave that never prints `left` (G5), on a reconvergence slower than its bound
 * (lease + 2 heartbeats; a restart: its stop + start time + lease), on a member that exits
 * unexpectedly or prints anything but JSON Lines. About a minute.
 *
 * Then a second, shorter run with every member's LISTEN/NOTIFY disabled and the churn schedule: in
 * bursts, the member holding index 0 leaves and a new one joins every few hundred ms, mixed with the
 * other faults. G7: the guarantees hold without notifications, and no (epoch, index) is ever
 * started by two members. About 30 s.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { beforeAll, describe, expect, it } from "vitest"
import { assertBuilt } from "./cli/support.js"

const runner = fileURLToPath(new URL("../chaos/run.mjs", import.meta.url))
const SEED = "20261126"
const CHURN_SEED = "20261127"
const MEMBERS = "5"
const DURATION = "45s"
// Heartbeat 700 ms, lease 3.5 s: the bound of a kill is then 4.9 s. It has the lease run out (at most
// a lease after the kill), the first heartbeat after that see it (one heartbeat), and leaves one
// heartbeat for the barrier: every member stops, acknowledges and restarts. That barrier takes
// 100-700 ms for a handful of processes on a loaded 2-core machine (and more when other test files
// hog both cores), so a shorter heartbeat would make this test fail on load, not on the library.
const TIMING = ["--heartbeat", "700ms", "--lease", "3500ms", "--fence-margin", "500ms", "--statement-timeout", "1s"]

interface Report {
  readonly formed: boolean
  readonly schedule: string
  readonly notifications: string
  readonly bursts: number
  readonly churnLeaves: { total: number; index0: number }
  readonly listenConnections: { checks: number; max: number }
  readonly faults: Record<string, number>
  readonly faultCount: number
  readonly reconvergence: Record<string, { count: number; medianMs: number; maxMs: number; boundMs: number; overBound: Array<unknown> }>
  readonly violations: {
    overlap: number
    staleWorkLines: number
    g1: Array<string>
    duplicateStarts: Array<unknown>
    listenWithNotificationsOff: Array<unknown>
    gracefulLeave: Array<string>
    order: Array<string>
    slowReconvergence: number
    unfinished: Array<unknown>
  }
  readonly errors: { unexpectedExits: Array<unknown>; garbageLines: number }
  readonly noCompleteAssignmentMs: number
  readonly workLines: number
}

/** Runs chaos/run.mjs with `args`; its report, output and exit code. */
const runChaos = async (args: ReadonlyArray<string>, timeoutMs: number) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mg-chaos-"))
  const reportFile = path.join(dir, "report.json")
  const started = Date.now()
  const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [runner, ...args, "--report", reportFile],
      // The runner starts a database of its own (it restarts it); DATABASE_URL is not used.
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, DATABASE_URL: "" } }
    )
    let output = ""
    child.stdout.on("data", (c: Buffer) => (output += c.toString("utf8")))
    child.stderr.on("data", (c: Buffer) => (output += c.toString("utf8")))
    const timer = setTimeout(() => {
      child.kill("SIGINT")
      reject(new Error(`the chaos run did not finish in time:\n${output}`))
    }, timeoutMs)
    child.once("exit", (code) => {
      clearTimeout(timer)
      resolve({ code, output })
    })
  })
  console.log(`[chaos] ${args.join(" ")}: ${Math.round((Date.now() - started) / 1000)} s\n${output.slice(output.indexOf("chaos report"))}`)
  expect(fs.existsSync(reportFile), output).toBe(true)
  const report = JSON.parse(fs.readFileSync(reportFile, "utf8")) as Report
  fs.rmSync(dir, { recursive: true, force: true })
  return { report, output, code }
}

/** G1, G2: nothing; G4: every fault (every burst) reconverged within its bound, before the next. */
const expectPassed = ({ code, output, report }: { report: Report; output: string; code: number | null }) => {
  expect(report.formed).toBe(true)
  expect(report.workLines).toBeGreaterThan(100)
  expect(report.violations.overlap, output).toBe(0)
  expect(report.violations.staleWorkLines, output).toBe(0)
  expect(report.violations.g1, output).toEqual([])
  expect(report.violations.duplicateStarts, output).toEqual([])
  expect(report.violations.order, output).toEqual([])
  // G5: every member told to leave said `left` (its row went at once, not at its lease's end).
  expect(report.violations.gracefulLeave, output).toEqual([])
  expect(report.violations.slowReconvergence, output).toBe(0)
  expect(report.violations.unfinished, output).toEqual([])
  expect(report.errors.unexpectedExits, output).toEqual([])
  expect(report.errors.garbageLines).toBe(0)
  expect(code, output).toBe(0)
}

describe("chaos (fixed seed, child processes)", () => {
  beforeAll(assertBuilt)

  it("keeps G1 and G2 and reconverges within bounds through every kind of fault", async () => {
    const run = await runChaos(["--members", MEMBERS, "--duration", DURATION, "--seed", SEED, ...TIMING], 150_000)
    // Every kind of fault happened.
    for (const kind of ["kill", "join", "leave", "sigstop", "sigcont", "term-backend", "term-listener", "restart"]) {
      expect(run.report.faults[kind] ?? 0, `${kind} faults`).toBeGreaterThan(0)
    }
    expectPassed(run)
  }, 170_000)

  it("static membership: restarts with the same instance id (SIGTERM and SIGKILL) among the other faults", async () => {
    const run = await runChaos(
      [
        "--members", "4", "--duration", "25s", "--seed", "13", ...TIMING,
        "--instance-ids", "--rejoin-grace", "2s", "--kinds", "static-restart,static-kill,kill,leave,sigstop"
      ],
      120_000
    )
    for (const kind of ["static-restart", "static-kill"]) {
      expect(run.report.faults[kind] ?? 0, `${kind} faults`).toBeGreaterThan(0)
    }
    expectPassed(run)
  }, 140_000)

  it("with notifications off, under churn of the index-0 member mixed with the other faults, too", async () => {
    const run = await runChaos(
      ["--members", MEMBERS, "--duration", "15s", "--seed", CHURN_SEED, ...TIMING, "--schedule", "churn", "--notifications", "off"],
      90_000
    )
    const { report, output } = run
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
