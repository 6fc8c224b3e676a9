// Where the time of a process's join goes (issue 15, "join → converged, 4 processes"): a group of
// `members` member processes (bench/member.mjs, pool of 2 plus the LISTEN connection, as the
// convergence bench runs them) is formed; then, `rounds` times, a fresh process is spawned and
// readied (loaded, pool warm), told to join, and leaves again after the group has converged. Each
// round prints one line: every event from the join command on, in ms after it (the joiner's store
// calls with their duration, epoch and whether every acknowledgement was in; each member's work
// ending in the old epoch and starting in the new one).
//
//   npm run build
//   DATABASE_URL=postgres://... node bench/processJoin.mjs [members=3] [rounds=4] [warm] [statements]
//
// `warm`: each joiner, before it is ready, runs one member of its own through a join, its first
// work and a leave in a scratch group (bench/member.mjs `MG_BENCH_WARM`), so the timed join runs
// code this process has run before: the difference to a cold joiner is the cost of first execution.
//
// `statements`: every member's store calls and notification arrivals are printed too, and the
// joiner's statements and store steps, one a line (where a warm join's time goes: docs/benchmarks.md).
//
// The database must be migrated (`npx modulo-group migrate`). Heartbeat 200 ms, lease 2 s.
import { spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import * as path from "node:path"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"

const here = path.dirname(fileURLToPath(import.meta.url))
const url = process.env.DATABASE_URL
if (!url) throw new Error("DATABASE_URL is required")
const size = Number(process.argv[2] ?? 3)
const rounds = Number(process.argv[3] ?? 4)
const warm = process.argv.slice(4).includes("warm")
const statements = process.argv.slice(4).includes("statements")
const config = {
  groupId: `process-join-${randomUUID()}`,
  heartbeat: "200 millis",
  lease: "2 seconds",
  fenceMargin: "300 millis",
  statementTimeout: "1 second",
  migrate: false
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const events = []
const children = []

/** Spawns a member process; resolves when it is ready. `traced`: its store calls are printed too. */
const spawnMember = (name, traced) =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(here, "member.mjs")], {
      env: { ...process.env, MG_BENCH_TRACE: traced || statements ? "1" : "", MG_BENCH_STATEMENTS: statements ? (traced ? "1" : "notifications") : "", MG_BENCH_WARM: traced && warm ? "1" : "", MG_BENCH: JSON.stringify({ url, config, maxConnections: 2 }) },
      stdio: ["pipe", "pipe", "inherit"]
    })
    children.push(child)
    child.on("error", reject)
    readline.createInterface({ input: child.stdout }).on("line", (line) => {
      let o
      try {
        o = JSON.parse(line)
      } catch {
        return
      }
      events.push({ ...o, p: name })
      if (o.k === "ready") resolve(child)
    })
  })

/** Until every live member works in one epoch of size `n` (or `ms` passed). */
const converged = async (n, ms) => {
  const until = Date.now() + ms
  while (Date.now() < until) {
    const working = new Map()
    for (const e of events) {
      if (e.k === "start") working.set(e.m, e)
      if (e.k === "end" || e.k === "left") working.delete(e.m)
    }
    const starts = [...working.values()]
    if (starts.length === n && starts.every((s) => s.e === starts[0].e && s.n === n)) return true
    await sleep(20)
  }
  return false
}

try {
  for (let i = 0; i < size; i++) (await spawnMember(`m${i}`, false)).stdin.write("join\n")
  if (!(await converged(size, 30_000))) throw new Error(`the group of ${size} did not form within 30 s`)
  for (let round = 0; round < rounds; round++) {
    const name = `new${round}`
    const joiner = await spawnMember(name, true)
    await sleep(1_000)
    const from = events.length
    joiner.stdin.write("join\n")
    const ok = await converged(size + 1, 10_000)
    // In order of time (a store call is printed as it ends; `t` is its start).
    const seen = events.slice(from).filter((e) => e.t !== undefined).sort((a, b) => a.t - b.t)
    const t0 = seen.find((e) => e.k === "joining")?.t ?? seen[0]?.t
    const shown = seen.map((e) => {
      const at = `+${Math.round(e.t - t0)}`
      if (e.k === "statement") return `\n    ${e.p} statement ${e.ms} ms: ${e.text}${at}`
      if (e.k === "step") return `\n    ${e.p} step ${e.op} ${e.step}${at}`
      if (e.k === "notification") return `${e.p}:notified${at}`
      if (e.k === "call") return `${e.p}.${e.op}(${e.ms} ms → epoch ${e.e}${e.all === true ? ", all acked" : e.all === false ? ", waiting" : ""})${at}`
      return `${e.p}:${e.k}${e.e !== undefined ? `@${e.e}` : ""}${at}`
    })
    console.log(`round ${round}${ok ? "" : " (did not converge within 10 s)"}: ${shown.join("  ")}`)
    joiner.stdin.write("leave\n")
    await converged(size, 10_000)
  }
} finally {
  for (const child of children) child.kill("SIGTERM")
  await sleep(1_000)
}
