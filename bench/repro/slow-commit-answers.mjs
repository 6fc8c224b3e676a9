// (From the attack101 review.) One member whose COMMIT answers come DELAY ms late (TCP proxy; the server commits at
// once), two direct members; no churn. Counts change_log rows per subject and the direct members'
// work ticks per second over the run.
//   DATABASE_URL=... npm run build && node bench/repro/slow-commit-answers.mjs [seconds=40] [delayMs=1200]
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as net from "node:net"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import pg from "pg"
const seconds = Number(process.argv[2] ?? 40)
const DELAY = Number(process.argv[3] ?? 1200)
const ST = process.env.ST ?? "500ms"
const bin = fileURLToPath(new URL("../../cli/bin/modulo-group.js", import.meta.url))
const db = new URL(process.env.DATABASE_URL)
const TAG = Buffer.from([0x43, 0, 0, 0, 11, ...Buffer.from("COMMIT\0")])
const proxy = net.createServer((c) => {
  const s = net.connect(Number(db.port || 5432), db.hostname)
  c.on("data", (d) => s.write(d))
  let chain = Promise.resolve()
  s.on("data", (d) => {
    const ms = d.includes(TAG) ? DELAY : 0
    chain = chain.then(() => new Promise((r) => setTimeout(() => { if (!c.destroyed) c.write(d); r() }, ms)))
  })
  const end = () => { c.destroy(); s.destroy() }
  c.on("error", end); s.on("error", end); c.on("close", end); s.on("close", end)
})
await new Promise((r) => proxy.listen(0, "127.0.0.1", r))
const proxied = new URL(db); proxied.host = `127.0.0.1:${proxy.address().port}`
const group = `att101-slow-${randomBytes(3).toString("hex")}`
const work = new Map(); const stderr = []; const states = []
const run = (url, name) => {
  const child = spawn(process.execPath, [bin, "join", group, "--json", "--work-interval", "100ms", "--heartbeat", "300ms",
    "--lease", "3s", "--fence-margin", "600ms", "--statement-timeout", ST, "--name", name],
    { env: { ...process.env, DATABASE_URL: url, MODULO_GROUP_LISTEN_URL: db.toString() }, stdio: ["ignore", "pipe", "pipe"] })
  readline.createInterface({ input: child.stdout }).on("line", (l) => {
    const e = JSON.parse(l)
    if (e.event === "work") work.set(name, (work.get(name) ?? 0) + 1)
    else states.push(`${name}:${e.state}:${e.epoch}`)
  })
  readline.createInterface({ input: child.stderr }).on("line", (l) => stderr.push(`${name}: ${l}`))
  return child
}
const a = run(db.toString(), "a"), b = run(db.toString(), "b")
await new Promise((r) => setTimeout(r, 3000))
const w0 = new Map(work)
const c = run(proxied.toString(), "slow")
await new Promise((r) => setTimeout(r, seconds * 1000))
const w1 = new Map(work)
for (const ch of [a, b, c]) ch.kill("SIGTERM")
await new Promise((r) => setTimeout(r, 3000))
const client = new pg.Client({ connectionString: db.toString() }); await client.connect()
const { rows } = await client.query(`SELECT cause, count(*)::int n, count(DISTINCT subject)::int subjects, max(epoch)::int maxEpoch
  FROM modulo_group.change_log WHERE group_id = $1 GROUP BY cause`, [group])
await client.end()
const rate = (n) => ((w1.get(n) ?? 0) - (w0.get(n) ?? 0)) / seconds
console.log(JSON.stringify({ group, DELAY, ST, seconds, changeLog: rows, workTicksPerSec: { a: rate("a"), b: rate("b"), slow: rate("slow"), expectedEach: 10 },
  slowStates: states.filter((s) => s.startsWith("slow")).length,
  stderrKinds: Object.entries(stderr.reduce((m, l) => ((m[l.replace(/\d+/g, "#").slice(0, 140)] = (m[l.replace(/\d+/g, "#").slice(0, 140)] ?? 0) + 1), m), {})) }, null, 1))
proxy.close(); process.exit(0)
