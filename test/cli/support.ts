/**
 * Runs the built CLI (`cli/bin/modulo-group.js`, which runs the bundle `cli/dist/modulo-group.cjs`) as child processes and reads
 * its JSON Lines.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import { expect } from "vitest"
import type { JoinEvent } from "../../cli/src/Events.js"

export const bin = fileURLToPath(new URL("../../cli/bin/modulo-group.js", import.meta.url))
const built = fileURLToPath(new URL("../../cli/dist/modulo-group.cjs", import.meta.url))

export const assertBuilt = (): void => {
  if (!fs.existsSync(built)) {
    throw new Error(`${built} is missing: run \`npm run build\` before the CLI tests`)
  }
}

/** One line of `join --json`: the CLI's own type, so a field added there is seen here. */
export type { JoinEvent }

export interface Exited {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export interface RunResult extends Exited {
  readonly stdout: string
  readonly stderr: string
  readonly ms: number
}

/**
 * What a process that did not finish was doing: Node's diagnostic report (written on SIGUSR2, see
 * `run`), read for its JavaScript stack and its active handles (sockets with their peers, timers).
 * A `status` that did not finish within 30 s failed three clean-clone CI runs of 2026-12-07 (and
 * passed alone); this is to see where it waits the next time.
 */
const diagnose = async (child: ChildProcess, dir: string): Promise<string> => {
  try {
    child.kill("SIGUSR2")
    for (let i = 0; i < 40; i++) {
      const files = fs.readdirSync(dir).filter((f) => f.endsWith(".json"))
      if (files.length > 0) {
        await new Promise((r) => setTimeout(r, 200))
        const report = JSON.parse(fs.readFileSync(`${dir}/${files[0]}`, "utf8")) as {
          javascriptStack?: { message?: string; stack?: ReadonlyArray<string> }
          libuv?: ReadonlyArray<{ type: string; is_active?: boolean; localEndpoint?: unknown; remoteEndpoint?: unknown; timeout?: number }>
        }
        const handles = (report.libuv ?? []).filter((h) => h.is_active === true)
          .map((h) => `${h.type}${h.remoteEndpoint ? ` to ${JSON.stringify(h.remoteEndpoint)}` : ""}${h.timeout !== undefined ? ` (${h.timeout} ms)` : ""}`)
        return `active handles: ${handles.join("; ") || "none"}\nJS stack: ${(report.javascriptStack?.stack ?? []).slice(0, 8).join(" | ")}`
      }
      await new Promise((r) => setTimeout(r, 50))
    }
    return "no diagnostic report within 2 s"
  } catch (e) {
    return `no diagnostic report: ${String(e)}`
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** Runs a command to completion. */
export const run = (
  args: ReadonlyArray<string>,
  env: NodeJS.ProcessEnv,
  timeoutMs = 30_000
): Promise<RunResult> =>
  new Promise((resolve, reject) => {
    const started = performance.now()
    const reports = fs.mkdtempSync(`${os.tmpdir()}/mg-run-report-`)
    const child = spawn(process.execPath, ["--report-on-signal", "--report-signal=SIGUSR2", `--report-directory=${reports}`, bin, ...args], {
      env,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString("utf8")))
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")))
    const timer = setTimeout(() => {
      void diagnose(child, reports).then((diagnosis) => {
        child.kill("SIGKILL")
        reject(new Error(`modulo-group ${args.join(" ")} did not finish within ${timeoutMs} ms\n${stdout}\n${stderr}\n${diagnosis}`))
      })
    }, timeoutMs)
    child.once("error", reject)
    child.once("close", (code, signal) => {
      clearTimeout(timer)
      fs.rmSync(reports, { recursive: true, force: true })
      resolve({ code, signal, stdout, stderr, ms: performance.now() - started })
    })
  })

interface Waiter {
  readonly predicate: (e: JoinEvent) => boolean
  readonly resolve: (e: JoinEvent) => void
}

/** A `join --json` process; every line it prints is kept in `events`. */
export class Member {
  readonly events: Array<JoinEvent> = []
  /** stdout lines that are not JSON (there must be none). */
  readonly garbage: Array<string> = []
  stderr = ""
  readonly exited: Promise<Exited>
  private waiters: Array<Waiter> = []
  private readonly child: ChildProcess

  constructor(readonly label: string, group: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv) {
    this.child = spawn(process.execPath, [bin, "join", group, "--json", "--name", label, ...args], {
      env,
      stdio: ["ignore", "pipe", "pipe"]
    })
    this.child.stderr!.on("data", (c: Buffer) => (this.stderr += c.toString("utf8")))
    const lines = readline.createInterface({ input: this.child.stdout! })
    lines.on("line", (line) => {
      let event: JoinEvent
      try {
        event = JSON.parse(line) as JoinEvent
      } catch {
        this.garbage.push(line)
        return
      }
      this.events.push(event)
      const ready = this.waiters.filter((w) => w.predicate(event))
      this.waiters = this.waiters.filter((w) => !w.predicate(event))
      for (const w of ready) w.resolve(event)
    })
    this.exited = new Promise((resolve) => this.child.once("exit", (code, signal) => resolve({ code, signal })))
  }

  get pid(): number {
    return this.child.pid!
  }

  /** The first event (already printed or to come) that satisfies `predicate`. */
  waitFor(predicate: (e: JoinEvent) => boolean, timeoutMs: number, what = "an event"): Promise<JoinEvent> {
    const found = this.events.find(predicate)
    if (found !== undefined) return Promise.resolve(found)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done)
        reject(
          new Error(
            `${this.label}: no ${what} within ${timeoutMs} ms; last lines:\n${
              this.events.slice(-5).map((e) => JSON.stringify(e)).join("\n")
            }\nstderr: ${this.stderr}`
          )
        )
      }, timeoutMs)
      const done = (e: JoinEvent) => {
        clearTimeout(timer)
        resolve(e)
      }
      this.waiters.push({ predicate, resolve: done })
    })
  }

  kill(signal: NodeJS.Signals): void {
    this.child.kill(signal)
  }
}

/** Waits until every member has worked at `size` in an epoch after `after`; returns the epoch and when. */
export const converged = async (
  members: ReadonlyArray<Member>,
  size: number,
  after: number,
  timeoutMs: number
): Promise<{ readonly epoch: number; readonly lastMs: number }> => {
  const firsts = await Promise.all(
    members.map((m) =>
      m.waitFor(
        (e) => e.event === "work" && e.size === size && (e.epoch ?? 0) > after,
        timeoutMs,
        `work line at size ${size} after epoch ${after}`
      )
    )
  )
  return {
    epoch: Math.max(...firsts.map((e) => e.epoch!)),
    lastMs: Math.max(...firsts.map((e) => Date.parse(e.ts)))
  }
}

/** One member's tenure in one epoch: from its `assigned` line to the line that ended it. */
export interface Tenure {
  readonly member: string
  readonly epoch: number
  readonly index: number
  readonly size: number
  readonly start: number
  /** The ending state line, or the last work line when the process was killed. */
  readonly end: number
  readonly endedBy: string
  readonly ticks: number
}

/** Rebuilds every member's tenures from its lines, checking the order of its own lines on the way. */
export const tenures = (events: ReadonlyArray<JoinEvent>): Array<Tenure> => {
  const result: Array<Tenure> = []
  let open: { epoch: number; index: number; size: number; start: number; last: number; ticks: number } | undefined
  const close = (end: number, endedBy: string) => {
    if (open === undefined) return
    result.push({ member: events[0]!.member, ...open, end, endedBy })
    open = undefined
  }
  for (const e of events) {
    const ts = Date.parse(e.ts)
    if (e.event === "work") {
      if (open === undefined || open.epoch !== e.epoch || open.index !== e.index || open.size !== e.size) {
        throw new Error(`work line outside its assignment: ${JSON.stringify(e)}`)
      }
      open.last = ts
      open.ticks++
      continue
    }
    if (e.state === "assigned") {
      if (open !== undefined) throw new Error(`assigned twice without an end: ${JSON.stringify(e)}`)
      open = { epoch: e.epoch!, index: e.index!, size: e.size!, start: ts, last: ts, ticks: 0 }
      continue
    }
    close(ts, e.state)
  }
  if (open !== undefined) close(open.last, "killed")
  return result
}

/**
 * G1 and G2 from the members' tenures: within an epoch one N and distinct indices in [0, N), held by
 * distinct members; exactly 0..N-1 in each of `covers` (the epochs the test saw converge); and every
 * tenure of an older epoch ended before any of a newer one started.
 */
export const expectG1G2 = (all: ReadonlyArray<Tenure>, covers: ReadonlyArray<{ readonly epoch: number; readonly size: number }>): void => {
  const byEpoch = new Map<number, Array<Tenure>>()
  for (const t of all) byEpoch.set(t.epoch, [...(byEpoch.get(t.epoch) ?? []), t])
  for (const [epoch, ts] of byEpoch) {
    expect(new Set(ts.map((t) => t.size)).size, `one size in epoch ${epoch}`).toBe(1)
    const size = ts[0]!.size
    const indices = ts.map((t) => t.index)
    expect(new Set(indices).size, `distinct indices in epoch ${epoch}`).toBe(indices.length)
    for (const i of indices) expect(i).toBeGreaterThanOrEqual(0)
    for (const i of indices) expect(i).toBeLessThan(size)
    expect(new Set(ts.map((t) => t.member)).size).toBe(ts.length)
  }
  for (const { epoch, size } of covers) {
    const indices = (byEpoch.get(epoch) ?? []).map((t) => t.index).sort((x, y) => x - y)
    expect(indices, `exact cover in epoch ${epoch}`).toEqual([...Array(size).keys()])
  }
  const epochs = [...byEpoch.keys()].sort((x, y) => x - y)
  for (const [i, older] of epochs.entries()) {
    const lastEnd = Math.max(...byEpoch.get(older)!.map((t) => t.end))
    for (const newer of epochs.slice(i + 1)) {
      const firstStart = Math.min(...byEpoch.get(newer)!.map((t) => t.start))
      expect(lastEnd, `epoch ${older} ended before epoch ${newer} started`).toBeLessThanOrEqual(firstStart)
    }
  }
}

/**
 * `join`'s timing options for process tests: `heartbeatMs`, `leaseMs`, fence margin and statement
 * timeout 1 s, a work line every 100 ms (the lease must exceed heartbeat + margin + statement timeout).
 */
export const joinTimings = (heartbeatMs: number, leaseMs: number): Array<string> => [
  "--heartbeat",
  `${heartbeatMs}ms`,
  "--lease",
  `${leaseMs}ms`,
  "--fence-margin",
  "1s",
  "--statement-timeout",
  "1s",
  "--work-interval",
  "100ms"
]
