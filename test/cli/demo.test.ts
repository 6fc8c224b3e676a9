/**
 * `modulo-group demo` as users run it (the built CLI, real member processes, the test database):
 * every item processed exactly once through all five faults, and no member process left behind,
 * also after a Ctrl-C. Plus the controller's pure parts.
 */
import { spawn } from "node:child_process"
import pg from "pg"
import { beforeAll, describe, expect, it } from "vitest"
import { faultKinds } from "../../cli/src/demo/faults.js"
import { bar, type Summary } from "../../cli/src/demo/render.js"
import { convergence } from "../../cli/src/demo/supervisor.js"
import { databaseUrl } from "../support/Database.js"
import { assertBuilt, bin, run } from "./support.js"

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** Waits until none of `pids` is alive (a killed child may take a moment to be reaped). */
const allGone = async (pids: ReadonlyArray<number>, withinMs = 5_000): Promise<ReadonlyArray<number>> => {
  const deadline = Date.now() + withinMs
  while (Date.now() < deadline) {
    if (pids.every((pid) => !isAlive(pid))) return []
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return pids.filter(isAlive)
}

const query = async <R extends pg.QueryResultRow>(text: string, values: ReadonlyArray<unknown>): Promise<Array<R>> => {
  const client = new pg.Client({ connectionString: databaseUrl() })
  await client.connect()
  try {
    return (await client.query<R>(text, [...values])).rows
  } finally {
    await client.end()
  }
}

describe("modulo-group demo (child processes)", () => {
  beforeAll(assertBuilt)

  it("drains the ledger through all five faults: no duplicates, nothing missing", async () => {
    const env = { ...process.env, DATABASE_URL: databaseUrl() }
    const result = await run(["demo", "--json", "--items", "2000", "--drain-time", "12s"], env, 100_000)
    const lines = result.stdout.trim().split("\n")
    // --json: stdout is the summary alone, on its last line; the log went to stderr.
    expect(lines).toHaveLength(1)
    const summary = JSON.parse(lines.at(-1)!) as Summary
    console.log(
      `[cli demo] ${summary.items} items in ${summary.durationMs} ms (drained in ${summary.drainMs} ms); stale refused ${summary.staleRejected}, aborted ${summary.aborted}; ` +
        summary.changes.map((c) => `${c.kind} ${c.convergedMs} ms`).join(", ")
    )
    if (result.code !== 0) console.log(result.stderr)

    expect(summary).toMatchObject({ ok: true, items: 2000, once: 2000, duplicates: 0, missing: 0, epochOverlaps: 0 })
    expect(summary.changes.map((c) => c.kind)).toEqual([...faultKinds])
    for (const c of summary.changes) expect(c.convergedMs, `${c.kind} converged`).not.toBeNull()
    // The faults landed while there was work left.
    for (const c of summary.changes) expect(c.doneBefore).toBeLessThan(2000)
    expect(result.code).toBe(0)

    // No member left behind; the run's rows and its group are gone.
    expect(await allGone(summary.members.map((m) => m.pid))).toEqual([])
    const [left] = await query<{ items: string; groups: string }>(
      `SELECT (SELECT count(*) FROM modulo_group_demo.items WHERE run_id = $1) AS items,
              (SELECT count(*) FROM modulo_group.groups WHERE group_id = $2) AS groups`,
      [summary.run, summary.group]
    )
    expect(left).toEqual({ items: "0", groups: "0" })
    // The log (stderr with --json): a fence is said once per member and epoch (its two records,
    // stopping work then stopped, printed it twice: a review).
    const fences = result.stderr.split("\n").flatMap((l) => {
      const m = /(m\d+): fenced itself \(lease deadline passed in epoch (\d+)\)/.exec(l)
      return m === null ? [] : [`${m[1]} ${m[2]}`]
    })
    expect(new Set(fences).size).toBe(fences.length)
  }, 100_000)

  it("stops every member on Ctrl-C", async () => {
    const env = { ...process.env, DATABASE_URL: databaseUrl() }
    const child = spawn(process.execPath, [bin, "demo", "--json", "--items", "2000"], { env, stdio: ["ignore", "pipe", "pipe"] })
    let stderr = ""
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
    const started = new Promise<ReadonlyArray<number>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the members did not converge within 60s:\n${stderr}`)), 60_000)
      child.stderr.on("data", (c: Buffer) => {
        stderr += c.toString("utf8")
        if (/converged: epoch/.test(stderr)) {
          clearTimeout(timer)
          resolve([...stderr.matchAll(/pid (\d+)/g)].map((m) => Number(m[1])))
        }
      })
    })
    try {
      const pids = await started
      expect(pids).toHaveLength(5)
      expect(pids.every(isAlive)).toBe(true)
      child.kill("SIGINT")
      expect(await exited).toBe(0)
      expect(stderr).toContain("demo interrupted")
      expect(await allGone(pids)).toEqual([])
    } finally {
      child.kill("SIGKILL")
    }
  }, 90_000)
})

describe("Demo: pure parts", () => {
  const member = (epoch: number | null, state: string, size: number, assignedAt: Record<number, number> = {}) => ({
    state: { ts: "2026-11-26T15:00:00.000Z", member: "x", group: "g", event: "state" as const, state, epoch, index: 0, size },
    assignedAt: new Map(Object.entries(assignedAt).map(([e, t]) => [Number(e), t]))
  })

  it("converges when every expected member is assigned in one newer epoch of their number", () => {
    expect(convergence([member(5, "assigned", 2, { 5: 10 }), member(5, "assigned", 2, { 5: 30 })], 4)).toEqual({
      epoch: 5,
      at: 30
    })
    // Not newer than the epoch before the change.
    expect(convergence([member(5, "assigned", 2), member(5, "assigned", 2)], 5)).toBeUndefined()
    // The size says someone else is still in the group (a killed member not reaped yet).
    expect(convergence([member(5, "assigned", 3), member(5, "assigned", 3)], 4)).toBeUndefined()
    // One is still at the barrier, or in another epoch.
    expect(convergence([member(6, "assigned", 2), member(6, "awaiting", 2)], 5)).toBeUndefined()
    expect(convergence([member(6, "assigned", 2), member(5, "assigned", 2)], 4)).toBeUndefined()
    expect(convergence([], 0)).toBeUndefined()
  })

  it("draws a progress bar", () => {
    expect(bar(0, 10, 10)).toBe("[░░░░░░░░░░]")
    expect(bar(5, 10, 10)).toBe("[█████░░░░░]")
    expect(bar(10, 10, 10)).toBe("[██████████]")
  })
})
