// N `modulo-group join` processes against DATABASE_URL (issue "scale and speed"): the time from
// spawning them all to every one assigned in one epoch of size N ("form from cold", Node start-up
// included), then one more process: the time from its `joining` line to all N + 1 assigned in one
// epoch ("a join"). Prints one JSON line; kills every process it started.
//
//   npm run build && DATABASE_URL=postgres://... node bench/repro/cli-processes.mjs [N=64]
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import pg from "pg"

const n = Number(process.argv[2] ?? 64)
const bin = fileURLToPath(new URL("../../cli/bin/modulo-group.js", import.meta.url))
const group = `bench-cli-${randomBytes(4).toString("hex")}`
const children = []
const latest = new Map() // child index -> { state, epoch, size }
const stderr = new Map()
let joiningAt
const firstLine = new Map() // child index -> ms from the start to its first `joining` line
const t0 = performance.now()

const start = (i) => {
  const child = spawn(process.execPath, [bin, "join", group, "--json", "--work-interval", "1h"], {
    env: { ...process.env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  children.push(child)
  readline.createInterface({ input: child.stdout }).on("line", (line) => {
    let e
    try {
      e = JSON.parse(line)
    } catch {
      return
    }
    if (e.event !== "state") return
    if (e.state === "joining" && i === n && joiningAt === undefined) joiningAt = performance.now()
    if (e.state === "joining" && !firstLine.has(i)) firstLine.set(i, performance.now() - t0)
    latest.set(i, { state: e.state, epoch: e.epoch, size: e.size })
  })
  readline.createInterface({ input: child.stderr }).on("line", (line) => {
    const lines = stderr.get(i) ?? []
    lines.push(line)
    stderr.set(i, lines)
  })
}

const converged = (count) => {
  if (latest.size < count) return false
  const states = [...Array(count).keys()].map((i) => latest.get(i))
  return states.every((s) => s?.state === "assigned" && s.size === count && s.epoch === states[0].epoch)
}

const until = (done, limitMs) =>
  new Promise((resolve) => {
    const t0 = performance.now()
    const tick = () => {
      if (done()) return resolve(performance.now() - t0)
      if (performance.now() - t0 > limitMs) return resolve(undefined)
      setTimeout(tick, 5)
    }
    tick()
  })

const killAll = () => {
  for (const c of children) c.kill("SIGKILL")
}
process.on("exit", killAll)

// The processes' connections (application_name modulo-group-cli), sampled every 250 ms.
const observer = new pg.Client({ connectionString: process.env.DATABASE_URL })
await observer.connect()
let peakConnections = 0
const sampler = setInterval(() => {
  observer.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'modulo-group-cli'").then(
    (r) => (peakConnections = Math.max(peakConnections, r.rows[0].n)),
    () => {}
  )
}, 250)
for (let i = 0; i < n; i++) start(i)
const formMs = await until(() => converged(n), Number(process.env.FORM_LIMIT_MS ?? 120_000))
let joinMs
if (formMs !== undefined) {
  start(n)
  await until(() => joiningAt !== undefined, 30_000)
  const j0 = joiningAt ?? performance.now()
  await until(() => converged(n + 1), 30_000)
  joinMs = converged(n + 1) ? performance.now() - j0 : undefined
}
const refusals = [...stderr.values()].flat().filter((l) => /refuses connections/.test(l)).length
const joinFailures = [...stderr.values()].flat().filter((l) => /join failed/.test(l)).length
clearInterval(sampler)
await observer.end().catch(() => {})
console.log(JSON.stringify({
  processes: n,
  peakConnections,
  formFromColdMs: formMs === undefined ? null : Math.round(formMs),
  joinMs: joinMs === undefined ? null : Math.round(joinMs),
  refusalLines: refusals,
  joinFailedLines: joinFailures,
  // Node start-up: when the last process printed its first line (`joining`).
  lastStartedMs: Math.round(Math.max(...firstLine.values())),
  states: Object.entries([...latest.values()].reduce((acc, s) => {
    const key = `${s.state}:${s.epoch}:${s.size}`
    acc[key] = (acc[key] ?? 0) + 1
    return acc
  }, {})).sort((a, b) => b[1] - a[1]).slice(0, 6),
  sampleStderr: [...stderr.values()].flat().slice(0, 5)
}))
killAll()
process.exit(0)
