/**
 * A chaos run: real `modulo-group join --json` processes on a real PostgreSQL, a seeded schedule of
 * faults, and the independent monitor (monitor.mjs) that checks G1, G2 and G4 from their output.
 *
 * Faults, one at a time (the next only once the group has reconverged, or its bound has passed):
 * - `kill`: SIGKILL of a random member; then `join`: a new process in its slot, with its name
 *   (a member that restarts with the same name);
 * - `leave`: SIGTERM (graceful leave); then `join` again;
 * - `sigstop` / `sigcont`: SIGSTOP of a random member, SIGCONT once its lease is past;
 * - `term-backend`: pg_terminate_backend of a random pool connection of a member;
 * - `term-listener`: the same for a LISTEN connection (application_name `modulo-group/listen`);
 * - `restart`: the database is stopped (fast shutdown) and started again on the same port.
 * Kinds come in rounds, each kind once per round in a seeded order, so even a short run has them all.
 */
import { spawn, execFile } from "node:child_process"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import pg from "pg"
import { Monitor, stats } from "./monitor.mjs"

const bin = fileURLToPath(new URL("../bin/modulo-group.js", import.meta.url))

/** mulberry32: a small seeded PRNG. */
export const prng = (seed) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export const ALL_KINDS = ["kill", "leave", "sigstop", "term-backend", "term-listener", "restart"]

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Every member process still running, of every run in this process: killed if the runner is stopped. */
const alive = new Set()

/** SIGKILLs every member process (the runner was interrupted); SIGCONT first for stopped ones. */
export const killAll = () => {
  for (const child of alive) {
    child.kill("SIGCONT")
    child.kill("SIGKILL")
  }
}

/** pid of the local process that owns TCP port `port` on 127.0.0.1 (via `ss`), if any. */
const ownerOfPort = (port) =>
  new Promise((resolve) => {
    execFile("ss", ["-tnpH", "state", "established", `( sport = :${port} )`], (error, stdout) => {
      if (error) return resolve(undefined)
      const m = /pid=(\d+)/.exec(stdout)
      resolve(m ? Number(m[1]) : undefined)
    })
  })

/**
 * @param {{
 *   members: number, durationMs: number, seed: number,
 *   heartbeatMs: number, leaseMs: number, fenceMarginMs: number, statementTimeoutMs: number, workIntervalMs: number,
 *   kinds: Array<string>, server: { url: string, restart?: () => Promise<{ stopMs: number, startMs: number }> },
 *   log: (line: string) => void, group?: string
 * }} options
 */
export const runChaos = async (options) => {
  const { members: n, heartbeatMs, leaseMs } = options
  const random = prng(options.seed)
  const pick = (xs) => xs[Math.floor(random() * xs.length)]
  const monitor = new Monitor({ heartbeatMs, leaseMs })
  const group = options.group ?? `chaos-${options.seed}-${Date.now().toString(36)}`
  const env = { ...process.env, DATABASE_URL: options.server.url }
  const log = options.log
  const generalBound = leaseMs + 2 * heartbeatMs
  const children = new Map() // label -> ChildProcess
  const slots = new Array(n).fill(undefined) // slot -> label
  const generation = new Array(n).fill(0)
  const unexpectedExits = []
  const restarts = []
  const actions = []
  let stopping = false

  const timing = [
    "--heartbeat", `${heartbeatMs}ms`,
    "--lease", `${leaseMs}ms`,
    "--fence-margin", `${options.fenceMarginMs}ms`,
    "--statement-timeout", `${options.statementTimeoutMs}ms`,
    "--work-interval", `${options.workIntervalMs}ms`
  ]

  const startMember = (slot) => {
    generation[slot]++
    const name = `m${slot}`
    const label = `${name}#${generation[slot]}`
    const child = spawn(process.execPath, [bin, "join", group, "--json", "--name", name, ...timing], {
      env,
      stdio: ["ignore", "pipe", "pipe"]
    })
    monitor.spawn(label, slot, Date.now())
    children.set(label, child)
    alive.add(child)
    slots[slot] = label
    readline.createInterface({ input: child.stdout }).on("line", (line) => monitor.line(label, line))
    readline.createInterface({ input: child.stderr }).on("line", (line) => monitor.stderr(label, line))
    child.once("exit", (code, signal) => {
      alive.delete(child)
      const at = Date.now()
      monitor.exited(label, at, code, signal)
      children.delete(label)
      if (slots[slot] === label) slots[slot] = undefined
      const p = monitor.procs.get(label)
      const expected = p.killedAt !== undefined || (p.termAt !== undefined && code === 0) || stopping
      if (!expected) unexpectedExits.push({ label, code, signal, at, stderr: p.stderr.slice(-5) })
    })
    return label
  }

  const running = () =>
    slots.filter((l) => l !== undefined).filter((l) => {
      const p = monitor.procs.get(l)
      return p.firstLineAt !== undefined && monitor.live(p, Date.now())
    })

  /** One short-lived connection of the runner's own, for pg_stat_activity and pg_terminate_backend. */
  const withClient = async (f) => {
    const client = new pg.Client({ connectionString: options.server.url, application_name: "modulo-group-chaos", connectionTimeoutMillis: 5_000 })
    client.on("error", () => undefined)
    await client.connect()
    try {
      return await f(client)
    } finally {
      await client.end().catch(() => undefined)
    }
  }

  const terminate = async (applicationName) => {
    const rows = await withClient(async (c) =>
      (await c.query(
        "SELECT pid, client_port FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database() AND pid <> pg_backend_pid()",
        [applicationName]
      )).rows
    )
    if (rows.length === 0) return undefined
    const victim = pick(rows)
    const ownerPid = await ownerOfPort(victim.client_port)
    const owner = [...children.entries()].find(([, c]) => c.pid === ownerPid)?.[0]
    const at = Date.now()
    const ok = await withClient(async (c) => (await c.query("SELECT pg_terminate_backend($1) AS ok", [victim.pid])).rows[0].ok)
    return ok ? { at, backend: victim.pid, owner } : undefined
  }

  const settle = async (kind, boundMs) => {
    const ok = await monitor.waitConverged(boundMs + 10_000)
    if (!ok) log(`  ! not converged ${boundMs + 10_000} ms after ${kind}: ${monitor.convergedNow().reason}`)
    return ok
  }

  const join = async (slot) => {
    const label = startMember(slot)
    const first = await monitor.waitLine(label, () => true, 60_000)
    if (first === undefined) {
      log(`  ! ${label} printed nothing within 60 s`)
      return
    }
    monitor.fault("join", first.at, generalBound, label)
    actions.push({ kind: "join", label })
    await settle("join", generalBound)
  }

  const faults = {
    kill: async () => {
      const label = pick(running())
      const at = Date.now()
      monitor.kill(label, at)
      children.get(label)?.kill("SIGKILL")
      monitor.fault("kill", at, generalBound, label)
      await settle("kill", generalBound)
      await join(monitor.procs.get(label).slot)
    },
    leave: async () => {
      const label = pick(running())
      const at = Date.now()
      monitor.term(label, at)
      const child = children.get(label)
      const exited = new Promise((resolve) => (child ? child.once("exit", resolve) : resolve(undefined)))
      child?.kill("SIGTERM")
      monitor.fault("leave", at, generalBound, label)
      await settle("leave", generalBound)
      await Promise.race([exited, sleep(15_000)])
      await join(monitor.procs.get(label).slot)
    },
    sigstop: async () => {
      const label = pick(running())
      const child = children.get(label)
      const at = Date.now()
      monitor.stop(label, at)
      child.kill("SIGSTOP")
      monitor.fault("sigstop", at, generalBound, label)
      await settle("sigstop", generalBound)
      // Past its lease, by up to a second more.
      const contAt = at + leaseMs + 200 + Math.floor(random() * 800)
      await sleep(Math.max(0, contAt - Date.now()))
      const resumedAt = Date.now()
      monitor.cont(label, resumedAt)
      child.kill("SIGCONT")
      monitor.fault("sigcont", resumedAt, generalBound, label)
      await settle("sigcont", generalBound)
    },
    "term-backend": async () => {
      const r = await terminate("modulo-group-cli")
      if (r === undefined) return log("  (no pool connection to terminate)")
      monitor.fault("term-backend", r.at, generalBound, r.owner, { backend: r.backend })
      await settle("term-backend", generalBound)
    },
    "term-listener": async () => {
      const r = await terminate("modulo-group/listen")
      if (r === undefined) return log("  (no listener connection to terminate)")
      monitor.fault("term-listener", r.at, generalBound, r.owner, { backend: r.backend })
      await settle("term-listener", generalBound)
    },
    restart: async () => {
      if (options.server.restart === undefined) return log("  (restart disabled)")
      const at = Date.now()
      const r = await options.server.restart()
      restarts.push(r)
      const boundMs = r.stopMs + r.startMs + leaseMs
      monitor.fault("restart", at, boundMs, undefined, r)
      await settle("restart", boundMs)
    }
  }

  const startedAt = Date.now()
  log(`chaos: group ${group}, ${n} members, seed ${options.seed}, ${Math.round(options.durationMs / 1000)} s, ` +
    `heartbeat ${heartbeatMs} ms, lease ${leaseMs} ms, kinds ${options.kinds.join(",")}`)
  for (let slot = 0; slot < n; slot++) startMember(slot)
  const formed = await monitor.waitConverged(120_000, n)
  const formedAt = Date.now()
  log(`formed: ${formed ? "converged" : "NOT converged"} after ${formedAt - startedAt} ms`)
  const endAt = formedAt + options.durationMs

  let round = []
  let count = 0
  try {
    while (formed && Date.now() < endAt) {
      // A quiet gap: two heartbeats (late effects of the last fault are still its own), plus jitter.
      await sleep(2 * heartbeatMs + Math.floor(random() * 400))
      if (round.length === 0) {
        round = [...options.kinds]
        for (let i = round.length - 1; i > 0; i--) {
          const j = Math.floor(random() * (i + 1))
          ;[round[i], round[j]] = [round[j], round[i]]
        }
      }
      const kind = round.shift()
      if (["kill", "leave", "sigstop"].includes(kind) && running().length < 2) continue
      count++
      const before = monitor.faults.length
      const t0 = Date.now()
      await faults[kind]()
      const added = monitor.faults.slice(before).map((f) => f.kind).join("+")
      log(`${String(count).padStart(4)} ${((Date.now() - formedAt) / 1000).toFixed(1).padStart(6)}s ${kind.padEnd(13)} ${added} (${Date.now() - t0} ms)`)
    }
    // Let the last fault settle before the end of the observation, with the same quiet gap as
    // between faults: its late effects are still its own.
    await monitor.waitConverged(generalBound + 5_000)
    await sleep(2 * heartbeatMs)
    await monitor.waitConverged(generalBound + 5_000)
  } finally {
    stopping = true
    const finishedAt = Date.now()
    const leaving = [...children.entries()].map(([label, child]) =>
      new Promise((resolve) => {
        // Strictly after the end of the observation: a line printed in the same millisecond as
        // `finishedAt` belongs to the run, the shutdown does not.
        monitor.term(label, Math.max(Date.now(), finishedAt + 1))
        const timer = setTimeout(() => {
          child.kill("SIGKILL")
          resolve(undefined)
        }, 10_000)
        child.once("exit", () => {
          clearTimeout(timer)
          resolve(undefined)
        })
        child.kill("SIGCONT")
        child.kill("SIGTERM")
      })
    )
    await Promise.all(leaving)
    options.finishedAt = finishedAt
  }

  const analysis = monitor.analyze(formedAt, options.finishedAt)
  if (options.eventsFile !== undefined) {
    const fs = await import("node:fs")
    fs.writeFileSync(options.eventsFile, `${monitor.dump()}\n`)
  }
  return report({ options, monitor, analysis, startedAt, formedAt, formed, restarts, unexpectedExits, group })
}

/** Warnings and errors the members printed, with numbers and ids folded, most frequent first. */
const errorSummary = (monitor) => {
  const counts = new Map()
  for (const p of monitor.procs.values()) {
    for (const line of p.stderr) {
      const key = line
        .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, "<id>")
        .replace(/\d+(\.\d+)?/g, "N")
        .slice(0, 160)
      counts.set(key, (counts.get(key) ?? 0) + 1)
    }
  }
  return [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([message, count]) => ({ count, message }))
}

const report = ({ options, monitor, analysis, startedAt, formedAt, formed, restarts, unexpectedExits, group }) => {
  const kinds = [...new Set(analysis.faults.list.map((f) => f.kind))]
  const byKind = Object.fromEntries(kinds.map((k) => {
    const fs = analysis.faults.list.filter((f) => f.kind === k)
    const s = stats(fs.map((f) => f.reconvergedMs))
    const detect = stats(fs.filter((f) => f.detectMs !== undefined).map((f) => f.detectMs))
    const barrier = stats(fs.filter((f) => f.barrierMs !== undefined).map((f) => f.barrierMs))
    return [k, {
      count: fs.length,
      medianMs: s.median,
      maxMs: s.max,
      detect: { medianMs: detect.median, maxMs: detect.max },
      barrier: { medianMs: barrier.median, maxMs: barrier.max },
      boundMs: Math.max(...fs.map((f) => f.boundMs)),
      overBound: fs.filter((f) => !f.withinBound).map((f) => ({ at: new Date(f.at).toISOString(), label: f.label, ms: f.reconvergedMs, boundMs: f.boundMs }))
    }]
  }))
  const observedMs = options.finishedAt - formedAt
  const workLines = [...monitor.procs.values()].reduce((sum, p) => sum + p.events.filter((e) => e.event === "work").length, 0)
  const maxEpoch = Math.max(0, ...analysis.tenures.map((t) => t.epoch))
  return {
    command: options.command,
    group,
    seed: options.seed,
    members: options.members,
    timing: {
      heartbeatMs: options.heartbeatMs,
      leaseMs: options.leaseMs,
      fenceMarginMs: options.fenceMarginMs,
      statementTimeoutMs: options.statementTimeoutMs,
      workIntervalMs: options.workIntervalMs
    },
    formed,
    formationMs: formedAt - startedAt,
    observedMs,
    processes: monitor.procs.size,
    faults: Object.fromEntries(kinds.map((k) => [k, byKind[k].count])),
    faultCount: analysis.faults.list.length,
    reconvergence: byKind,
    restarts,
    violations: {
      overlap: analysis.g2.violations.length,
      overlapDetails: analysis.g2.violations.slice(0, 20),
      staleWorkLines: analysis.g2.staleWork,
      inFlightAtStop: analysis.g2.inFlightStale,
      g1: analysis.g1.violations,
      order: analysis.order.slice(0, 20),
      slowReconvergence: Object.values(byKind).reduce((sum, k) => sum + k.overBound.length, 0),
      unfinished: analysis.faults.list.filter((f) => f.unfinished).map((f) => ({
        kind: f.kind,
        at: new Date(f.at).toISOString(),
        next: new Date(f.nextAt).toISOString(),
        label: f.label,
        ms: f.reconvergedMs
      })),
      unattributedStretches: analysis.faults.unattributed.map((s) => ({ from: new Date(s.from).toISOString(), ms: s.to - s.from }))
    },
    noCompleteAssignmentMs: analysis.timeline.notConvergedMs,
    noCompleteAssignmentShare: observedMs > 0 ? analysis.timeline.notConvergedMs / observedMs : 0,
    epochs: { max: maxEpoch, worked: analysis.g1.epochs },
    workLines,
    tenures: analysis.tenures.length,
    faultList: analysis.faults.list.map((f) => ({
      kind: f.kind,
      at: new Date(f.at).toISOString(),
      label: f.label,
      ms: f.reconvergedMs,
      detectMs: f.detectMs,
      barrierMs: f.barrierMs,
      boundMs: f.boundMs
    })),
    lastStretches: analysis.timeline.notConverged.slice(-3).map((s) => ({ from: new Date(s.from).toISOString(), to: new Date(s.to).toISOString() })),
    errors: {
      unexpectedExits,
      garbageLines: monitor.garbage.length,
      messages: errorSummary(monitor).slice(0, 25)
    }
  }
}

/** The report as text. */
export const formatReport = (r) => {
  const lines = []
  const pad = (s, n) => String(s).padEnd(n)
  lines.push(`chaos report: ${r.members} members, seed ${r.seed}, observed ${(r.observedMs / 1000).toFixed(1)} s after formation (${(r.formationMs / 1000).toFixed(1)} s)`)
  lines.push(`  timing: heartbeat ${r.timing.heartbeatMs} ms, lease ${r.timing.leaseMs} ms, fence margin ${r.timing.fenceMarginMs} ms, statement timeout ${r.timing.statementTimeoutMs} ms`)
  lines.push(`  ${r.faultCount} faults, ${r.processes} member processes, ${r.epochs.max} epochs (${r.epochs.worked} worked in), ${r.workLines} work lines`)
  lines.push("")
  lines.push(`  ${pad("fault", 14)}${pad("count", 7)}${pad("median ms", 11)}${pad("max ms", 9)}${pad("bound ms", 10)}${pad("over", 6)}detect med/max   barrier med/max`)
  for (const [kind, k] of Object.entries(r.reconvergence)) {
    const pair = (x) => (x.medianMs === null ? "-" : `${x.medianMs}/${x.maxMs}`)
    lines.push(`  ${pad(kind, 14)}${pad(k.count, 7)}${pad(k.medianMs, 11)}${pad(k.maxMs, 9)}${pad(k.boundMs, 10)}${pad(k.overBound.length, 6)}${pad(pair(k.detect), 17)}${pair(k.barrier)}`)
  }
  lines.push("  (reconvergence: from the fault until every live member works in one epoch with indices 0..N-1;")
  lines.push("   detect: until the first renegotiation; barrier: from then until converged)")
  if (r.restarts.length > 0) {
    const s = stats(r.restarts.map((x) => x.stopMs + x.startMs))
    lines.push(`  database restarts: stop + start median ${s.median} ms, max ${s.max} ms`)
  }
  lines.push("")
  lines.push(`  overlap violations (G2): ${r.violations.overlap}; stale work lines: ${r.violations.staleWorkLines}`)
  lines.push(`  units in flight at a SIGSTOP, printed after the SIGCONT (not counted above, see docs/reliability.md): ${r.violations.inFlightAtStop.length}`)
  lines.push(`  exact-cover violations (G1): ${r.violations.g1.length}; line-order problems: ${r.violations.order.length}`)
  lines.push(`  reconvergence over bound (G4): ${r.violations.slowReconvergence}; unfinished before the next fault: ${r.violations.unfinished.length}; unattributed stretches: ${r.violations.unattributedStretches.length}`)
  lines.push(`  time with no complete assignment: ${(r.noCompleteAssignmentMs / 1000).toFixed(1)} s (${(100 * r.noCompleteAssignmentShare).toFixed(1)}% of the run)`)
  lines.push(`  unexpected exits: ${r.errors.unexpectedExits.length}; non-JSON stdout lines: ${r.errors.garbageLines}`)
  if (r.errors.messages.length > 0) {
    lines.push("  errors and warnings seen (stderr of the members, folded):")
    for (const m of r.errors.messages.slice(0, 12)) lines.push(`    ${String(m.count).padStart(5)}  ${m.message}`)
  }
  for (const d of r.violations.overlapDetails) lines.push(`  ! G2: ${d.detail}`)
  for (const d of r.violations.inFlightAtStop) lines.push(`  . in flight: ${d}`)
  for (const d of r.violations.g1) lines.push(`  ! G1: ${d}`)
  for (const d of r.violations.order) lines.push(`  ! order: ${d}`)
  for (const [kind, k] of Object.entries(r.reconvergence)) for (const o of k.overBound) lines.push(`  ! slow ${kind} at ${o.at} (${o.label ?? "-"}): ${o.ms} ms > ${o.boundMs} ms`)
  for (const e of r.errors.unexpectedExits) lines.push(`  ! unexpected exit of ${e.label}: code ${e.code} signal ${e.signal}: ${e.stderr.join(" | ")}`)
  return lines.join("\n")
}

/** Whether a report passes: no violation of G1/G2, every fault reconverged within its bound. */
export const passed = (r) =>
  r.formed &&
  r.violations.overlap === 0 &&
  r.violations.staleWorkLines === 0 &&
  r.violations.g1.length === 0 &&
  r.violations.order.length === 0 &&
  r.violations.slowReconvergence === 0 &&
  r.violations.unfinished.length === 0 &&
  r.errors.unexpectedExits.length === 0 &&
  r.errors.garbageLines === 0

