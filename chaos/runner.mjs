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
 * - `term-listener`: the same for a LISTEN connection (application_name `modulo-group/listen`: members
 *   in odd slots LISTEN on a connection of their own, even slots on their one pool connection);
 * - `restart`: the database is stopped (fast shutdown) and started again on the same port.
 * - with `instanceIds` (static membership: every member runs with `--instance-id m<slot>` and
 *   `--rejoin-grace`), also `static-restart` (SIGTERM, and at once a new process with the same
 *   instance id) and `static-kill` (SIGKILL, the same): the new one must take the old one's index
 *   back in the same epoch; the fault's bound is its measured start-up + lease + 2 heartbeats.
 *   Every other bound grows by the grace (a gone member's row is held for it).
 * Kinds come in rounds, each kind once per round in a seeded order, so even a short run has them all.
 *
 * `schedule: "churn"`: bursts of 2-5 s in which, every 200-600 ms, the member holding index 0 (the
 * leader) leaves (SIGTERM) and a new process joins in its slot, mixed with the other kinds (a kill
 * and its replacement, a SIGSTOP whose SIGCONT comes past the lease, a terminated connection, a
 * restart), none waiting for the group to reconverge. The single actions are counted, not judged;
 * each burst is one judged fault whose bound is the latest of its actions' own bounds (each
 * action's time + its bound), measured from the start of the burst. Between bursts the group must
 * reconverge, as between faults of the default schedule.
 *
 * `slots: S` (slots mode): every member runs with `--slots S`; every kind above but the static ones
 * applies (static membership is refused in slots mode). The monitor then judges per slot
 * (chaos/slots.mjs): no slot in two members' sets at once, every slot owned again by a live member
 * within the fault's bound, set sizes within one at each quiet point, no work line naming a slot
 * another member holds; convergence is every slot in exactly one live member's set, sizes within one.
 * In the churn schedule the member holding slot 0 plays the part of the one holding index 0.
 *
 * `notifications: "off"`: every member runs with LISTEN/NOTIFY disabled (G7: every guarantee holds,
 * only slower), and the runner checks on the database that no member holds a LISTEN connection.
 * Members get `join --no-notifications` (a member without notifications never LISTENs, not even on
 * its pool connection, so a LISTEN would show as a connection named modulo-group/listen).
 */
import { spawn, execFile } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import pg from "pg"
import { Monitor, stats, timelineOf } from "./monitor.mjs"

const root = fileURLToPath(new URL("..", import.meta.url))

/** The application_name of a member's LISTEN connection (src/internal/pg/notifier.ts). */
const LISTEN_APP = "modulo-group/listen"

/** How to start a member with LISTEN/NOTIFY disabled: `join --no-notifications`. */
export const notificationsOffArgs = () =>
  ({ nodeArgs: [], joinArgs: ["--no-notifications"], how: "join --no-notifications" })

/**
 * A copy of the built packages (the library: dist/src/, migrations/, package.json; the CLI:
 * cli/bin/, cli/dist/, cli/package.json) that every member of the run starts from: a
 * `npm run build` elsewhere during the run (other work in the same tree) then cannot mix two
 * versions of the library in one run. Its node_modules links every installed package but the two
 * workspace links, which point into the copy, so that the CLI's `import "modulo-group"` loads the
 * copied library.
 */
const snapshot = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mg-chaos-build-"))
  const copies = ["migrations", path.join("dist", "src"), path.join("cli", "bin"), path.join("cli", "dist")]
  for (const rel of copies) fs.cpSync(path.join(root, rel), path.join(dir, rel), { recursive: true })
  for (const rel of ["package.json", path.join("cli", "package.json")]) fs.copyFileSync(path.join(root, rel), path.join(dir, rel))
  const modules = path.join(dir, "node_modules")
  fs.mkdirSync(modules)
  const ownPackages = { "modulo-group": dir, "modulo-group-cli": path.join(dir, "cli") }
  for (const name of fs.readdirSync(path.join(root, "node_modules"))) {
    fs.symlinkSync(ownPackages[name] ?? path.join(root, "node_modules", name), path.join(modules, name))
  }
  const remove = () => fs.rmSync(dir, { recursive: true, force: true })
  process.once("exit", remove)
  return { bin: path.join(dir, "cli", "bin", "modulo-group.js"), remove }
}

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
/** Faults of static membership (`instanceIds`). */
export const STATIC_KINDS = ["static-restart", "static-kill"]
/** Hand edits, only when asked for by name (`--kinds ...,delete-row`; the rounds schedule). */
export const HAND_KINDS = ["delete-row"]

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
 *   members: number, durationMs: number, seed: number, everyKind?: boolean,
 *   heartbeatMs: number, leaseMs: number, fenceMarginMs: number, statementTimeoutMs: number, workIntervalMs: number,
 *   kinds: Array<string>, server: { url: string, restart?: () => Promise<{ stopMs: number, startMs: number }> },
 *   log: (line: string) => void, group?: string
 * }} options
 */
export const runChaos = async (options) => {
  const { members: n, heartbeatMs, leaseMs } = options
  const random = prng(options.seed)
  const pick = (xs) => xs[Math.floor(random() * xs.length)]
  const slotsMode = options.slots !== undefined
  if (slotsMode && options.instanceIds === true) throw new Error("slots mode refuses static membership (instanceIds)")
  const monitor = new Monitor({ heartbeatMs, leaseMs, slots: options.slots })
  const group = options.group ?? `chaos-${options.seed}-${Date.now().toString(36)}`
  const notifications = options.notifications ?? "on"
  const schedule = options.schedule ?? "rounds"
  const build = snapshot()
  const bin = build.bin
  const off = notifications === "off" ? notificationsOffArgs() : { nodeArgs: [], joinArgs: [], how: undefined }
  const env = { ...process.env, DATABASE_URL: options.server.url }
  if (notifications === "off") env.MODULO_GROUP_NOTIFICATIONS = "false"
  // Without notifications there is no LISTEN connection to terminate.
  const kinds = notifications === "off" ? options.kinds.filter((k) => k !== "term-listener") : [...options.kinds]
  if (kinds.length === 0 && schedule === "rounds") throw new Error("no fault kind left to inject (term-listener needs notifications on)")
  const log = options.log
  const instanceIds = options.instanceIds === true
  const graceMs = instanceIds ? (options.rejoinGraceMs ?? 2_000) : 0
  // A static member that is gone is renegotiated away only after its grace.
  const generalBound = leaseMs + 2 * heartbeatMs + graceMs
  if (!instanceIds && options.kinds.some((k) => STATIC_KINDS.includes(k))) throw new Error("static-* faults need instanceIds")
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
    "--work-interval", `${options.workIntervalMs}ms`,
    ...(slotsMode ? ["--slots", String(options.slots)] : [])
  ]

  const startMember = (slot) => {
    generation[slot]++
    const name = `m${slot}`
    const label = `${name}#${generation[slot]}`
    const statics = instanceIds ? ["--instance-id", name, "--rejoin-grace", `${graceMs}ms`] : []
    // Both ways a member may LISTEN: odd slots on a LISTEN connection of their own (`--listen-url`,
    // application_name modulo-group/listen: the target of term-listener), even slots on their one pool
    // connection (the default; term-backend terminates it, statements and LISTEN alike).
    const listen = notifications === "on" && slot % 2 === 1 ? ["--listen-url", options.server.url] : []
    const child = spawn(process.execPath, [...off.nodeArgs, bin, "join", group, "--json", "--name", name, ...timing, ...statics, ...listen, ...off.joinArgs], {
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

  /** LISTEN connections of members seen on the database: with notifications off there must be none. */
  const listeners = { checks: 0, failedChecks: 0, max: 0, seen: [] }
  const checkListeners = async () => {
    try {
      const rows = await withClient(async (c) =>
        (await c.query(
          "SELECT pid, client_port FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
          [LISTEN_APP]
        )).rows
      )
      listeners.checks++
      listeners.max = Math.max(listeners.max, rows.length)
      if (notifications === "off" && rows.length > 0 && listeners.seen.length < 10) {
        const owners = await Promise.all(rows.map(async (r) => {
          const pid = await ownerOfPort(r.client_port)
          return [...children.entries()].find(([, c]) => c.pid === pid)?.[0] ?? `pid ${pid}`
        }))
        listeners.seen.push({ at: new Date().toISOString(), count: rows.length, owners })
        log(`  ! ${rows.length} LISTEN connection(s) with notifications off: ${owners.join(", ")}`)
      }
    } catch {
      listeners.failedChecks++ // the database is restarting: next time
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

  // Settled: converged, and still converged a heartbeat later. A change can follow the one that
  // converged at once (a static member's row reaped when its rejoin grace ends, just after the group
  // re-formed around it); a fault injected at that instant found that change's stretch unfinished
  // (seen once in CI: the SIGCONT of a `sigstop` 2 ms after the group had converged).
  const settle = async (kind, boundMs) => {
    let ok = await monitor.waitConverged(boundMs + 10_000)
    if (ok) {
      await sleep(heartbeatMs)
      ok = await monitor.waitConverged(boundMs + 10_000)
    }
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

  /**
   * Static membership: `signal` to a member, then at once a new process with its instance id; it must
   * take the index back. Judged from the signal: its start-up (measured) + lease + 2 heartbeats.
   */
  const restartSame = async (kind, signal) => {
    const label = pick(running())
    const slot = monitor.procs.get(label).slot
    const child = children.get(label)
    const at = Date.now()
    if (signal === "SIGKILL") monitor.kill(label, at)
    else monitor.term(label, at)
    const exited = new Promise((resolve) => (child ? child.once("exit", resolve) : resolve(undefined)))
    child?.kill(signal)
    await Promise.race([exited, sleep(15_000)])
    const fresh = startMember(slot)
    const first = await monitor.waitLine(fresh, () => true, 60_000)
    if (first === undefined) return log(`  ! ${fresh} printed nothing within 60 s`)
    const boundMs = first.at - at + leaseMs + 2 * heartbeatMs
    monitor.fault(kind, at, boundMs, label, { restartedAs: fresh, startupMs: first.at - at })
    actions.push({ kind, label, restartedAs: fresh })
    await settle(kind, boundMs)
  }

  const faults = {
    "static-restart": () => restartSame("static-restart", "SIGTERM"),
    "static-kill": () => restartSame("static-kill", "SIGKILL"),
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
    // An operator's DELETE of a working member's row, and at once a change: another member leaves
    // (SIGTERM) and joins again. The member whose row went works on until its next renewal finds the
    // row gone; no change may give its index to another meanwhile (docs/protocol.md, "Indices with no
    // row"). Judged from the DELETE: the wait (a lease from the first change that found the row
    // missing), the member's own rejoin a lease after it noticed, and heartbeats.
    "delete-row": async () => {
      const label = pick(running())
      const member = monitor.procs.get(label).last?.member
      if (member === undefined) return log("  (no member id known)")
      const other = pick(running().filter((l) => l !== label))
      const at = Date.now()
      const deleted = await withClient(async (c) =>
        (await c.query("DELETE FROM modulo_group.members WHERE member_id = $1::uuid", [member])).rowCount)
      const boundMs = 2 * leaseMs + 4 * heartbeatMs + graceMs
      monitor.fault("delete-row", at, boundMs, label, { member, deleted, change: other })
      actions.push({ kind: "delete-row", label, change: other })
      if (other !== undefined) {
        monitor.term(other, Date.now())
        const child = children.get(other)
        const exited = new Promise((resolve) => (child ? child.once("exit", resolve) : resolve(undefined)))
        child?.kill("SIGTERM")
        await Promise.race([exited, sleep(15_000)])
        startMember(monitor.procs.get(other).slot)
      }
      await settle("delete-row", boundMs)
    },
    "term-backend": async () => {
      const r = await terminate("modulo-group-cli")
      if (r === undefined) return log("  (no pool connection to terminate)")
      monitor.fault("term-backend", r.at, generalBound, r.owner, { backend: r.backend })
      await settle("term-backend", generalBound)
    },
    "term-listener": async () => {
      const r = await terminate(LISTEN_APP)
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

  /**
   * One burst of the churn schedule: index 0 leaves and a new member joins every 200-600 ms, mixed
   * with the other kinds, none waiting for the group; then the group must reconverge within the
   * burst's bound (the latest action's time + its own bound).
   */
  let churnRound = []
  const otherKinds = kinds.filter((k) => k !== "leave")
  const burst = async (endAt) => {
    const burstAt = Date.now()
    const record = monitor.fault("churn", burstAt, 0, undefined, { actions: 0 })
    let deadline = burstAt
    const act = (kind, at, boundMs, label, detail) => {
      monitor.fault(kind, at, boundMs, label, detail, false)
      record.detail.actions++
      deadline = Math.max(deadline, at + boundMs)
    }
    const pending = []
    const starting = [] // replacements until their first line (or exit)
    const replace = (slot) => {
      const label = startMember(slot)
      const child = children.get(label)
      const exited = new Promise((resolve) => child.once("exit", () => resolve(undefined)))
      const first = Promise.race([monitor.waitLine(label, () => true, 60_000), exited]).then((line) => {
        if (line === undefined) return log(`  ! ${label} printed nothing (${child.exitCode === null ? "within 60 s" : `exited with code ${child.exitCode}`})`)
        act("join", line.at, generalBound, label)
      })
      pending.push(first)
      starting.push(first)
    }
    /**
     * The running member holding index 0: its latest line has index 0 (`assigned`, or `awaiting` the
     * epoch in which it will hold it), in the highest epoch among them. None while the group has
     * not yet told anyone (just after index 0 left): then wait for one, up to two heartbeats.
     */
    const index0 = () =>
      slotsMode
        ? running().map((l) => monitor.procs.get(l)).find((p) => p.lastSlots?.[0] === 0)?.label
        : running().map((l) => monitor.procs.get(l))
          .filter((p) => p.last !== undefined && p.last.index === 0 && ["assigned", "awaiting"].includes(p.last.state))
          .sort((a, b) => b.last.epoch - a.last.epoch)[0]?.label
    const awaitIndex0 = (ms) =>
      new Promise((resolve) => {
        const found = index0()
        if (found !== undefined) return resolve(found)
        const off = monitor.onChange(() => {
          const l = index0()
          if (l === undefined) return
          clearTimeout(timer)
          off()
          resolve(l)
        })
        const timer = setTimeout(() => {
          off()
          resolve(undefined)
        }, ms)
      })
    const steps = {
      churn: async () => {
        if (running().length < 2) return
        const holder = await awaitIndex0(2 * heartbeatMs)
        // Nobody told index 0 within two heartbeats (a long barrier): a random member leaves instead.
        const label = holder ?? pick(running())
        if (label === undefined || !running().includes(label)) return
        const p = monitor.procs.get(label)
        const at = Date.now()
        monitor.term(label, at)
        children.get(label)?.kill("SIGTERM")
        act("leave", at, generalBound, label, { index0: holder !== undefined, state: p.last?.state, epoch: p.last?.epoch ?? null, index: p.last?.index ?? null })
        replace(p.slot)
      },
      leave: async () => undefined,
      kill: async () => {
        if (running().length < 3) return
        const label = pick(running())
        const at = Date.now()
        monitor.kill(label, at)
        children.get(label)?.kill("SIGKILL")
        act("kill", at, generalBound, label)
        replace(monitor.procs.get(label).slot)
      },
      sigstop: async () => {
        if (running().length < 3) return
        const label = pick(running())
        const child = children.get(label)
        const at = Date.now()
        monitor.stop(label, at)
        child.kill("SIGSTOP")
        act("sigstop", at, generalBound, label)
        const contAt = at + leaseMs + 200 + Math.floor(random() * 800)
        pending.push(sleep(Math.max(0, contAt - Date.now())).then(() => {
          const resumedAt = Date.now()
          monitor.cont(label, resumedAt)
          child.kill("SIGCONT")
          act("sigcont", resumedAt, generalBound, label)
        }))
      },
      "term-backend": async () => {
        const r = await terminate("modulo-group-cli").catch(() => undefined)
        if (r !== undefined) act("term-backend", r.at, generalBound, r.owner, { backend: r.backend })
      },
      "term-listener": async () => {
        const r = await terminate(LISTEN_APP).catch(() => undefined)
        if (r !== undefined) act("term-listener", r.at, generalBound, r.owner, { backend: r.backend })
      },
      restart: async () => {
        if (options.server.restart === undefined) return
        // Not while a replacement is still starting: `join` does not wait for a database that
        // refuses connections when it starts (it exits 1), which is not what this run is about.
        await Promise.all(starting)
        const at = Date.now()
        const r = await options.server.restart()
        restarts.push(r)
        act("restart", at, r.stopMs + r.startMs + leaseMs, undefined, r)
      }
    }
    const burstMs = 2_000 + Math.floor(random() * 3_000)
    while (Date.now() < burstAt + burstMs && Date.now() < endAt) {
      let kind = "churn"
      if (otherKinds.length > 0 && random() < 0.35) {
        if (churnRound.length === 0) {
          churnRound = [...otherKinds]
          for (let i = churnRound.length - 1; i > 0; i--) {
            const j = Math.floor(random() * (i + 1))
            ;[churnRound[i], churnRound[j]] = [churnRound[j], churnRound[i]]
          }
        }
        kind = churnRound.shift()
      }
      await steps[kind]()
      await sleep(200 + Math.floor(random() * 400))
    }
    // Every replacement has printed, every stopped member is continued: from here the group must
    // reconverge within the burst's bound.
    await Promise.all(pending)
    record.boundMs = deadline - burstAt
    await settle("churn burst", Math.max(0, deadline - Date.now()))
    const done = monitor.faults.filter((f) => f.judged === false && f.at >= burstAt)
    const leaders = done.filter((f) => f.kind === "leave" && f.detail?.index0).length
    return `${Object.entries(done.reduce((m, f) => ({ ...m, [f.kind]: (m[f.kind] ?? 0) + 1 }), {})).map(([k, c]) => `${k}x${c}`).join(" ")}` +
      ` (index 0 left ${leaders}x)`
  }

  const startedAt = Date.now()
  log(`chaos: group ${group}, ${n} members, seed ${options.seed}, ${Math.round(options.durationMs / 1000)} s, ` +
    `heartbeat ${heartbeatMs} ms, lease ${leaseMs} ms, kinds ${kinds.join(",")}, schedule ${schedule}, notifications ${notifications}` +
    (slotsMode ? `, slots mode (S = ${options.slots})` : "") +
    (off.how === undefined ? "" : ` (${off.how})`))
  for (let slot = 0; slot < n; slot++) startMember(slot)
  const formed = await monitor.waitConverged(120_000, n)
  const formedAt = Date.now()
  log(`formed: ${formed ? "converged" : "NOT converged"} after ${formedAt - startedAt} ms`)
  await checkListeners()
  const endAt = formedAt + options.durationMs

  let round = []
  let count = 0
  // everyKind: the rounds go on past the duration until every kind was injected once (a loaded
  // machine fits fewer faults in the duration), but never past three durations.
  const injected = new Set()
  const more = () =>
    Date.now() < endAt ||
    (options.everyKind === true && schedule === "rounds" && Date.now() < formedAt + 3 * options.durationMs &&
      kinds.some((k) => !injected.has(k)))
  try {
    while (formed && more()) {
      // A quiet gap: two heartbeats (late effects of the last fault are still its own), plus jitter.
      await sleep(2 * heartbeatMs + Math.floor(random() * 400))
      if (schedule === "churn") {
        if (Date.now() >= endAt) break
        count++
        const t0 = Date.now()
        const summary = await burst(endAt)
        log(`${String(count).padStart(4)} ${((Date.now() - formedAt) / 1000).toFixed(1).padStart(6)}s churn burst   ${summary} (${Date.now() - t0} ms)`)
        await checkListeners()
        continue
      }
      if (round.length === 0) {
        round = [...kinds]
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
      injected.add(kind)
      const added = monitor.faults.slice(before).map((f) => f.kind).join("+")
      log(`${String(count).padStart(4)} ${((Date.now() - formedAt) / 1000).toFixed(1).padStart(6)}s ${kind.padEnd(13)} ${added} (${Date.now() - t0} ms)`)
      if (notifications === "off") await checkListeners()
    }
    // Let the last fault settle before the end of the observation, with the same quiet gap as
    // between faults: its late effects are still its own.
    await monitor.waitConverged(generalBound + 5_000)
    await sleep(2 * heartbeatMs)
    await monitor.waitConverged(generalBound + 5_000)
    await checkListeners()
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
    build.remove()
    options.finishedAt = finishedAt
  }

  const analysis = monitor.analyze(formedAt, options.finishedAt)
  if (options.eventsFile !== undefined) {
    const fs = await import("node:fs")
    fs.writeFileSync(options.eventsFile, `${monitor.dump()}\n`)
  }
  const mode = { schedule, notifications, notificationsHow: off.how, listeners }
  const result = report({ options, monitor, analysis, startedAt, formedAt, formed, restarts, unexpectedExits, group, mode })
  if (options.svgFile !== undefined) {
    result.timelineSvg = await writeTimelineSvg(options.svgFile, analysis, monitor.faults, startedAt, options.finishedAt, `chaos run, seed ${options.seed}: who held which index when`)
  }
  return result
}

/**
 * Writes the run's tenure timeline (monitor.mjs `timelineOf`) as an SVG, drawn by the CLI's
 * renderer (cli/dist/ui/timeline.js: `npm run chaos` builds it first). Returns the file, or
 * undefined (with a line on stderr) when the renderer is not built.
 */
export const writeTimelineSvg = async (file, analysis, faults, from, to, title) => {
  let renderSvg
  try {
    ;({ renderSvg } = await import(new URL("../cli/dist/ui/timeline.js", import.meta.url).href))
  } catch (error) {
    process.stderr.write(`chaos: no timeline SVG (${error?.message ?? error}): run npm run build\n`)
    return undefined
  }
  const fs = await import("node:fs")
  fs.writeFileSync(file, `${renderSvg(timelineOf(analysis, faults, from, to, title))}\n`)
  return file
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

const report = ({ options, monitor, analysis, startedAt, formedAt, formed, restarts, unexpectedExits, group, mode }) => {
  const kinds = [...new Set(analysis.faults.list.map((f) => f.kind))]
  // Every fault injected: the judged ones (but a churn burst, which only groups its actions) and
  // the actions of the bursts.
  const injected = [...analysis.faults.list.filter((f) => f.kind !== "churn"), ...analysis.faults.actions]
  const injectedKinds = [...new Set(injected.map((f) => f.kind))]
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
    ...(analysis.slots === undefined ? {} : { slots: slotsReport(analysis.slots) }),
    command: options.command,
    group,
    seed: options.seed,
    members: options.members,
    schedule: mode.schedule,
    notifications: mode.notifications,
    notificationsHow: mode.notificationsHow,
    listenConnections: { checks: mode.listeners.checks, failedChecks: mode.listeners.failedChecks, max: mode.listeners.max },
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
    faults: Object.fromEntries(injectedKinds.map((k) => [k, injected.filter((f) => f.kind === k).length])),
    faultCount: injected.length,
    bursts: analysis.faults.list.filter((f) => f.kind === "churn").length,
    // Churn: leaves of the member holding index 0 (the rest: nobody held it within two heartbeats).
    churnLeaves: {
      total: analysis.faults.actions.filter((f) => f.kind === "leave").length,
      index0: analysis.faults.actions.filter((f) => f.kind === "leave" && f.detail?.index0).length
    },
    reconvergence: byKind,
    restarts,
    violations: {
      overlap: analysis.g2.violations.length,
      overlapDetails: analysis.g2.violations.slice(0, 20),
      staleWorkLines: analysis.g2.staleWork,
      inFlightAtStop: analysis.g2.inFlightStale,
      g1: analysis.g1.violations,
      duplicateStarts: analysis.g1.duplicates.slice(0, 20),
      // G5: members told to leave that never printed `left` (their row waited for its lease).
      gracefulLeave: analysis.g5.violations,
      gracefulLeaves: { count: analysis.g5.leaves, excused: analysis.g5.excused },
      // With notifications off: every LISTEN connection a member held (there must be none).
      listenWithNotificationsOff: mode.notifications === "off" ? mode.listeners.seen : [],
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

/** Slots mode: the per-slot figures and findings of the report (monitor's `analysis.slots`). */
const slotsReport = (a) => {
  const kinds = [...new Set(a.unowned.map((f) => f.kind))]
  const perSlot = stats(a.handoffs.perSlot)
  return {
    S: a.S,
    tenures: a.tenures.length,
    handoffs: {
      total: a.handoffs.total,
      perSlot: { median: perSlot.median, max: perSlot.max, min: a.handoffs.perSlot.length === 0 ? null : Math.min(...a.handoffs.perSlot) },
      // Per fault kind: handoffs that started between the fault and the next judged fault.
      byFault: Object.fromEntries(kinds.map((k) => {
        const s = stats(a.handoffsPerFault.filter((f) => f.kind === k).map((f) => f.count))
        return [k, { count: s.n, median: s.median, max: s.max }]
      }))
    },
    // (b) From each fault until every slot was again in a live member's set.
    unowned: Object.fromEntries(kinds.map((k) => {
      const fs = a.unowned.filter((f) => f.kind === k)
      const s = stats(fs.map((f) => f.unownedMs))
      return [k, {
        count: fs.length,
        medianMs: s.median,
        maxMs: s.max,
        boundMs: Math.max(...fs.map((f) => f.boundMs)),
        overBound: fs.filter((f) => !f.withinBound).map((f) => ({ at: new Date(f.at).toISOString(), label: f.label, ms: f.unownedMs, boundMs: f.boundMs, unfinished: f.unfinished }))
      }]
    })),
    unownedMs: a.timeline.notCoveredMs,
    violations: {
      overlap: a.overlaps.violations.length,
      overlapDetails: a.overlaps.violations.slice(0, 20),
      staleWorkLines: a.overlaps.staleWork,
      inFlightAtStop: a.overlaps.inFlightStale.length,
      inFlightDetails: a.overlaps.inFlightStale.slice(0, 20),
      unownedBeyondBound: a.unowned.filter((f) => !f.withinBound).length,
      unfair: a.timeline.unfair.slice(0, 20),
      unfairCount: a.timeline.unfair.length
    }
  }
}

/** The report as text. */
export const formatReport = (r) => {
  const lines = []
  const pad = (s, n) => String(s).padEnd(n)
  lines.push(`chaos report: ${r.members} members, seed ${r.seed}, observed ${(r.observedMs / 1000).toFixed(1)} s after formation (${(r.formationMs / 1000).toFixed(1)} s)`)
  lines.push(`  timing: heartbeat ${r.timing.heartbeatMs} ms, lease ${r.timing.leaseMs} ms, fence margin ${r.timing.fenceMarginMs} ms, statement timeout ${r.timing.statementTimeoutMs} ms`)
  lines.push(`  schedule ${r.schedule}${r.bursts > 0 ? ` (${r.bursts} bursts, ${r.churnLeaves.total} leaves of which ${r.churnLeaves.index0} by index 0)` : ""}, notifications ${r.notifications}` +
    `${r.notificationsHow ? ` via ${r.notificationsHow}` : ""}; LISTEN connections seen: at most ${r.listenConnections.max} (${r.listenConnections.checks} checks)`)
  lines.push(`  ${r.faultCount} faults (${Object.entries(r.faults).map(([k, c]) => `${k} ${c}`).join(", ")}), ${r.processes} member processes, ${r.epochs.max} epochs (${r.epochs.worked} worked in), ${r.workLines} work lines`)
  lines.push("")
  lines.push(`  ${pad("fault", 14)}${pad("count", 7)}${pad("median ms", 11)}${pad("max ms", 9)}${pad("bound ms", 10)}${pad("over", 6)}detect med/max   barrier med/max`)
  for (const [kind, k] of Object.entries(r.reconvergence)) {
    const pair = (x) => (x.medianMs === null ? "-" : `${x.medianMs}/${x.maxMs}`)
    lines.push(`  ${pad(kind, 14)}${pad(k.count, 7)}${pad(k.medianMs, 11)}${pad(k.maxMs, 9)}${pad(k.boundMs, 10)}${pad(k.overBound.length, 6)}${pad(pair(k.detect), 17)}${pair(k.barrier)}`)
  }
  lines.push(r.slots === undefined
    ? "  (reconvergence: from the fault until every live member works in one epoch with indices 0..N-1;"
    : "  (reconvergence: from the fault until every live member is assigned, every slot in exactly one live set, sizes within one;")
  lines.push("   detect: until the first renegotiation; barrier: from then until converged)")
  if (r.restarts.length > 0) {
    const s = stats(r.restarts.map((x) => x.stopMs + x.startMs))
    lines.push(`  database restarts: stop + start median ${s.median} ms, max ${s.max} ms`)
  }
  lines.push("")
  lines.push(`  overlap violations (G2): ${r.violations.overlap}; stale work lines: ${r.violations.staleWorkLines}`)
  lines.push(`  units in flight at a SIGSTOP, printed after the SIGCONT (not counted above, see docs/reliability.md): ${r.violations.inFlightAtStop.length}`)
  lines.push(`  exact-cover violations (G1): ${r.violations.g1.length}, of which duplicate (epoch, index) starts: ${r.violations.duplicateStarts.length}; line-order problems: ${r.violations.order.length}`)
  if (r.notifications === "off") lines.push(`  LISTEN connections with notifications off: ${r.violations.listenWithNotificationsOff.length === 0 ? "none" : r.violations.listenWithNotificationsOff.map((x) => `${x.count} at ${x.at}`).join(", ")}`)
  lines.push(`  graceful leaves without a "left" line (G5): ${r.violations.gracefulLeave.length} of ${r.violations.gracefulLeaves.count}` +
    `${r.violations.gracefulLeaves.excused > 0 ? ` (${r.violations.gracefulLeaves.excused} more during a database restart, not counted)` : ""}`)
  lines.push(`  reconvergence over bound (G4): ${r.violations.slowReconvergence}; unfinished before the next fault: ${r.violations.unfinished.length}; unattributed stretches: ${r.violations.unattributedStretches.length}`)
  if (r.slots !== undefined) {
    const sv = r.slots.violations
    lines.push(`  slots mode, S = ${r.slots.S}: ${r.slots.tenures} slot tenures, ${r.slots.handoffs.total} handoffs ` +
      `(per slot: min ${r.slots.handoffs.perSlot.min}, median ${r.slots.handoffs.perSlot.median}, max ${r.slots.handoffs.perSlot.max})`)
    lines.push(`  per-slot overlaps: ${sv.overlap}; stale work lines naming a slot another member held: ${sv.staleWorkLines}; ` +
      `lines in flight at a SIGSTOP after the slot was taken (not counted): ${sv.inFlightAtStop}`)
    lines.push(`  slots unowned beyond the bound: ${sv.unownedBeyondBound}; unfair set sizes at a quiet point: ${sv.unfairCount}; ` +
      `time with a slot in no live member's set: ${(r.slots.unownedMs / 1000).toFixed(1)} s`)
    lines.push(`  ${pad("fault", 14)}${pad("count", 7)}${pad("unowned med", 13)}${pad("max ms", 9)}${pad("bound ms", 10)}${pad("over", 6)}handoffs med/max`)
    for (const [kind, k] of Object.entries(r.slots.unowned)) {
      const h = r.slots.handoffs.byFault[kind]
      lines.push(`  ${pad(kind, 14)}${pad(k.count, 7)}${pad(k.medianMs, 13)}${pad(k.maxMs, 9)}${pad(k.boundMs, 10)}${pad(k.overBound.length, 6)}${h === undefined ? "-" : `${h.median}/${h.max}`}`)
    }
    lines.push("  (unowned: from the fault until every slot is in a live member's set; handoffs: slot tenures begun until the next fault)")
  }
  lines.push(`  time with no complete assignment: ${(r.noCompleteAssignmentMs / 1000).toFixed(1)} s (${(100 * r.noCompleteAssignmentShare).toFixed(1)}% of the run)`)
  lines.push(`  unexpected exits: ${r.errors.unexpectedExits.length}; non-JSON stdout lines: ${r.errors.garbageLines}`)
  if (r.timelineSvg !== undefined) lines.push(`  tenure timeline (who held which index when, faults marked): ${r.timelineSvg}`)
  if (r.errors.messages.length > 0) {
    lines.push("  errors and warnings seen (stderr of the members, folded):")
    for (const m of r.errors.messages.slice(0, 12)) lines.push(`    ${String(m.count).padStart(5)}  ${m.message}`)
  }
  for (const d of r.violations.overlapDetails) lines.push(`  ! G2: ${d.detail}`)
  if (r.slots !== undefined) {
    for (const d of r.slots.violations.overlapDetails) lines.push(`  ! slot overlap: ${d.detail}`)
    for (const d of r.slots.violations.inFlightDetails) lines.push(`  . in flight: ${d}`)
    for (const d of r.slots.violations.unfair) lines.push(`  ! fairness: ${d.detail}`)
    for (const [kind, k] of Object.entries(r.slots.unowned)) for (const o of k.overBound) lines.push(`  ! unowned after ${kind} at ${o.at} (${o.label ?? "-"}): ${o.ms} ms` +
      (o.ms > o.boundMs ? ` > ${o.boundMs} ms` : ` (bound ${o.boundMs} ms), a slot still unowned at the next fault`))
  }
  for (const d of r.violations.inFlightAtStop) lines.push(`  . in flight: ${d}`)
  for (const d of r.violations.g1) lines.push(`  ! G1: ${d}`)
  for (const d of r.violations.listenWithNotificationsOff) lines.push(`  ! LISTEN with notifications off: ${d.count} at ${d.at} (${d.owners.join(", ")})`)
  for (const d of r.violations.order) lines.push(`  ! order: ${d}`)
  for (const d of r.violations.gracefulLeave.slice(0, 20)) lines.push(`  ! G5: ${d}`)
  for (const [kind, k] of Object.entries(r.reconvergence)) for (const o of k.overBound) lines.push(`  ! slow ${kind} at ${o.at} (${o.label ?? "-"}): ${o.ms} ms > ${o.boundMs} ms`)
  for (const e of r.errors.unexpectedExits) lines.push(`  ! unexpected exit of ${e.label}: code ${e.code} signal ${e.signal}: ${e.stderr.join(" | ")}`)
  return lines.join("\n")
}

/**
 * Whether a report passes: no violation of G1/G2, every fault reconverged within its bound, and
 * with notifications off, no LISTEN connection seen (and at least one look); in slots mode no
 * per-slot overlap, no stale work line, no slot unowned beyond its bound, no unfair sizes.
 */
export const passed = (r) =>
  r.formed &&
  r.violations.overlap === 0 &&
  r.violations.staleWorkLines === 0 &&
  r.violations.g1.length === 0 &&
  r.violations.listenWithNotificationsOff.length === 0 &&
  (r.notifications !== "off" || r.listenConnections.checks > 0) &&
  r.violations.order.length === 0 &&
  r.violations.gracefulLeave.length === 0 &&
  r.violations.slowReconvergence === 0 &&
  r.violations.unfinished.length === 0 &&
  r.errors.unexpectedExits.length === 0 &&
  r.errors.garbageLines === 0 &&
  (r.slots === undefined ||
    (r.slots.violations.overlap === 0 &&
      r.slots.violations.staleWorkLines === 0 &&
      r.slots.violations.unownedBeyondBound === 0 &&
      r.slots.violations.unfairCount === 0))

