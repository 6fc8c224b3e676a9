/**
 * The CLI's start-up: from spawning `node cli/bin/modulo-group.js <args>` until its first line on
 * stdout (for `join <group> --json`: its first event), median of several runs. The command's code
 * cache is warmed by one run first (a user's first run of a build compiles it; every later one starts
 * from the cache), so the figures are those of every run but the first.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { median } from "./Database.js"

export interface StartupRow {
  readonly command: string
  readonly runs: number
  readonly medianMs: number
  readonly minMs: number
  readonly maxMs: number
  /**
   * Median CPU time (user + system) the process had used by its first line, from /proc (Linux; NaN
   * elsewhere): less sensitive than the wall-clock time to other work on the machine.
   */
  readonly cpuMs: number
}

/** CPU time (user + system, ms) of a running process, from /proc/<pid>/stat; NaN when unreadable. */
const cpuOf = (pid: number | undefined): number => {
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
    const ticks = Number(fields[11]) + Number(fields[12])
    return (ticks * 1000) / 100
  } catch {
    return NaN
  }
}

/** ms from spawn to the first stdout line; the process is then stopped with SIGTERM and awaited. */
const once = (
  bin: string,
  args: ReadonlyArray<string>,
  env: NodeJS.ProcessEnv
): Promise<{ readonly ms: number; readonly cpuMs: number }> =>
  new Promise((resolve, reject) => {
    const t0 = performance.now()
    const child = spawn(process.execPath, [bin, ...args], { env, stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    let err = ""
    let ms: number | undefined = undefined
    let cpuMs = NaN
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000)
    child.stderr.on("data", (c: Buffer) => (err += c.toString("utf8")))
    child.stdout.on("data", (c: Buffer) => {
      out += c.toString("utf8")
      if (ms === undefined && out.includes("\n")) {
        ms = performance.now() - t0
        cpuMs = cpuOf(child.pid)
        child.kill("SIGTERM")
      }
    })
    child.once("exit", () => {
      clearTimeout(timer)
      if (ms === undefined) reject(new Error(`modulo-group ${args.join(" ")} printed no line: ${err.trim()}`))
      else resolve({ ms, cpuMs })
    })
  })

/**
 * `runs` starts of each command, one after another, after one unmeasured warm-up start. With
 * `against` (another build's `cli/bin/modulo-group.js`): that build's starts interleaved with this
 * one's, so that a machine whose speed drifts (this project's VMs, by ±15% over minutes) favours
 * neither; its rows follow this build's, labelled with its path.
 */
export const measureStartup = async (
  root: string,
  databaseUrl: string,
  commands: ReadonlyArray<{ readonly label: string; readonly args: ReadonlyArray<string> }>,
  runs: number,
  against?: string
): Promise<Array<StartupRow>> => {
  const bins = [
    { bin: path.join(root, "cli", "bin", "modulo-group.js"), suffix: "" },
    ...(against === undefined ? [] : [{ bin: against, suffix: `, build at ${against}` }])
  ]
  const env = { ...process.env, DATABASE_URL: databaseUrl }
  const rows: Array<StartupRow> = []
  for (const { args, label } of commands) {
    for (const { bin } of bins) await once(bin, args, env)
    const samples = bins.map(() => ({ ms: [] as Array<number>, cpus: [] as Array<number> }))
    for (let i = 0; i < runs; i++) {
      for (const [j, { bin }] of bins.entries()) {
        const { cpuMs, ms } = await once(bin, args, env)
        samples[j]!.ms.push(ms)
        samples[j]!.cpus.push(cpuMs)
      }
    }
    bins.forEach(({ suffix }, j) => {
      const { cpus, ms } = samples[j]!
      rows.push({
        command: `${label}${suffix}`,
        runs,
        medianMs: median(ms),
        minMs: Math.min(...ms),
        maxMs: Math.max(...ms),
        cpuMs: median(cpus)
      })
    })
  }
  return rows
}
