/**
 * A short chaos run with a fixed seed (chaos/run.mjs, the same runner as `npm run chaos`): five
 * `modulo-group join --json` processes on an embedded PostgreSQL of the runner's own, every fault
 * kind (SIGKILL and a rejoin under the same name, SIGTERM, SIGSTOP past the lease and SIGCONT,
 * pg_terminate_backend of a pool and of a LISTEN connection, a database restart). Fails on any G1 or
 * G2 violation seen by the independent monitor, on a reconvergence slower than its bound (lease +
 * 2 heartbeats; a restart: its stop + start time + lease), on a member that exits unexpectedly or
 * prints anything but JSON Lines. About a minute.
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
  readonly faults: Record<string, number>
  readonly faultCount: number
  readonly reconvergence: Record<string, { count: number; medianMs: number; maxMs: number; boundMs: number; overBound: Array<unknown> }>
  readonly violations: {
    overlap: number
    staleWorkLines: number
    g1: Array<string>
    order: Array<string>
    slowReconvergence: number
    unfinished: Array<unknown>
  }
  readonly errors: { unexpectedExits: Array<unknown>; garbageLines: number }
  readonly noCompleteAssignmentMs: number
  readonly workLines: number
}

describe("chaos (fixed seed, child processes)", () => {
  beforeAll(assertBuilt)

  it("keeps G1 and G2 and reconverges within bounds through every kind of fault", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mg-chaos-"))
    const reportFile = path.join(dir, "report.json")
    const started = Date.now()
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
      const child = spawn(
        process.execPath,
        [runner, "--members", MEMBERS, "--duration", DURATION, "--seed", SEED, ...TIMING, "--report", reportFile],
        // The runner starts a database of its own (it restarts it); DATABASE_URL is not used.
        { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, DATABASE_URL: "" } }
      )
      let output = ""
      child.stdout.on("data", (c: Buffer) => (output += c.toString("utf8")))
      child.stderr.on("data", (c: Buffer) => (output += c.toString("utf8")))
      const timer = setTimeout(() => {
        child.kill("SIGINT")
        reject(new Error(`the chaos run did not finish in time:\n${output}`))
      }, 150_000)
      child.once("exit", (code) => {
        clearTimeout(timer)
        resolve({ code, output })
      })
    })
    console.log(`[chaos] seed ${SEED}, ${MEMBERS} members, ${DURATION}: ${Math.round((Date.now() - started) / 1000)} s\n${output.slice(output.indexOf("chaos report"))}`)
    expect(fs.existsSync(reportFile), output).toBe(true)
    const report = JSON.parse(fs.readFileSync(reportFile, "utf8")) as Report
    fs.rmSync(dir, { recursive: true, force: true })

    expect(report.formed).toBe(true)
    // Every kind of fault happened.
    for (const kind of ["kill", "join", "leave", "sigstop", "sigcont", "term-backend", "term-listener", "restart"]) {
      expect(report.faults[kind] ?? 0, `${kind} faults`).toBeGreaterThan(0)
    }
    expect(report.workLines).toBeGreaterThan(100)
    // G1, G2: nothing.
    expect(report.violations.overlap, output).toBe(0)
    expect(report.violations.staleWorkLines, output).toBe(0)
    expect(report.violations.g1, output).toEqual([])
    expect(report.violations.order, output).toEqual([])
    // G4: every fault reconverged within its bound, before the next one.
    expect(report.violations.slowReconvergence, output).toBe(0)
    expect(report.violations.unfinished, output).toEqual([])
    expect(report.errors.unexpectedExits, output).toEqual([])
    expect(report.errors.garbageLines).toBe(0)
    expect(code, output).toBe(0)
  }, 170_000)
})
