// `modulo-group join <group> --fibers N` from cold (issue 15, "1,000 fibers in one process"): spawns
// the CLI with N members (heartbeat 1 s, lease 10 s unless given), and measures
//   - form: spawn → every one of the N printed a work line at size N in one epoch (and how many
//     epochs that took);
//   - steady: transactions per second of the whole database (pg_stat_database, commits + rollbacks,
//     this script's own reads subtracted) over a window after forming, i.e. the statements of all N
//     members together (renewals that are not in a transaction count as one each), and whether the
//     group was stable through it: still the epoch it formed in, all N live, every member printing
//     work lines in the 5 s after the window;
//   - leave: SIGTERM → the process exited, and how many member rows were left behind.
// One line per trial, then the medians.
//
//   npm run build
//   DATABASE_URL=postgres://... node bench/fibers.mjs [N=1000] [trials=3] [steady seconds=20] [heartbeat=1s]
import { spawn } from "node:child_process"
import * as path from "node:path"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import pg from "pg"

const here = path.dirname(fileURLToPath(import.meta.url))
const url = process.env.DATABASE_URL
if (!url) throw new Error("DATABASE_URL is required")
const N = Number(process.argv[2] ?? 1000)
const trials = Number(process.argv[3] ?? 3)
const steadySeconds = Number(process.argv[4] ?? 20)
const heartbeat = process.argv[5] ?? "1s"
const formTimeoutMs = 120_000
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)]
}

const client = new pg.Client({ connectionString: url, application_name: "modulo-group-bench-fibers" })
await client.connect()
const transactions = async () =>
  Number((await client.query(
    "SELECT xact_commit + xact_rollback AS n FROM pg_stat_database WHERE datname = current_database()"
  )).rows[0].n)

const trial = async (t) => {
  const group = `bench-fibers-${Date.now()}-${t}`
  const started = performance.now()
  const child = spawn(
    process.execPath,
    [path.join(here, "..", "cli", "bin", "modulo-group.js"), "join", group, "--fibers", String(N), "--json",
      "--heartbeat", heartbeat, "--lease", "10s"],
    { env: process.env, stdio: ["ignore", "pipe", "pipe"] }
  )
  let stderr = ""
  child.stderr.on("data", (d) => (stderr += d))
  const exited = new Promise((r) => child.on("exit", r))
  const byEpoch = new Map()
  // Members that printed a work line at size N (cleared to watch the end of the steady window).
  const byMember = new Set()
  let formed
  readline.createInterface({ input: child.stdout }).on("line", (line) => {
    let e
    try {
      e = JSON.parse(line)
    } catch {
      return
    }
    if (e.event === "work" && e.size === N) byMember.add(e.member)
    if (e.event !== "work" || e.size !== N || formed !== undefined) return
    const members = byEpoch.get(e.epoch) ?? new Set()
    members.add(e.member)
    byEpoch.set(e.epoch, members)
    if (members.size === N) formed = { ms: performance.now() - started, epoch: e.epoch }
  })
  while (formed === undefined && performance.now() - started < formTimeoutMs) await sleep(50)
  const result = { trial: t, formMs: formed?.ms, epochs: undefined, steadyTxPerS: undefined, leaveMs: undefined, rowsLeft: undefined }
  if (formed !== undefined) {
    const [g] = (await client.query("SELECT epoch FROM modulo_group.groups WHERE group_id = $1", [group])).rows
    result.epochs = Number(g.epoch)
    await sleep(3_000)
    const a = await transactions()
    const ta = performance.now()
    const stateOf = async () =>
      (await client.query(
        `SELECT g.epoch, g.size, count(m.*) FILTER (WHERE m.lease_expires_at > now()) AS live
           FROM modulo_group.groups g LEFT JOIN modulo_group.members m USING (group_id)
          WHERE g.group_id = $1 GROUP BY g.epoch, g.size`,
        [group]
      )).rows[0]
    const lines = () => byMember.size
    await sleep(steadySeconds * 1000)
    const b = await transactions()
    result.steadyTxPerS = (b - a - 2) / ((performance.now() - ta) / 1000)
    // Stable: no change in the window (the epoch it formed in), all N live, and every member printed
    // a work line in the last 5 s of it.
    byMember.clear()
    await sleep(5_000)
    const end = await stateOf()
    result.stable = Number(end.epoch) === result.epochs && Number(end.size) === N && Number(end.live) === N && lines() === N
    result.end = { epoch: Number(end.epoch), size: Number(end.size), live: Number(end.live), workingLast5s: lines() }
  } else {
    result.error = `not formed in ${formTimeoutMs / 1000} s: ${stderr.slice(-500)}`
  }
  const term = performance.now()
  child.kill("SIGTERM")
  await exited
  result.leaveMs = performance.now() - term
  result.rowsLeft = Number((await client.query(
    "SELECT count(*) AS n FROM modulo_group.members WHERE group_id = $1", [group]
  )).rows[0].n)
  console.log(JSON.stringify(result))
  return result
}

const results = []
for (let t = 1; t <= trials; t++) results.push(await trial(t))
const formed = results.filter((r) => r.formMs !== undefined)
console.log(
  `--fibers ${N}, heartbeat ${heartbeat}: formed ${formed.length} of ${trials}; ` +
    `form median ${median(formed.map((r) => r.formMs)).toFixed(0)} ms (max ${Math.max(...formed.map((r) => r.formMs)).toFixed(0)}), ` +
    `epochs ${formed.map((r) => r.epochs).join("/")}; steady ${median(formed.map((r) => r.steadyTxPerS)).toFixed(2)} tx/s ` +
    `(stable ${formed.filter((r) => r.stable).length} of ${formed.length}); ` +
    `SIGTERM → exit median ${median(results.map((r) => r.leaveMs)).toFixed(0)} ms, rows left ${results.map((r) => r.rowsLeft).join("/")}`
)
await client.end()
