// The CLI's start-up, build against build (issue 15, "CLI command → first event"): spawns each given
// bin in turn, `rounds` times (after one unmeasured start of each, which writes its code cache), and
// prints per bin the median time from spawn to the first stdout line, and the CPU time (user + system,
// from /proc) the process had used by then. Interleaved, so that a machine whose speed drifts (this
// project's VMs drift by ±15% over minutes) favours no build: `BENCH_SECTIONS=cli npm run bench`
// measures the current build alone.
//
//   npm run build
//   DATABASE_URL=postgres://... node bench/cliStartup.mjs 40 /path/to/other/clone/cli/bin/modulo-group.js cli/bin/modulo-group.js
//   MG_ARGS='["--help"]' node bench/cliStartup.mjs 30 <bin> <bin>
//
// Default command: `join <group> --json` (its first event; the process is then stopped with SIGTERM
// and leaves). Each bin keeps its own code cache (keyed by its bundle).
import { spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"

const rounds = Number(process.argv[2] ?? 20)
const bins = process.argv.slice(3)
if (bins.length === 0) throw new Error("usage: node bench/cliStartup.mjs <rounds> <bin> [<bin> ...]")
const args = process.env.MG_ARGS ? JSON.parse(process.env.MG_ARGS) : ["join", `cli-startup-${randomUUID()}`, "--json"]

const cpuOf = (pid) => {
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ")
    return (Number(fields[11]) + Number(fields[12])) * 10
  } catch {
    return NaN
  }
}

const once = (bin) =>
  new Promise((resolve, reject) => {
    const t0 = performance.now()
    const child = spawn(process.execPath, [bin, ...args], { stdio: ["ignore", "pipe", "pipe"] })
    let ms
    let cpu
    let err = ""
    child.stderr.on("data", (c) => (err += c))
    child.stdout.on("data", () => {
      if (ms !== undefined) return
      ms = performance.now() - t0
      cpu = cpuOf(child.pid)
      child.kill("SIGTERM")
    })
    child.on("exit", () => (ms === undefined ? reject(new Error(`${bin} printed nothing: ${err}`)) : resolve({ ms, cpu })))
  })

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const results = bins.map(() => ({ ms: [], cpu: [] }))
for (const bin of bins) await once(bin)
for (let i = 0; i < rounds; i++) {
  for (let j = 0; j < bins.length; j++) {
    const { cpu, ms } = await once(bins[j])
    results[j].ms.push(ms)
    results[j].cpu.push(cpu)
  }
}
console.log(`modulo-group ${args.join(" ")}: ${rounds} starts of each bin, interleaved`)
bins.forEach((bin, j) => {
  const r = results[j]
  console.log(
    `${bin}: median ${median(r.ms).toFixed(0)} ms (min ${Math.min(...r.ms).toFixed(0)}, max ${Math.max(...r.ms).toFixed(0)}), CPU ${median(r.cpu).toFixed(0)} ms`
  )
})
