// What one renewal costs its process, piece by piece (issue 15, docs/benchmarks.md "What a renewal
// costs its process"): CPU (every thread, `process.cpuUsage`) and bytes allocated (V8's sampling heap
// profiler, objects that minor and major collections freed included) per call, each piece in a fresh
// process of its own, at a given spacing (a renewal every `spacing` ms; 0: back to back); first the
// CPU over `seconds`, then the bytes over as long again (the profiler slows every allocation):
//
//   wake       an `Effect.sleep` loop alone (what waking a process costs here)
//   statement  the single-member renewal statement (`renewLease`) through @effect/sql
//   store      `store.heartbeat` of one member (the PostgreSQL store's whole call)
//   member     one member of a group of one, at a heartbeat of `spacing` ms (every renewal of its
//              lease keeper: the wait, the store call, the reply's step)
//   fibers     `RENEWAL_COST_MEMBERS` members (default 64) of one group in this process, at a heartbeat
//              of `spacing` ms: their renewals share statements (a call: one member's renewal)
//
//   npm run build
//   DATABASE_URL=postgres://... node bench/renewalCost.mjs [spacing=20] [seconds=10] [pieces=wake,statement,store,member]
//
// RENEWAL_COST_TOP=n also prints, per piece, the n functions that allocated most (KB per call).
// RENEWAL_COST_OPS=1 also counts, over a third window as long, the Effect operations the runtime
// executed and the fibers it started, per call, every fiber of the process included (a supervisor
// with op supervision, which slows every operation: counted after the CPU and the bytes).
// MODULO_GROUP_LIB: another build's `dist/src/index.js`, a path or a URL (its `internal/pg/statements.js` beside it),
// for a before/after. CPU varies ±20% from run to run on a 2-core VM; the bytes allocated do not.
// The database must be migrated (`npx modulo-group migrate`).
import { spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import { Session } from "node:inspector/promises"
import { fileURLToPath, pathToFileURL } from "node:url"

const lib_ = process.env.MODULO_GROUP_LIB
const libUrl = lib_ === undefined
  ? new URL("../dist/src/index.js", import.meta.url).href
  : lib_.startsWith("file:") ? lib_ : pathToFileURL(lib_).href
const piece = process.env.RENEWAL_COST_PIECE

if (piece === undefined) {
  // The parent: one child per piece, one line each.
  if (!process.env.DATABASE_URL) throw new Error("DATABASE_URL is required")
  const spacing = Number(process.argv[2] ?? 20)
  const seconds = Number(process.argv[3] ?? 10)
  // Back to back, `wake` would never yield to the timers that end the measurement: left out.
  const pieces = (process.argv[4] ?? "wake,statement,store,member").split(",").filter((p) => spacing > 0 || p !== "wake")
  console.log(`one renewal's cost, a call every ${spacing} ms (0: back to back), ${seconds} s after 5 s of warm-up; ${libUrl}`)
  for (const p of pieces) {
    const line = await new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [fileURLToPath(import.meta.url)], {
        env: { ...process.env, RENEWAL_COST_PIECE: p, RENEWAL_COST_SPACING: String(spacing), RENEWAL_COST_SECONDS: String(seconds) },
        stdio: ["ignore", "pipe", "inherit"]
      })
      let out = ""
      child.stdout.on("data", (d) => (out += d))
      child.on("exit", (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`${p}: exit ${code}`))))
    })
    console.log(line)
  }
  process.exit(0)
}

// A child: one piece.
const { PgClient } = await import("@effect/sql-pg")
const { SqlClient } = await import("@effect/sql")
const { Effect, Exit, Layer, Logger, LogLevel, ManagedRuntime, Redacted, RuntimeFlags, Scope, Supervisor } = await import("effect")
const lib = await import(libUrl)
const Statements = await import(new URL("internal/pg/statements.js", libUrl).href)
const spacing = Number(process.env.RENEWAL_COST_SPACING)
const seconds = Number(process.env.RENEWAL_COST_SECONDS)
// The store's writer (migration 0012), given so that the bare statement renews as the store would.
const writer = randomUUID()
// RENEWAL_COST_OPS: operations and fiber starts, counted while `counting`.
const countOps = process.env.RENEWAL_COST_OPS === "1"
let counting = false
let ops = 0
let fibers = 0
class OpCounter extends Supervisor.AbstractSupervisor {
  get value() {
    return Effect.void
  }
  onStart() {
    if (counting) fibers++
  }
  onEffect() {
    if (counting) ops++
  }
}
const runtime = ManagedRuntime.make(lib.PgMembershipStore.layer({ migrate: false, writer }).pipe(
  Layer.provideMerge(PgClient.layer({ url: Redacted.make(process.env.DATABASE_URL), maxConnections: piece === "fibers" ? 4 : 2 })),
  Layer.provideMerge(Logger.minimumLogLevel(LogLevel.Error)),
  Layer.provideMerge(countOps ? Layer.merge(Supervisor.addSupervisor(new OpCounter()), RuntimeFlags.enableOpSupervision) : Layer.empty)
))
const groupId = `renewal-cost-${randomUUID()}`
const memberId = randomUUID()
const leaseMs = 10_000
let calls = 0
const scope = await runtime.runPromise(Scope.make())
const pause = spacing > 0 ? Effect.sleep(spacing) : Effect.void

if (piece === "member" || piece === "fibers") {
  const members = piece === "fibers" ? Number(process.env.RENEWAL_COST_MEMBERS ?? 64) : 1
  await runtime.runPromise(Effect.gen(function*() {
    const base = yield* lib.MembershipStore.MembershipStore
    const store = { ...base, heartbeat: (...a) => Effect.tap(base.heartbeat(...a), () => Effect.sync(() => void calls++)) }
    for (let i = 0; i < members; i++) {
      const member = yield* lib.Membership.make({ groupId, heartbeat: `${Math.max(spacing, 1)} millis`, lease: "10 seconds" }).pipe(
        Effect.provideService(lib.MembershipStore.MembershipStore, store),
        Scope.extend(scope)
      )
      yield* member.whileAssigned(() => Effect.never).pipe(Scope.extend(scope))
    }
  }))
} else {
  runtime.runFork(Effect.gen(function*() {
    const store = yield* lib.MembershipStore.MembershipStore
    const sql = yield* SqlClient.SqlClient
    const view = piece === "wake" ? undefined : yield* store.join(groupId, { memberId, host: "bench", pid: process.pid, name: "renewal-cost" }, leaseMs)
    while (true) {
      yield* pause
      // Numbered past the join's (its store's counter: about the wall clock in microseconds).
      if (piece === "statement") yield* Statements.renewLease(sql, groupId, memberId, view.epoch, leaseMs, false, null, 1, Date.now() * 1_000 + 1_000_000 + calls, writer)
      else if (piece === "store") yield* store.heartbeat(groupId, memberId, view.epoch, leaseMs, {})
      calls++
    }
  }).pipe(Effect.forkIn(scope)))
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
await sleep(5_000)
// CPU first, without the profiler (which slows every allocation); then the bytes, with it.
let calls0 = calls
const cpu0 = process.cpuUsage()
await sleep(seconds * 1_000)
const cpu = process.cpuUsage(cpu0)
const cpuCalls = calls - calls0
const session = new Session()
session.connect()
await session.post("HeapProfiler.startSampling", {
  samplingInterval: 512,
  includeObjectsCollectedByMajorGC: true,
  includeObjectsCollectedByMinorGC: true
})
calls0 = calls
await sleep(seconds * 1_000)
const { profile } = await session.post("HeapProfiler.stopSampling")
const allocCalls = calls - calls0
let opsLine = ""
if (countOps) {
  calls0 = calls
  counting = true
  await sleep(seconds * 1_000)
  counting = false
  const opCalls = calls - calls0
  opsLine = `, ${(ops / opCalls).toFixed(0)} Effect operations and ${(fibers / opCalls).toFixed(2)} fibers started per call (${opCalls} calls)`
}
let bytes = 0
// Per allocating function (name, file, line): its own bytes.
const sites = new Map()
const walk = (node) => {
  bytes += node.selfSize
  const f = node.callFrame
  const site = `${f.functionName || "(anonymous)"} ${f.url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*\/dist\//, "dist/")}:${f.lineNumber + 1}`
  sites.set(site, (sites.get(site) ?? 0) + node.selfSize)
  node.children.forEach(walk)
}
walk(profile.head)
console.log(
  `${piece.padEnd(9)} ${((cpu.user + cpu.system) / 1_000 / cpuCalls).toFixed(2)} ms CPU per call (${cpuCalls} calls), ` +
    `${(bytes / 1_024 / allocCalls).toFixed(1)} KB allocated per call (${allocCalls} calls)${opsLine}`
)
// RENEWAL_COST_TOP=n: the n functions that allocated most, in KB per call.
const top = Number(process.env.RENEWAL_COST_TOP ?? 0)
for (const [site, b] of [...sites].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  console.log(`  ${(b / 1_024 / allocCalls).toFixed(1).padStart(6)} KB  ${site}`)
}
await runtime.runPromise(Scope.close(scope, Exit.void)).catch(() => undefined)
process.exit(0)
