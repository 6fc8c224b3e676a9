// CPU per member process per change (issue 15: what bounds a join over many processes on a small
// machine). N member processes (bench/member.mjs, one member each, pool of 2 plus LISTEN, heartbeat
// 200 ms, lease 2 s) form a group; then an idle window of K seconds, then K join/leave cycles of one
// more process (2K changes). Each member's CPU (`stats` cpuMs: process.cpuUsage, every thread) over
// both windows; the idle rate is subtracted from the busy window, the rest divided by N × 2K. Also
// the members' renewals per change (their periodic ones included).
//
//   npm run build && DATABASE_URL=postgres://... node bench/cpuPerChange.mjs [members=8] [cycles=10]
import { spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import * as readline from "node:readline"
const url = process.env.DATABASE_URL
const n = Number(process.argv[2] ?? 8), k = Number(process.argv[3] ?? 10)
const config = { groupId: `cpu-${randomUUID()}`, heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "300 millis", statementTimeout: "1 second", migrate: false }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const mk = () => {
  const child = spawn(process.execPath, [new URL("./member.mjs", import.meta.url).pathname], { env: { ...process.env, MG_BENCH: JSON.stringify({ url, config, maxConnections: 2 }) }, stdio: ["pipe", "pipe", "inherit"] })
  const m = { child, events: [], waiters: [], id: undefined }
  readline.createInterface({ input: child.stdout }).on("line", (l) => { let e; try { e = JSON.parse(l) } catch { return }; if (e.k === "joining") m.id = e.m; m.events.push(e); for (const w of m.waiters.splice(0)) w() })
  m.until = (p) => new Promise((res) => { const c = () => (p(m) ? res() : m.waiters.push(c)); c() })
  m.send = (s) => child.stdin.write(s + "\n")
  m.stats = async () => { const i = m.events.length; m.send("stats"); await m.until((x) => x.events.slice(i).some((e) => e.k === "stats")); return m.events.slice(i).find((e) => e.k === "stats") }
  return m
}
const members = Array.from({ length: n }, mk)
const extra = mk()
await Promise.all([...members, extra].map((m) => m.until((x) => x.events.some((e) => e.k === "ready"))))
for (const m of members) { m.send("join"); await m.until((x) => x.events.some((e) => e.k === "start" && e.n >= 1)) }
await sleep(2000)
let hb = []
const cpu = async () => { const st = await Promise.all(members.map((m) => m.stats())); hb = st.map((s) => s.calls.heartbeat.calls); return st.map((s) => s.cpuMs) }
const sum = (a) => a.reduce((x, y) => x + y, 0)
let c0 = await cpu(); const t0 = Date.now(); const idleHb0 = hb
await sleep(k * 1000); let c1 = await cpu(); const idleMs = Date.now() - t0
const idle = sum(c1) - sum(c0)
const idleHb = hb
c0 = await cpu(); const t1 = Date.now(); const hb0 = hb
for (let i = 0; i < k; i++) {
  const before = extra.events.length
  extra.send("join")
  await extra.until((x) => x.events.slice(before).some((e) => e.k === "start" && e.n === n + 1))
  await sleep(250)
  const b2 = extra.events.length
  extra.send(`leave ${extra.id}`)
  await extra.until((x) => x.events.slice(b2).some((e) => e.k === "left"))
  await Promise.all(members.map((m) => m.until((x) => x.events.at(-1)?.k === "start" && x.events.at(-1).n === n)))
  await sleep(250)
}
c1 = await cpu(); const busyMs = Date.now() - t1
const busy = sum(c1) - sum(c0)
const renewals = sum(hb) - sum(hb0)
const perChange = (busy - idle * busyMs / idleMs) / (n * 2 * k)
console.log(JSON.stringify({ n, k, idleCpuMsPerMemberPerSec: +(idle / n / (idleMs / 1000)).toFixed(2), busyWindowMs: busyMs, cpuMsPerMemberPerChange: +perChange.toFixed(2), renewalsPerMemberPerChangeInclIdle: +(renewals / (n * 2 * k)).toFixed(2), idleRenewalsPerMemberPerSec: +((sum(idleHb) - sum(idleHb0)) / n / (idleMs / 1000)).toFixed(2) }))
for (const m of [...members, extra]) m.send("leave")
await sleep(3000)
for (const m of [...members, extra]) m.child.kill("SIGKILL")
process.exit(0)
