// Formation from cold (issue 15, "scale"): N member processes (bench/member.mjs, one connection each
// for statements and notifications, as `modulo-group join` runs) are spawned and readied (loaded,
// connected) first; then all N are told to join at once, and the group is formed when every one of
// them works in the same epoch with size N. Then one more process joins the formed group: its join is
// the time from the command until it works (after everyone has acknowledged its epoch). Then everyone
// leaves; the rows still there after that are counted (`leftRows`: rows whose lease still runs, from
// leaves that gave up: they stay until their lease ends, and joiners wait for them as overdue;
// `expiredRows`: rows whose leave found the group's lock busy and ended its own lease, which the
// next change deletes), and the next trial waits until the group has no row with a running lease,
// then forms it again (same processes).
//
//   npm run build   # bench/member.mjs loads dist/ (or MODULO_GROUP_LIB, a file URL of an index.js)
//   DATABASE_URL=postgres://... node bench/formation.mjs [sizes=16,32,64] [trials=3]
//
// Prints one JSON line per trial and a summary per size (medians). Each size uses N + 1 connections
// of the server (plus one here); the server's max_connections bounds N.
import { spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import * as path from "node:path"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import * as os from "node:os"
import pg from "pg"

const here = path.dirname(fileURLToPath(import.meta.url))
const url = process.env.DATABASE_URL
if (!url) throw new Error("DATABASE_URL is required")
const sizes = (process.argv[2] ?? "16,32,64").split(",").map(Number)
const trials = Number(process.argv[3] ?? 3)
const config = JSON.parse(process.env.FORMATION_CONFIG ?? "{}")
const formTimeoutMs = Number(process.env.FORMATION_TIMEOUT_MS ?? 120_000)

const now = () => performance.timeOrigin + performance.now()
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

class Member {
  constructor(groupId) {
    this.events = []
    this.waiters = []
    this.last = undefined
    this.id = undefined
    this.child = spawn(process.execPath, [path.join(here, "member.mjs")], {
      env: { ...process.env, MG_BENCH: JSON.stringify({ url, onePool: true, config: { groupId, ...config, migrate: false } }) },
      stdio: ["pipe", "pipe", "pipe"]
    })
    this.child.stderr.on("data", (d) => process.stderr.write(`[member] ${d}`))
    readline.createInterface({ input: this.child.stdout }).on("line", (line) => {
      let e
      try {
        e = JSON.parse(line)
      } catch {
        return
      }
      if (e.k === "joining") this.id = e.m
      if (e.k === "start" || e.k === "end") this.last = e
      if (e.k === "left") this.last = undefined
      this.events.push(e)
      for (const w of this.waiters.splice(0)) w()
    })
    this.exited = new Promise((r) => this.child.once("exit", r))
  }
  send(line) {
    this.child.stdin.write(`${line}\n`)
  }
  /** Resolves when `pred(this)` holds (checked at every event). */
  until(pred) {
    return new Promise((resolve) => {
      const check = () => (pred(this) ? resolve() : this.waiters.push(check))
      check()
    })
  }
  stats() {
    const n = this.events.length
    this.send("stats")
    return this.until((m) => m.events.slice(n).some((e) => e.k === "stats")).then(() =>
      this.events.slice(n).find((e) => e.k === "stats")
    )
  }
}

/** Every member works in one epoch of size n: that epoch's start time (latest), else undefined. */
const formedAt = (members, n) => {
  const lasts = members.map((m) => m.last)
  if (lasts.some((e) => e === undefined || e.k !== "start" || e.n !== n)) return undefined
  const epoch = lasts[0].e
  if (lasts.some((e) => e.e !== epoch)) return undefined
  return Math.max(...lasts.map((e) => e.t))
}

const waitFormed = async (members, n, t0) => {
  const deadline = performance.now() + formTimeoutMs
  for (;;) {
    const at = formedAt(members, n)
    if (at !== undefined) return at - t0
    if (performance.now() > deadline) return NaN
    await sleep(5)
  }
}

const leaveAll = async (members) => {
  for (const m of members) if (m.id !== undefined) m.send(`leave ${m.id}`)
  await Promise.all(members.map((m) => m.id === undefined ? undefined : m.until((x) => x.events.at(-1)?.k === "left")))
  for (const m of members) m.id = undefined
}

const busyOf = async (members) => (await Promise.all(members.map((m) => m.stats()))).reduce((a, s) => a + (s.busy ?? 0), 0)

const db = new pg.Client({ connectionString: url })
await db.connect()
/** The group's epoch now (changes made so far). */
const epochOf = async (groupId) =>
  Number((await db.query("SELECT epoch FROM modulo_group.groups WHERE group_id = $1", [groupId])).rows[0]?.epoch ?? 0)

/** The group's rows: with a lease that still runs, and with one that has run out. */
const rowsOf = async (groupId) => {
  const [r] = (await db.query(
    `SELECT count(*) FILTER (WHERE lease_expires_at > now()) AS live, count(*) FILTER (WHERE lease_expires_at <= now()) AS expired
       FROM modulo_group.members WHERE group_id = $1`,
    [groupId]
  )).rows
  return { live: Number(r.live), expired: Number(r.expired) }
}
/**
 * Until the group has no row with a running lease (at most `ms`): each trial forms an empty group
 * (rows whose lease has run out are deleted by its first change).
 */
const untilEmpty = async (groupId, ms) => {
  const until = performance.now() + ms
  while ((await rowsOf(groupId)).live > 0 && performance.now() < until) await sleep(100)
}

const summary = []
console.log(`load ${os.loadavg().map((x) => x.toFixed(1)).join(" ")}, config ${JSON.stringify(config)}`)
for (const n of sizes) {
  const groupId = `formation-${n}-${randomUUID().slice(0, 8)}`
  const members = []
  // Spawn 8 at a time, each ready (loaded, connected) before the trials start.
  for (let i = 0; i < n + 1; i += 8) {
    const batch = Array.from({ length: Math.min(8, n + 1 - i) }, () => new Member(groupId))
    await Promise.all(batch.map((m) => m.until((x) => x.events.some((e) => e.k === "ready"))))
    members.push(...batch)
  }
  await sleep(1000)
  const [group, extra] = [members.slice(0, n), members[n]]
  const rows = []
  for (let t = 0; t < trials; t++) {
    const busy0 = await busyOf(members)
    const epoch0 = await epochOf(groupId)
    const t0 = now()
    for (const m of group) m.send("join")
    const formMs = await waitFormed(group, n, t0)
    // Changes (epochs) it took to form: one per join without coalescing.
    const changes = (await epochOf(groupId)) - epoch0
    let joinMs = NaN
    let allMs = NaN
    if (!Number.isNaN(formMs)) {
      await sleep(500)
      const t1 = now()
      extra.send("join")
      await Promise.race([
        extra.until((x) => x.last?.k === "start" && x.last.n === n + 1),
        sleep(formTimeoutMs)
      ])
      if (extra.last?.k === "start" && extra.last.n === n + 1) joinMs = extra.last.t - t1
      allMs = await waitFormed(members, n + 1, t1)
    }
    const busy = (await busyOf(members)) - busy0
    await leaveAll(members)
    // The rows still there once every process has finished its leave (docs/benchmarks.md, "what 65
    // leaves at once do"). The next trial waits for those whose lease still runs.
    const left = await rowsOf(groupId)
    const row = {
      members: n, trial: t + 1, formMs: Math.round(formMs), joinMs: Math.round(joinMs), allWorkingMs: Math.round(allMs),
      changes, busy, leftRows: left.live, expiredRows: left.expired
    }
    console.log(JSON.stringify(row))
    rows.push(row)
    await untilEmpty(groupId, 60_000)
    await sleep(1000)
  }
  for (const m of members) m.send("leave")
  await Promise.race([Promise.all(members.map((m) => m.exited)), sleep(15_000)])
  for (const m of members) m.child.kill("SIGKILL")
  const s = {
    members: n,
    trials,
    formMedianMs: median(rows.map((r) => r.formMs)),
    formMaxMs: Math.max(...rows.map((r) => r.formMs)),
    joinMedianMs: median(rows.map((r) => r.joinMs)),
    changesMedian: median(rows.map((r) => r.changes)),
    busyMedian: median(rows.map((r) => r.busy))
  }
  console.log(`summary ${JSON.stringify(s)}`)
  summary.push(s)
}
await db.end()
console.log(`done ${JSON.stringify(summary)} load ${os.loadavg().map((x) => x.toFixed(1)).join(" ")}`)
