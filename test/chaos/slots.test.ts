/**
 * A short chaos run in slots mode (chaos/run.mjs --slots, the runner of `npm run chaos`): four
 * `modulo-group join --slots 16 --json` processes, a SIGKILL and a rejoin, and a SIGSTOP past the
 * lease and its SIGCONT (the other kinds are in the 2- and 10-minute runs of docs/reliability.md;
 * the monitor's checks of each are in test/faults/chaosSlotsMonitor.test.ts). Fails on a slot in two members' sets at once (per-slot G2), a work line naming a slot
 * another member took, a slot left in no live member's set past the fault's bound, unfair set sizes
 * at a quiet point, a slow reconvergence, a leave without `left`, an unexpected exit or non-JSON
 * output. On the test database when DATABASE_URL is set (no restart fault then; the 2-minute and
 * 10-minute runs of docs/reliability.md have them), else on an embedded one of the runner's own.
 * About 30 s.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { beforeAll, describe, expect, it } from "vitest"
import { assertBuilt } from "../cli/support.js"

const runner = fileURLToPath(new URL("../../chaos/run.mjs", import.meta.url))

const run = async (args: ReadonlyArray<string>, timeoutMs: number) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mg-chaos-slots-"))
  const reportFile = path.join(dir, "report.json")
  const url = process.env["DATABASE_URL"]
  const database = url === undefined || url === "" ? [] : ["--database-url", url]
  const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [runner, ...args, ...database, "--report", reportFile], {
      stdio: ["ignore", "pipe", "pipe"]
    })
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
  const report = fs.existsSync(reportFile) ? JSON.parse(fs.readFileSync(reportFile, "utf8")) : undefined
  fs.rmSync(dir, { recursive: true, force: true })
  return { code, output, report }
}

describe("chaos in slots mode (child processes)", () => {
  beforeAll(assertBuilt)

  it("--slots with --instance-ids is a usage error", async () => {
    const { code, output } = await run(["--slots", "16", "--instance-ids"], 20_000)
    expect(code).toBe(2)
    expect(output).toMatch(/--slots and --instance-ids: static membership is not available in slots mode/)
    const bad = await run(["--slots", "0"], 20_000)
    expect(bad.code).toBe(2)
    expect(bad.output).toMatch(/--slots: "0"/)
  })

  it("keeps every slot in at most one member, owned again within each fault's bound, sizes within one", async () => {
    const { code, output, report } = await run(
      [
        "--members", "4", "--duration", "10s", "--seed", "20261202", "--slots", "16",
        "--heartbeat", "700ms", "--lease", "3500ms", "--fence-margin", "500ms", "--statement-timeout", "1s",
        "--kinds", "kill,sigstop"
      ],
      120_000
    )
    console.log(output.slice(output.indexOf("chaos report")))
    expect(report, output).toBeDefined()
    expect(report.formed).toBe(true)
    expect(report.slots.S).toBe(16)
    expect(report.slots.handoffs.total).toBeGreaterThan(0)
    for (const kind of ["kill", "join", "sigstop", "sigcont"]) expect(report.faults[kind] ?? 0, kind).toBeGreaterThan(0)
    expect(report.slots.violations.overlap, output).toBe(0)
    expect(report.slots.violations.staleWorkLines, output).toBe(0)
    expect(report.slots.violations.unownedBeyondBound, output).toBe(0)
    expect(report.slots.violations.unfairCount, output).toBe(0)
    expect(report.violations.order, output).toEqual([])
    expect(report.violations.gracefulLeave, output).toEqual([])
    expect(report.violations.slowReconvergence, output).toBe(0)
    expect(report.errors.unexpectedExits, output).toEqual([])
    expect(code, output).toBe(0)
  }, 130_000)
})
