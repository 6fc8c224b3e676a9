/**
 * The chaos test files' runner: chaos/run.mjs (the runner of `npm run chaos`) as a child process,
 * its report and output, and the checks every run must pass.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { expect } from "vitest"

const runner = fileURLToPath(new URL("../../chaos/run.mjs", import.meta.url))

/** What chaos/run.mjs writes with `--report` (the parts the tests read). */
export interface Report {
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
  readonly slots?: {
    readonly S: number
    readonly handoffs: { total: number }
    readonly violations: { overlap: number; staleWorkLines: number; unownedBeyondBound: number; unfairCount: number }
  }
  readonly errors: { unexpectedExits: Array<unknown>; garbageLines: number }
  readonly noCompleteAssignmentMs: number
  readonly workLines: number
}

export interface ChaosRun {
  readonly code: number | null
  readonly output: string
  /** Undefined when the runner wrote none (a usage error). */
  readonly report: Report | undefined
}

/**
 * Runs chaos/run.mjs with `args`. `database`: "own" has the runner start (and restart) an embedded
 * PostgreSQL of its own; "test" runs on DATABASE_URL when set (no restart fault then), else its own.
 */
export const runChaos = async (
  args: ReadonlyArray<string>,
  timeoutMs: number,
  database: "own" | "test"
): Promise<ChaosRun> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mg-chaos-"))
  const reportFile = path.join(dir, "report.json")
  const url = process.env["DATABASE_URL"]
  const onTest = database === "test" && url !== undefined && url !== ""
  const started = Date.now()
  try {
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
      const child = spawn(
        process.execPath,
        [runner, ...args, ...(onTest ? ["--database-url", url] : []), "--report", reportFile],
        { stdio: ["ignore", "pipe", "pipe"], env: onTest ? process.env : { ...process.env, DATABASE_URL: "" } }
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
    const report = fs.existsSync(reportFile) ? (JSON.parse(fs.readFileSync(reportFile, "utf8")) as Report) : undefined
    if (report !== undefined) {
      console.log(`[chaos] ${args.join(" ")}: ${Math.round((Date.now() - started) / 1000)} s\n${output.slice(output.indexOf("chaos report"))}`)
    }
    return { code, output, report }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** The run wrote a report; it. */
export const reportOf = (run: ChaosRun): Report => {
  expect(run.report, run.output).toBeDefined()
  return run.report!
}

/** G1, G2: nothing; G4: every fault (every burst) reconverged within its bound, before the next. */
export const expectPassed = (run: ChaosRun): void => {
  const { code, output } = run
  const report = reportOf(run)
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

/**
 * Heartbeat 700 ms, lease 3.5 s: the bound of a kill is then 4.9 s. It has the lease run out (at most
 * a lease after the kill), the first heartbeat after that see it (one heartbeat), and leaves one
 * heartbeat for the barrier: every member stops, acknowledges and restarts. That barrier takes
 * 100-700 ms for a handful of processes on a loaded 2-core machine (and more when other test files
 * hog both cores), so a shorter heartbeat would make these tests fail on load, not on the library.
 */
export const TIMING = ["--heartbeat", "700ms", "--lease", "3500ms", "--fence-margin", "500ms", "--statement-timeout", "1s"]
