/**
 * The independent monitor of a chaos run. It never asks a member what it thinks: it reads the JSON
 * Lines every `modulo-group join --json` process prints (each with its own `ts`), and the runner's
 * record of what it did to each process (spawn, SIGSTOP/SIGCONT, SIGKILL, SIGTERM, exit) and when.
 * From those alone it rebuilds every member's state intervals and checks
 *
 * - G1 exact cover: within an epoch one size, indices in [0, N), and no (epoch, index) started by
 *   two different members (a member id, or a process: the `assigned` and work lines of each), even
 *   when the two tenures do not overlap in time: that is a duplicate start, reported with both lines;
 * - G2 no overlap: no tenure (assigned .. the line that ended it) of an epoch E1 lasts past the
 *   first start of any epoch E2 > E1; no work line of E1 after E2 started. A process stopped with
 *   SIGSTOP does nothing while stopped, so a tenure it was stopped in ends at the stop (stops.mjs:
 *   the send time, or the last line stamped before any SIGCONT if later), as long as it printed no
 *   work line of that epoch after it was continued; a killed process stops at the kill;
 * - G5 graceful leave: a member told to leave (SIGTERM) during the observation prints `left` before
 *   it exits (its row is gone: the others need not wait for its lease), unless the database was
 *   being restarted meanwhile;
 * - G4 liveness: the group is *converged* when every live member (spawned and printing, not stopped,
 *   not killed, not told to leave) is assigned in one epoch E with size = the number of live members
 *   and indices exactly 0..N-1. Every stretch without convergence must end within the bound of the
 *   faults that preceded it.
 *
 * In slots mode (`timing.slots`: S, runs of `join --slots S`) the modulo G1/G2 checks do not apply
 * (the epoch is no barrier, `index` is null): the per-slot checks of slots.mjs replace them, and
 * convergence is judged on the members' slot sets.
 *
 * Plain JavaScript on purpose: it runs under `node` with no build step (chaos/run.mjs).
 */

import { analyzeSlots, convergedSlots } from "./slots.mjs"
import { resumed, stoppedAt } from "./stops.mjs"

export { convergedSlots }

const ENDINGS = new Set(["renegotiating", "fenced", "lost", "leaving", "left"])

/** @typedef {{ ts: string, member: string, group: string, event: "state" | "work", state: string, epoch: number | null, index: number | null, size: number | null }} JoinEvent */

export class Monitor {
  /** @param {{ heartbeatMs: number, leaseMs: number, slots?: number }} timing */
  constructor(timing) {
    this.timing = timing
    /** Slots mode: S; undefined in modulo mode. */
    this.slots = timing.slots
    /** @type {Map<string, any>} */
    this.procs = new Map()
    /** @type {Array<{ kind: string, at: number, label?: string, boundMs: number, detail?: any }>} */
    this.faults = []
    /** @type {Array<{ label: string, line: string }>} */
    this.garbage = []
    /** @type {Array<() => void>} */
    this.listeners = []
  }

  spawn(label, slot, at) {
    this.procs.set(label, {
      label,
      slot,
      spawnedAt: at,
      firstLineAt: undefined,
      events: [],
      stops: [],
      killedAt: undefined,
      termAt: undefined,
      exitAt: undefined,
      exit: undefined,
      last: undefined,
      // Slots mode: the latest set (from the latest line of any kind).
      lastSlots: undefined,
      stderr: []
    })
  }

  /** A stdout line of process `label`, received now. */
  line(label, text) {
    const p = this.procs.get(label)
    let e
    try {
      e = JSON.parse(text)
    } catch {
      this.garbage.push({ label, line: text })
      return
    }
    e.at = Date.parse(e.ts)
    if (p.firstLineAt === undefined) p.firstLineAt = e.at
    p.events.push(e)
    if (e.event === "state") p.last = e
    if (Array.isArray(e.slots)) p.lastSlots = e.slots
    this.notify()
  }

  stderr(label, text) {
    this.procs.get(label).stderr.push(text)
  }

  stop(label, at) {
    this.procs.get(label).stops.push({ at, contAt: undefined })
    this.notify()
  }

  cont(label, at) {
    const stops = this.procs.get(label).stops
    stops[stops.length - 1].contAt = at
    this.notify()
  }

  kill(label, at) {
    this.procs.get(label).killedAt = at
    this.notify()
  }

  term(label, at) {
    this.procs.get(label).termAt = at
    this.notify()
  }

  exited(label, at, code, signal) {
    const p = this.procs.get(label)
    p.exitAt = at
    p.exit = { code, signal }
    this.notify()
  }

  /** Every line and every action, in time order, as JSON Lines (for a post-mortem). */
  dump() {
    const rows = []
    for (const p of this.procs.values()) {
      rows.push({ at: p.spawnedAt, label: p.label, action: "spawn", slot: p.slot })
      for (const e of p.events) rows.push({ at: e.at, label: p.label, line: e })
      for (const s of p.stops) {
        rows.push({ at: s.at, label: p.label, action: "SIGSTOP" })
        if (s.contAt !== undefined) rows.push({ at: s.contAt, label: p.label, action: "SIGCONT" })
      }
      if (p.killedAt !== undefined) rows.push({ at: p.killedAt, label: p.label, action: "SIGKILL" })
      if (p.termAt !== undefined) rows.push({ at: p.termAt, label: p.label, action: "SIGTERM" })
      if (p.exitAt !== undefined) rows.push({ at: p.exitAt, label: p.label, action: "exit", exit: p.exit })
      for (const line of p.stderr) rows.push({ at: undefined, label: p.label, stderr: line })
    }
    for (const f of this.faults) rows.push({ at: f.at, fault: f.kind, label: f.label, detail: f.detail, boundMs: f.boundMs, judged: f.judged })
    return rows.sort((a, b) => (a.at ?? Infinity) - (b.at ?? Infinity)).map((r) => JSON.stringify(r)).join("\n")
  }

  /**
   * A monitor rebuilt from an event log: `dump()`'s JSON Lines (`--events FILE` of a run), or any
   * log of that shape (rows `{ label, line }` alone are enough for G1 and G2). For a post-mortem:
   * `node chaos/monitor.mjs events.jsonl`. A slots-mode log needs `timing.slots` (S).
   */
  static replay(text, timing = { heartbeatMs: 500, leaseMs: 3_000 }) {
    const m = new Monitor(timing)
    const known = (label, at) => {
      if (label !== undefined && !m.procs.has(label)) m.spawn(label, m.procs.size, at)
    }
    for (const raw of text.split("\n")) {
      if (raw.trim() === "") continue
      const r = JSON.parse(raw)
      if (r.fault !== undefined) {
        m.fault(r.fault, r.at, r.boundMs ?? 0, r.label, r.detail, r.judged ?? true)
        continue
      }
      if (r.action === "spawn") {
        if (!m.procs.has(r.label)) m.spawn(r.label, r.slot ?? m.procs.size, r.at)
        continue
      }
      known(r.label, r.at ?? (r.line !== undefined ? Date.parse(r.line.ts) : undefined))
      if (r.line !== undefined) m.line(r.label, JSON.stringify(r.line))
      else if (r.stderr !== undefined) m.stderr(r.label, r.stderr)
      else if (r.action === "SIGSTOP") m.stop(r.label, r.at)
      else if (r.action === "SIGCONT") m.cont(r.label, r.at)
      else if (r.action === "SIGKILL") m.kill(r.label, r.at)
      else if (r.action === "SIGTERM") m.term(r.label, r.at)
      else if (r.action === "exit") m.exited(r.label, r.at, r.exit?.code ?? null, r.exit?.signal ?? null)
    }
    return m
  }

  /**
   * A fault the runner injected. `judged: false` (a churn schedule's single actions) is counted but
   * not held to a bound of its own: the burst it belongs to is (a judged fault whose bound the runner
   * sets once the burst is over). Returns the record, so the runner can set that bound.
   */
  fault(kind, at, boundMs, label, detail, judged = true) {
    const f = { kind, at, boundMs, label, detail, judged }
    this.faults.push(f)
    return f
  }

  onChange(f) {
    this.listeners.push(f)
    return () => (this.listeners = this.listeners.filter((g) => g !== f))
  }

  notify() {
    for (const f of [...this.listeners]) f()
  }

  /** Whether process `p` counts as a live member at time `t` (by the runner's record). */
  live(p, t) {
    if (p.firstLineAt === undefined || p.firstLineAt > t) return false
    if (p.killedAt !== undefined && p.killedAt <= t) return false
    if (p.termAt !== undefined && p.termAt <= t) return false
    if (p.exitAt !== undefined && p.exitAt <= t) return false
    return !p.stops.some((s) => s.at <= t && (s.contAt === undefined || s.contAt > t))
  }

  /** Converged now, from the latest line of each live process. */
  convergedNow() {
    const now = Date.now()
    const live = [...this.procs.values()].filter((p) => this.live(p, now))
    if (this.slots !== undefined) return convergedSlots(live.map((p) => ({ state: p.last, slots: p.lastSlots })), this.slots)
    return converged(live.map((p) => p.last))
  }

  /** Live processes now, by label. */
  liveNow() {
    const now = Date.now()
    return [...this.procs.values()].filter((p) => this.live(p, now)).map((p) => p.label)
  }

  /** Resolves when converged (true), with `size` members if given, or after `ms` (false). */
  waitConverged(ms, size) {
    const ok = () => {
      const c = this.convergedNow()
      return c.ok && (size === undefined || c.size === size)
    }
    return new Promise((resolve) => {
      if (ok()) return resolve(true)
      const done = (v) => {
        clearTimeout(timer)
        off()
        resolve(v)
      }
      const off = this.onChange(() => {
        if (ok()) done(true)
      })
      const timer = setTimeout(() => done(ok()), ms)
    })
  }

  /** Resolves with the first line of `label` matching `predicate` (or undefined after `ms`). */
  waitLine(label, predicate, ms) {
    return new Promise((resolve) => {
      const p = this.procs.get(label)
      const found = p.events.find(predicate)
      if (found) return resolve(found)
      const seen = p.events.length
      const done = (v) => {
        clearTimeout(timer)
        off()
        resolve(v)
      }
      const off = this.onChange(() => {
        const e = p.events.slice(seen).find(predicate)
        if (e) done(e)
      })
      const timer = setTimeout(() => done(undefined), ms)
    })
  }

  /** The whole analysis, over [startAt, endAt]. */
  analyze(startAt, endAt) {
    const procs = [...this.procs.values()]
    if (this.slots !== undefined) return this.analyzeSlotsMode(procs, startAt, endAt)
    const tenures = procs.flatMap((p) => tenuresOf(p, endAt))
    const g1 = checkG1(tenures, procs)
    const g2 = checkG2(tenures, procs)
    const order = procs.flatMap((p) => orderProblems(p))
    const timeline = convergenceTimeline(this, procs, startAt, endAt)
    const faults = attribute(this.faults, timeline, endAt, procs)
    const g5 = checkG5(procs, this.faults, startAt, endAt)
    return { tenures, g1, g2, g5, order, timeline, faults }
  }

  /**
   * Slots mode: the per-slot checks (slots.mjs) instead of the modulo G1/G2 and line-order checks;
   * G4 on the slot sets; G5 as in modulo mode. The modulo fields are there, empty, so that a report
   * reads the same.
   */
  analyzeSlotsMode(procs, startAt, endAt) {
    const slots = analyzeSlots(this, procs, this.slots, startAt, endAt)
    const timeline = {
      firstConvergedAt: slots.timeline.firstConvergedAt,
      notConverged: slots.timeline.notConverged,
      notConvergedMs: slots.timeline.notConvergedMs
    }
    const faults = attribute(this.faults, timeline, endAt, procs)
    const g5 = checkG5(procs, this.faults, startAt, endAt)
    return {
      tenures: procs.flatMap((p) => tenuresOf(p, endAt)),
      g1: { epochs: new Set(procs.flatMap((p) => p.events.filter((e) => e.state === "assigned").map((e) => e.epoch))).size, violations: [], duplicates: [] },
      g2: { violations: [], staleWork: 0, inFlightStale: [] },
      g5,
      order: slots.order,
      timeline,
      faults,
      slots
    }
  }
}

/** Converged: the given latest states are all `assigned` in one epoch, indices exactly 0..N-1. */
export const converged = (states) => {
  if (states.length === 0) return { ok: false, reason: "no live member" }
  const n = states.length
  let epoch
  const indices = new Set()
  for (const s of states) {
    if (s === undefined || s.state !== "assigned") return { ok: false, reason: "a live member is not assigned" }
    if (epoch === undefined) epoch = s.epoch
    if (s.epoch !== epoch) return { ok: false, reason: "live members in different epochs" }
    if (s.size !== n) return { ok: false, reason: `size ${s.size} but ${n} live members` }
    if (s.index < 0 || s.index >= n || indices.has(s.index)) return { ok: false, reason: "indices are not 0..N-1" }
    indices.add(s.index)
  }
  return { ok: true, epoch, size: n }
}

/** A process's tenures: from an `assigned` line to the line that ended it (or the process's end). */
const tenuresOf = (p, endAt) => {
  const result = []
  let open
  const close = (end, endedBy) => {
    if (open === undefined) return
    result.push({ ...open, end, endedBy, effectiveEnd: effectiveEnd(p, open, end), inFlight: inFlight(p, open) })
    open = undefined
  }
  for (const e of p.events) {
    if (e.event === "work") {
      if (open !== undefined && open.epoch === e.epoch) open.work.push(e.at)
      continue
    }
    if (e.state === "assigned") {
      // Assigned again in the same epoch after a fence: a new tenure (the fence line closed the old).
      if (open !== undefined) close(e.at, "assigned-again")
      open = { label: p.label, member: e.member, epoch: e.epoch, index: e.index, size: e.size, start: e.at, work: [] }
      continue
    }
    if (ENDINGS.has(e.state) || e.state === "joining" || e.state === "awaiting") close(e.at, e.state)
  }
  if (open !== undefined) {
    const gone = [p.killedAt, p.exitAt].filter((x) => x !== undefined)
    close(gone.length > 0 ? Math.min(...gone) : endAt, p.killedAt !== undefined ? "killed" : p.exitAt !== undefined ? "exited" : "running")
  }
  return result
}

/**
 * Work lines of tenure `t` that were in flight when its process was stopped: at most one per
 * SIGCONT, printed after it and before the process's next state line. A unit of work whose check
 * passed just before the SIGSTOP is carried out (and its line stamped) after the SIGCONT; no local
 * check can prevent that (G3 stops *new* work; in-flight side effects are what fenced transactions
 * are for, docs/protocol.md "What it does not survive"). They are reported apart, not as overlaps.
 */
const inFlight = (p, t) => {
  const result = []
  for (const s of p.stops) {
    if (s.contAt === undefined || s.at < t.start) continue
    const nextState = p.events.find((e) => e.event === "state" && e.at >= s.contAt)?.at ?? Infinity
    const first = t.work.find((w) => w >= s.contAt && w <= nextState)
    if (first !== undefined) result.push(first)
  }
  return result
}

/**
 * When a tenure really ended: a SIGSTOP inside it, with no work of it after the SIGCONT but one
 * in-flight unit, ends it when the process really stopped (`stoppedAt`).
 */
const effectiveEnd = (p, t, end) => {
  let result = end
  if (p.killedAt !== undefined && p.killedAt >= t.start) result = Math.min(result, p.killedAt)
  const flying = inFlight(p, t)
  for (const s of p.stops) {
    if (s.at < t.start || s.at >= result) continue
    const workAfter = t.work.some((w) => resumed(s, w) && !flying.includes(w))
    if (!workAfter) result = Math.min(result, stoppedAt(s, t.work))
  }
  return result
}

const checkG1 = (tenures, procs) => {
  const violations = []
  const byEpoch = new Map()
  for (const t of tenures) byEpoch.set(t.epoch, [...(byEpoch.get(t.epoch) ?? []), t])
  for (const [epoch, ts] of byEpoch) {
    const sizes = new Set(ts.map((t) => t.size))
    if (sizes.size > 1) violations.push(`epoch ${epoch}: sizes ${[...sizes].join(", ")}`)
    for (const t of ts) {
      if (t.index < 0 || t.index >= t.size) violations.push(`epoch ${epoch}: ${t.label} has index ${t.index} of ${t.size}`)
    }
  }
  const duplicates = duplicateStarts(procs).map((d) => {
    // Whether two of the holders' tenures of (epoch, index) also overlapped in time.
    const ts = tenures.filter((t) => t.epoch === d.epoch && t.index === d.index)
    const overlapping = ts.some((a, i) => ts.slice(i + 1).some((b) => (a.label !== b.label || a.member !== b.member) && a.start < b.effectiveEnd && b.start < a.effectiveEnd))
    return { ...d, overlapping, detail: `${d.detail} (${overlapping ? "at the same time" : "one after the other"})` }
  })
  for (const d of duplicates) violations.push(d.detail)
  // Static membership: incarnations of one instance hold one (epoch, index) one after the other
  // (a takeover), never at the same time.
  const iso = (t) => new Date(t).toISOString().slice(11)
  for (const [epoch, ts] of byEpoch) {
    for (const [i, a] of ts.entries()) {
      for (const b of ts.slice(i + 1)) {
        if (a.index !== b.index || a.label === b.label) continue
        if (a.start < b.effectiveEnd && b.start < a.effectiveEnd) {
          violations.push(
            `epoch ${epoch}: index ${a.index} worked by ${a.label} (${iso(a.start)}..${iso(a.effectiveEnd)}) and ` +
              `${b.label} (${iso(b.start)}..${iso(b.effectiveEnd)}) at the same time`
          )
        }
      }
    }
  }
  return { epochs: byEpoch.size, violations, duplicates }
}

/**
 * Every (epoch, index) started by two different members: the first line (`assigned`, or a work line
 * with no `assigned` before it) of each holder, in time order. A holder is a member id within one
 * process; the same member assigned again in the same epoch after a fence is one holder. A start is
 * a start whenever it happened: two members that each held index k of epoch E, one after the other,
 * break G1 even though they never worked at the same time.
 */
export const duplicateStarts = (procs) => {
  const iso = (t) => new Date(t).toISOString().slice(11)
  const first = new Map() // "epoch/index" -> Map(holder -> line)
  for (const p of procs) {
    for (const e of p.events) {
      if (e.state !== "assigned" || e.epoch === null || e.epoch === undefined || e.index === null || e.index === undefined) continue
      const key = `${e.epoch}/${e.index}`
      const holders = first.get(key) ?? new Map()
      first.set(key, holders)
      // Static membership: one holder per instance id (a takeover keeps the index in the same epoch
      // under a new process); two of its incarnations at the same time are checked in checkG1.
      const holder = typeof e.instance === "string" ? `instance ${e.instance}` : `${p.label} ${e.member}`
      if (!holders.has(holder)) holders.set(holder, { label: p.label, member: e.member, at: e.at, ts: e.ts, event: e.event, size: e.size })
    }
  }
  const result = []
  for (const [key, holders] of first) {
    if (holders.size < 2) continue
    const [epoch, index] = key.split("/").map(Number)
    const lines = [...holders.values()].sort((a, b) => a.at - b.at)
    const evidence = lines.map((l) => `${l.label} (member ${l.member}) ${l.event === "work" ? "worked" : "assigned"} at ${iso(l.at)} [${index}/${l.size}]`)
    result.push({
      epoch,
      index,
      starts: lines,
      detail: `epoch ${epoch}: index ${index} held by ${lines.length} members: ${evidence.join("; ")}`
    })
  }
  return result.sort((a, b) => a.epoch - b.epoch || a.index - b.index)
}

const checkG2 = (tenures, procs) => {
  const firstStart = new Map()
  for (const t of tenures) firstStart.set(t.epoch, Math.min(firstStart.get(t.epoch) ?? Infinity, t.start))
  const epochs = [...firstStart.keys()].sort((a, b) => a - b)
  // The earliest start of any epoch above each epoch.
  const laterStart = new Map()
  let min = Infinity
  for (let i = epochs.length - 1; i >= 0; i--) {
    laterStart.set(epochs[i], min)
    min = Math.min(min, firstStart.get(epochs[i]))
  }
  const violations = []
  const inFlightStale = []
  let staleWork = 0
  const iso = (t) => new Date(t).toISOString().slice(11)
  for (const t of tenures) {
    const later = laterStart.get(t.epoch)
    if (t.effectiveEnd > later) {
      const p = procs.find((q) => q.label === t.label)
      const stops = p.stops.filter((s) => s.at < t.effectiveEnd && (s.contAt ?? Infinity) > t.start)
      const evidence = [
        ...stops.map((s) => `SIGSTOP ${iso(s.at)}, SIGCONT ${s.contAt === undefined ? "-" : iso(s.contAt)}`),
        `work lines after ${iso(later)}: ${t.work.filter((w) => w > later).map(iso).join(", ") || "none"}`
      ]
      violations.push({
        label: t.label,
        epoch: t.epoch,
        overlapMs: t.effectiveEnd - later,
        detail: `${t.label} [${t.index}/${t.size}] in epoch ${t.epoch} from ${iso(t.start)} until ${iso(t.effectiveEnd)} (${t.endedBy}), ` +
          `a later epoch started ${iso(later)}; ${evidence.join("; ")}`
      })
    }
    staleWork += t.work.filter((w) => w > later && !t.inFlight.includes(w)).length
    for (const w of t.inFlight) {
      if (w > later) inFlightStale.push(`${t.label} [${t.index}/${t.size}] epoch ${t.epoch}: a unit in flight at SIGSTOP, line at ${iso(w)} after SIGCONT`)
    }
  }
  return { violations, staleWork, inFlightStale }
}

/**
 * G5: every SIGTERM in [startAt, endAt] of a process that was not killed is followed by its `left`
 * line. A leave that overlapped a database restart may fail for that reason: excused, counted apart.
 */
const checkG5 = (procs, faults, startAt, endAt) => {
  const iso = (t) => (t === undefined ? "-" : new Date(t).toISOString().slice(11))
  const restarts = faults
    .filter((f) => f.kind === "restart")
    .map((f) => ({ from: f.at, to: f.at + (f.detail?.stopMs ?? 0) + (f.detail?.startMs ?? 0) }))
  const violations = []
  let leaves = 0
  let excused = 0
  for (const p of procs) {
    if (p.termAt === undefined || p.termAt < startAt || p.termAt > endAt || p.killedAt !== undefined) continue
    if (p.firstLineAt === undefined) continue // told to leave before it said anything
    leaves++
    const left = p.events.find((e) => e.event === "state" && e.state === "left" && e.at >= p.termAt)
    if (left !== undefined) continue
    const until = p.exitAt ?? endAt
    if (restarts.some((r) => r.from <= until + 1_000 && r.to >= p.termAt - 1_000)) {
      excused++
      continue
    }
    const last = p.events.filter((e) => e.event === "state").at(-1)
    violations.push(
      `${p.label}: SIGTERM at ${iso(p.termAt)}, ${p.exitAt === undefined ? "still running" : `exit at ${iso(p.exitAt)} (code ${p.exit?.code}, signal ${p.exit?.signal})`}, ` +
        `no "left" line (last state: ${last?.state ?? "-"} at ${iso(last?.at)})`
    )
  }
  return { leaves, excused, violations }
}

/** Lines a process must never print in that order (work outside an assignment, two assignments open). */
const orderProblems = (p) => {
  const problems = []
  let open
  for (const e of p.events) {
    if (e.event === "work") {
      if (open === undefined || open.epoch !== e.epoch || open.index !== e.index || open.size !== e.size) {
        problems.push(`${p.label}: work line outside its assignment at ${e.ts} (epoch ${e.epoch})`)
      }
    } else if (e.state === "assigned") open = e
    else open = undefined
  }
  return problems
}

/** Every instant the convergence could change, replayed in order: stretches converged or not. */
const convergenceTimeline = (monitor, procs, startAt, endAt) => {
  const moments = []
  for (const p of procs) {
    for (const e of p.events) if (e.event === "state") moments.push({ at: e.at, p, e })
    for (const at of [p.firstLineAt, p.killedAt, p.termAt, p.exitAt]) if (at !== undefined) moments.push({ at, p })
    for (const s of p.stops) {
      moments.push({ at: s.at, p })
      if (s.contAt !== undefined) moments.push({ at: s.contAt, p })
    }
  }
  moments.sort((a, b) => a.at - b.at)
  const last = new Map()
  const stretches = [] // { from, to, ok }
  let current
  let i = 0
  while (i < moments.length) {
    const at = moments[i].at
    while (i < moments.length && moments[i].at === at) {
      const m = moments[i]
      if (m.e !== undefined) last.set(m.p.label, m.e)
      i++
    }
    const live = procs.filter((p) => monitor.live(p, at))
    const ok = converged(live.map((p) => last.get(p.label))).ok
    if (current === undefined || current.ok !== ok) {
      if (current !== undefined) current.to = at
      current = { from: at, to: Infinity, ok }
      stretches.push(current)
    }
  }
  const firstConverged = stretches.find((s) => s.ok)?.from
  const from = Math.max(startAt, firstConverged ?? endAt)
  const notConverged = stretches
    .filter((s) => !s.ok && s.to > from && s.from < endAt)
    // `open`: still not converged at the end of the observation.
    .map((s) => ({ from: Math.max(s.from, from), to: Math.min(s.to, endAt), open: s.to > endAt }))
    .filter((s) => s.to > s.from)
  return {
    firstConvergedAt: firstConverged,
    notConverged,
    notConvergedMs: notConverged.reduce((sum, s) => sum + (s.to - s.from), 0)
  }
}

/**
 * Each fault's reconvergence: the end of the last stretch without convergence that began after it
 * and before the next fault (0 when the group stayed converged). A stretch that began before any
 * fault's window (nothing to blame) is reported as unattributed.
 */
const attribute = (faults, timeline, endAt, procs) => {
  // Actions of a burst (`judged: false`) are counted, not judged: the burst's own fault is.
  const actions = faults.filter((f) => f.judged === false).sort((a, b) => a.at - b.at)
  const sorted = faults.filter((f) => f.judged !== false).sort((a, b) => a.at - b.at)
  // Every `renegotiating` line: the first after a fault is when the group reacted (a change committed).
  const renegotiations = procs.flatMap((p) => p.events.filter((e) => e.state === "renegotiating").map((e) => e.at)).sort((a, b) => a - b)
  const result = sorted.map((f, i) => {
    const nextAt = sorted[i + 1]?.at ?? endAt
    const stretches = timeline.notConverged.filter((s) => s.to > f.at && s.from < nextAt)
    const end = stretches.length === 0 ? f.at : Math.max(...stretches.map((s) => s.to))
    const reconvergedMs = end - f.at
    const reacted = renegotiations.find((at) => at >= f.at && at <= end)
    return {
      ...f,
      reconvergedMs,
      // Fault -> first renegotiation (detection, e.g. the lease running out), then -> converged (the barrier).
      detectMs: reacted === undefined ? undefined : reacted - f.at,
      barrierMs: reacted === undefined ? undefined : end - reacted,
      // Still not converged when the next fault came (or at the end of the run).
      nextAt,
      unfinished: stretches.some((s) => (nextAt < endAt ? s.to > nextAt : s.open)),
      withinBound: reconvergedMs <= f.boundMs
    }
  })
  const firstFaultAt = sorted[0]?.at ?? endAt
  const unattributed = timeline.notConverged.filter((s) => s.to <= firstFaultAt)
  return { list: result, actions, unattributed }
}

const FAULT_MARKS = {
  kill: "crash",
  leave: "leave",
  join: "join",
  sigstop: "freeze",
  sigcont: "fault",
  "term-backend": "fault",
  "term-listener": "fault",
  restart: "fault",
  churn: "fault"
}

/**
 * The tenure timeline of a run, in the shape `cli/src/ui/timeline.ts` draws (`renderSvg`): a lane per
 * index, a bar per tenure (process label, from its `assigned` line to its effective end), a mark per
 * injected fault (a SIGKILL as a crash, a SIGTERM as a leave, a SIGSTOP as a freeze, the rest as
 * faults) and per fence (a tenure ended by a `fenced` or `lost` line). `analysis` is `analyze()`'s.
 */
export const timelineOf = (analysis, faults, from, to, title = "chaos run: who held which index when") => {
  if (analysis.slots !== undefined) return slotTimelineOf(analysis, faults, from, to, title)
  const bars = analysis.tenures
    .filter((t) => t.effectiveEnd >= from && t.start <= to)
    .map((t) => ({
      lane: t.index,
      from: t.start,
      to: t.effectiveEnd,
      label: t.label,
      key: t.label,
      epoch: t.epoch,
      open: t.endedBy === "running"
    }))
  const lanes = Math.max(0, ...analysis.tenures.map((t) => t.size ?? 0), ...bars.map((b) => b.lane + 1))
  const marks = []
  for (const f of faults) {
    if (f.at < from || f.at > to || (f.kind === "churn" && f.judged === false)) continue
    const lane = analysis.tenures.find((t) => t.label === f.label && t.start <= f.at && t.effectiveEnd >= f.at)?.index
    marks.push({ at: f.at, kind: FAULT_MARKS[f.kind] ?? "fault", label: `${f.kind}${f.label === undefined ? "" : ` ${f.label}`}`, lane })
  }
  for (const t of analysis.tenures) {
    if ((t.endedBy === "fenced" || t.endedBy === "lost") && t.end >= from && t.end <= to) {
      marks.push({ at: t.end, kind: "fence", label: `${t.label} ${t.endedBy} in epoch ${t.epoch}`, lane: t.index })
    }
  }
  return { title, from, to, lanes, bars, marks }
}

/** Slots mode: a lane per slot, a bar per slot tenure (to its effective end), a mark per fault. */
const slotTimelineOf = (analysis, faults, from, to, title) => {
  const tenures = analysis.slots.tenures
  const bars = tenures
    .filter((t) => t.effectiveEnd >= from && t.start <= to)
    .map((t) => ({ lane: t.slot, from: t.start, to: t.effectiveEnd, label: t.label, key: t.label, open: t.endedBy === "running" }))
  const marks = []
  for (const f of faults) {
    if (f.at < from || f.at > to || (f.kind === "churn" && f.judged === false)) continue
    const lane = tenures.find((t) => t.label === f.label && t.start <= f.at && t.effectiveEnd >= f.at)?.slot
    marks.push({ at: f.at, kind: FAULT_MARKS[f.kind] ?? "fault", label: `${f.kind}${f.label === undefined ? "" : ` ${f.label}`}`, lane })
  }
  return { title: title.replace("which index", "which slot"), from, to, lanes: analysis.slots.S, bars, marks }
}

/** Median and max of a list of numbers. */
export const stats = (xs) => {
  if (xs.length === 0) return { n: 0, median: null, max: null }
  const s = [...xs].sort((a, b) => a - b)
  const median = s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
  return { n: s.length, median: Math.round(median), max: Math.round(s[s.length - 1]) }
}

// `node chaos/monitor.mjs events.jsonl`: the G1 and G2 findings of an event log (see Monitor.replay).
if (process.argv[1] !== undefined && import.meta.url === (await import("node:url")).pathToFileURL(process.argv[1]).href) {
  const fs = await import("node:fs")
  const file = process.argv[2]
  if (file === undefined) {
    process.stderr.write("usage: node chaos/monitor.mjs EVENTS.jsonl [--slots S] (the --events file of a chaos run)\n")
    process.exit(2)
  }
  const si = process.argv.indexOf("--slots")
  const S = si === -1 ? undefined : Number(process.argv[si + 1])
  const m = Monitor.replay(fs.readFileSync(file, "utf8"), { heartbeatMs: 500, leaseMs: 3_000, slots: S })
  const ats = [...m.procs.values()].flatMap((p) => p.events.map((e) => e.at))
  const a = m.analyze(Math.min(...ats), Math.max(...ats))
  if (a.slots !== undefined) {
    const o = a.slots.overlaps
    process.stdout.write([
      `${m.procs.size} processes, ${ats.length} lines, slots mode (S = ${S}), ${a.slots.tenures.length} slot tenures, ${a.slots.handoffs.total} handoffs`,
      `per-slot overlaps: ${o.violations.length}; stale work lines: ${o.staleWork}; in flight at a SIGSTOP: ${o.inFlightStale.length}`,
      ...o.violations.map((v) => `  ! slot overlap: ${v.detail}`),
      `unfair sizes at quiet points: ${a.slots.timeline.unfair.length}`,
      ...a.slots.timeline.unfair.map((u) => `  ! fairness: ${u.detail}`),
      `line problems: ${a.order.length}`,
      ...a.order.map((v) => `  ! order: ${v}`)
    ].join("\n") + "\n")
    process.exit(o.violations.length + o.staleWork + a.slots.timeline.unfair.length + a.order.length === 0 ? 0 : 1)
  }
  const out = [
    `${m.procs.size} processes, ${ats.length} lines, ${a.g1.epochs} epochs worked in`,
    `G1 violations: ${a.g1.violations.length} (duplicate starts: ${a.g1.duplicates.length})`,
    ...a.g1.violations.map((v) => `  ! G1: ${v}`),
    `G2 overlaps: ${a.g2.violations.length}; stale work lines: ${a.g2.staleWork}`,
    ...a.g2.violations.map((v) => `  ! G2: ${v.detail}`),
    `line-order problems: ${a.order.length}`,
    ...a.order.map((v) => `  ! order: ${v}`),
    `graceful leaves without a "left" line (G5): ${a.g5.violations.length} of ${a.g5.leaves} (${a.g5.excused} during a restart)`,
    ...a.g5.violations.map((v) => `  ! G5: ${v}`)
  ]
  process.stdout.write(`${out.join("\n")}\n`)
  process.exitCode = a.g1.violations.length + a.g2.violations.length + a.g2.staleWork + a.order.length + a.g5.violations.length === 0 ? 0 : 1
}
