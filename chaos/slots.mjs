/**
 * The chaos monitor's slots mode (`npm run chaos -- --slots S`): per-slot tenures and their checks,
 * from the same two sources as the modulo checks (monitor.mjs): the JSON Lines of every
 * `modulo-group join --slots S --json` process, and the runner's record of what it did to each.
 *
 * In slots mode every line (state and work) carries `slots`, the sorted set the member works at that
 * moment. A member prints its smaller set after it stopped the slots it gives up and before it
 * releases them, and its larger set only once it may work the new slots, so for every slot the
 * giving line precedes the taking line (docs/slots.md). From those lines:
 *
 * - a *tenure* of slot s by a process is the stretch from the first line whose set includes s to the
 *   first later line whose set does not; a `leaving` line ends every tenure of its process (the member
 *   prints nothing more until `left`, and leaves only once its work has stopped: G5), as it does in
 *   the modulo monitor; a SIGKILL ends it at the kill. A SIGSTOP inside a tenure ends it at the stop
 *   when the process printed no line naming s after the SIGCONT, apart from the lines it printed while
 *   stopping (below), exactly as the modulo monitor ends a stopped member's tenure;
 * - lines *in flight* at a SIGSTOP: after a SIGCONT the process first runs what was due while it was
 *   frozen (its lease deadline passed: the fence stops all its slots, one line per slot stopped). The
 *   lines it prints from the SIGCONT until its set first no longer holds s, as long as its set does not
 *   grow meanwhile (it takes no slot: it is stopping, not working), with at most one line of an
 *   unchanged set (a work tick that was due), and at most `IN_FLIGHT_MS` after the SIGCONT, are reported apart (the modulo monitor's one unit in flight per SIGCONT: no local check
 *   can stop a frozen process's work before it runs again; fenced transactions cover side effects);
 * - (a) per-slot overlap: two processes' tenures of one slot overlap in time (by the lines' `ts`);
 * - (b) unowned beyond bound: from a fault, every slot must again be in the set of a live member
 *   (spawned and printing, not stopped, killed, or told to leave) within the fault's bound;
 * - (c) fairness: at each quiet point (just before each judged fault, when the runner has waited for
 *   the group to settle and a quiet gap, and at the end of the observation), if every slot is in
 *   exactly one live member's set, the live members' set sizes differ by at most one;
 * - (d) stale work: a line of a process naming s after another process's tenure of s began (and not
 *   in flight at a SIGSTOP).
 *
 * Convergence (G4) in slots mode: every live member's latest state is `assigned`, every slot is in
 * exactly one live member's latest set, and the sizes differ by at most one.
 */

import { resumed, stoppedAt } from "./stops.mjs"

/** How long after a SIGCONT a frozen process's stopping lines count as in flight. */
export const IN_FLIGHT_MS = 1_000

/**
 * Converged in slots mode, from each live member's latest state line (`state`) and latest set
 * (`slots`, from its latest line of any kind). `covered`: every slot in some live set.
 */
export const convergedSlots = (entries, S) => {
  const n = entries.length
  if (n === 0) return { ok: false, covered: false, exact: false, balanced: false, reason: "no live member" }
  const count = new Array(S).fill(0)
  const sizes = []
  let assigned = true
  for (const { state, slots } of entries) {
    if (state === undefined || state.state !== "assigned") assigned = false
    const set = slots ?? []
    sizes.push(set.length)
    for (const s of set) if (s >= 0 && s < S) count[s]++
  }
  const covered = count.every((c) => c >= 1)
  const exact = count.every((c) => c === 1)
  const balanced = Math.max(...sizes) - Math.min(...sizes) <= 1
  const reason = !assigned
    ? "a live member is not assigned"
    : !covered
    ? `${count.filter((c) => c === 0).length} slot(s) in no live member's set`
    : !exact
    ? `${count.filter((c) => c > 1).length} slot(s) in two live members' sets`
    : !balanced
    ? `set sizes ${Math.min(...sizes)}..${Math.max(...sizes)}`
    : undefined
  return { ok: assigned && exact && balanced, covered, exact, balanced, assigned, size: n, sizes, reason }
}

const iso = (t) => (t === undefined || !Number.isFinite(t) ? "-" : new Date(t).toISOString().slice(11))

/** A process's per-slot tenures, from its lines (each with `slots`). */
export const slotTenuresOf = (p, endAt) => {
  const result = []
  const open = new Map() // slot -> tenure
  const close = (t, end, endedBy) => {
    open.delete(t.slot)
    result.push({ ...t, end, endedBy })
  }
  let previous = [] // the set of the line before
  for (const e of p.events) {
    if (!Array.isArray(e.slots)) continue
    if (e.event === "state" && (e.state === "leaving" || e.state === "left")) {
      for (const t of [...open.values()]) close(t, e.at, e.state)
      previous = []
      continue
    }
    const set = new Set(e.slots)
    for (const t of [...open.values()]) if (!set.has(t.slot)) close(t, e.at, e.event === "state" ? e.state : "released")
    for (const s of e.slots) {
      let t = open.get(s)
      if (t === undefined) {
        t = { label: p.label, member: e.member, slot: s, start: e.at, lines: [] }
        open.set(s, t)
      }
      // Each line naming s, with whether the set grew at it (the process took a slot) or shrank
      // (it stopped one: the line of a stop).
      t.lines.push({ at: e.at, grew: e.slots.some((x) => !previous.includes(x)), shrank: previous.some((x) => !set.has(x)) })
    }
    previous = e.slots
  }
  const gone = [p.killedAt, p.exitAt].filter((x) => x !== undefined)
  const end = gone.length > 0 ? Math.min(...gone) : endAt
  const endedBy = p.killedAt !== undefined ? "killed" : p.exitAt !== undefined ? "exited" : "running"
  for (const t of [...open.values()]) close(t, end, endedBy)
  return result.map((t) => {
    const flying = inFlightSlot(p, t)
    return { ...t, inFlight: flying, effectiveEnd: effectiveEndSlot(p, t, flying) }
  })
}

/**
 * The lines of tenure `t` in flight at a SIGSTOP: printed while stopping, just after a SIGCONT. From
 * the SIGCONT on, within `IN_FLIGHT_MS`, while the set never grows: at most one line with the set
 * unchanged (the work tick that was due while frozen: the modulo monitor's one unit in flight) and
 * the lines of the stops (each a smaller set).
 */
const inFlightSlot = (p, t) => {
  const result = []
  for (const s of p.stops) {
    if (s.contAt === undefined || s.at < t.start) continue
    let unchanged = 0
    for (const l of t.lines) {
      if (l.at < s.contAt) continue
      if (l.grew || l.at > s.contAt + IN_FLIGHT_MS) break
      if (!l.shrank && ++unchanged > 1) break
      result.push(l.at)
    }
  }
  return result
}

/** When tenure `t` really ended: at a SIGKILL, or at a SIGSTOP after which it printed no line naming its slot but in flight. */
const effectiveEndSlot = (p, t, flying) => {
  let result = t.end
  if (p.killedAt !== undefined && p.killedAt >= t.start) result = Math.min(result, p.killedAt)
  for (const s of p.stops) {
    if (s.at < t.start || s.at >= result) continue
    // Lines stamped between the send time and the SIGCONT were printed before the stop took effect
    // (stops.mjs `stoppedAt`).
    const after = t.lines.some((l) => resumed(s, l.at) && !flying.includes(l.at))
    if (!after) result = Math.min(result, stoppedAt(s, t.lines.map((l) => l.at)))
  }
  return result
}

/**
 * (a) per-slot overlaps and (d) stale work lines, post hoc by the lines' timestamps: two processes'
 * tenures of one slot that overlap in time; lines of a tenure after another process's tenure of the
 * same slot began.
 */
export const checkSlotOverlaps = (tenures, procs) => {
  const bySlot = new Map()
  for (const t of tenures) bySlot.set(t.slot, [...(bySlot.get(t.slot) ?? []), t])
  const violations = []
  const inFlightStale = []
  let staleWork = 0
  const holder = (t) => `${t.label} ${t.member}`
  for (const [slot, ts] of bySlot) {
    ts.sort((a, b) => a.start - b.start)
    for (const [i, a] of ts.entries()) {
      // The first start of another holder's tenure of this slot after a's start.
      const next = ts.slice(i + 1).find((b) => holder(b) !== holder(a))
      for (const b of ts.slice(i + 1)) {
        if (holder(b) === holder(a) || b.start >= a.effectiveEnd) continue
        const p = procs.find((q) => q.label === a.label)
        const stops = p.stops.filter((s) => s.at < a.effectiveEnd && (s.contAt ?? Infinity) > a.start)
        const stopping = stoppingSince(p, a.end)
        const evidence = [
          ...stops.map((s) => `SIGSTOP ${iso(s.at)}, SIGCONT ${iso(s.contAt)}`),
          ...(stopping === undefined ? [] : [`${a.label} was stopping slots one by one since ${iso(stopping.from)} (${stopping.lines} lines, ${stopping.from0} slots to ${stopping.toN})`]),
          `${a.label}'s work ticks in the 5 s before: ${tickGap(p, b.start)}`,
          `${a.label}'s lines naming slot ${slot} after ${iso(b.start)}: ${a.lines.filter((l) => l.at >= b.start).map((l) => iso(l.at)).slice(0, 5).join(", ") || "none"}`
        ]
        violations.push({
          slot,
          labels: [a.label, b.label],
          overlapMs: Math.min(a.effectiveEnd, b.effectiveEnd) - b.start,
          detail: `slot ${slot}: ${a.label} from ${iso(a.start)} until ${iso(a.effectiveEnd)} (${a.endedBy}), ` +
            `${b.label} from ${iso(b.start)} until ${iso(b.effectiveEnd)} (${b.endedBy}); ${evidence.join("; ")}`
        })
      }
      if (next === undefined) continue
      staleWork += a.lines.filter((l) => l.at > next.start && !a.inFlight.includes(l.at)).length
      for (const w of a.inFlight) {
        if (w > next.start) inFlightStale.push(`slot ${slot}: ${a.label} line at ${iso(w)} (stopping after a SIGCONT), ${next.label} took it at ${iso(next.start)}`)
      }
    }
  }
  return { violations, staleWork, inFlightStale }
}

/**
 * The chain of lines of process `p` that ends at `at`, in which each line's set is a strict subset of
 * the line before (the process stopping slots one by one: a fence, a lost row, or many given up at
 * once): when it began. Evidence for an overlap's report, not a judgement.
 */
const stoppingSince = (p, at) => {
  const lines = p.events.filter((e) => Array.isArray(e.slots))
  let i = lines.findIndex((e) => e.at === at)
  if (i <= 0) return undefined
  const subset = (x, y) => x.length < y.length && x.every((s) => y.includes(s))
  let j = i
  while (j > 0 && subset(lines[j].slots, lines[j - 1].slots)) j--
  if (j === i) return undefined
  return { from: lines[j + 1].at, lines: i - j, from0: lines[j].slots.length, toN: lines[i].slots.length }
}

/**
 * The median gap between a process's work ticks (work lines that repeat the set of the line before)
 * in the 5 s before `at`: how promptly it ran (the runner's --work-interval when it was not starved).
 */
const tickGap = (p, at) => {
  const lines = p.events.filter((e) => Array.isArray(e.slots) && e.at >= at - 5_000 && e.at <= at)
  const ticks = lines.filter((e, i) => i > 0 && e.event === "work" && e.slots.length === lines[i - 1].slots.length).map((e) => e.at)
  const gaps = ticks.slice(1).map((x, i) => x - ticks[i]).filter((g) => g > 0).sort((a, b) => a - b)
  return gaps.length === 0 ? "none" : `every ${gaps[Math.floor(gaps.length / 2)]} ms (median)`
}

/** Handoffs: a slot's tenure that starts after another process's (or member's) tenure of it. */
export const handoffsOf = (tenures, S) => {
  const bySlot = new Map()
  for (const t of tenures) bySlot.set(t.slot, [...(bySlot.get(t.slot) ?? []), t])
  const starts = [] // times of the handoffs
  const perSlot = new Array(S).fill(0)
  for (const [slot, ts] of bySlot) {
    ts.sort((a, b) => a.start - b.start)
    for (let i = 1; i < ts.length; i++) {
      if (ts[i].label === ts[i - 1].label && ts[i].member === ts[i - 1].member) continue
      if (slot < S) perSlot[slot]++
      starts.push(ts[i].start)
    }
  }
  return { total: starts.length, perSlot, starts: starts.sort((a, b) => a - b) }
}

/** Every moment the ownership could change, replayed in order: each call of `visit(at, entries)`. */
export const replaySlots = (monitor, procs, visit) => {
  const moments = []
  for (const p of procs) {
    for (const e of p.events) if (Array.isArray(e.slots) || e.event === "state") moments.push({ at: e.at, p, e })
    for (const at of [p.firstLineAt, p.killedAt, p.termAt, p.exitAt]) if (at !== undefined) moments.push({ at, p })
    for (const s of p.stops) {
      moments.push({ at: s.at, p })
      if (s.contAt !== undefined) moments.push({ at: s.contAt, p })
    }
  }
  moments.sort((a, b) => a.at - b.at)
  const lastState = new Map()
  const lastSet = new Map()
  let i = 0
  while (i < moments.length) {
    const at = moments[i].at
    while (i < moments.length && moments[i].at === at) {
      const m = moments[i]
      if (m.e !== undefined) {
        if (m.e.event === "state") lastState.set(m.p.label, m.e)
        if (Array.isArray(m.e.slots)) lastSet.set(m.p.label, m.e.slots)
      }
      i++
    }
    const live = procs.filter((p) => monitor.live(p, at))
    visit(at, live.map((p) => ({ label: p.label, state: lastState.get(p.label), slots: lastSet.get(p.label) })))
  }
}

/**
 * The slots-mode timelines: stretches not converged (for G4, as in modulo mode) and stretches with a
 * slot in no live member's set (for (b)), and (c) the fairness at the quiet points `quietAt`.
 */
export const slotTimelines = (monitor, procs, S, startAt, endAt, quietAt) => {
  const conv = []
  const cov = []
  let c
  let v
  const states = [] // { at, result } for the quiet points
  replaySlots(monitor, procs, (at, entries) => {
    const r = convergedSlots(entries.map((x) => ({ state: x.state, slots: x.slots })), S)
    states.push({ at, r, entries })
    if (c === undefined || c.ok !== r.ok) {
      if (c !== undefined) c.to = at
      c = { from: at, to: Infinity, ok: r.ok }
      conv.push(c)
    }
    if (v === undefined || v.ok !== r.covered) {
      if (v !== undefined) v.to = at
      v = { from: at, to: Infinity, ok: r.covered }
      cov.push(v)
    }
  })
  const firstConverged = conv.find((s) => s.ok)?.from
  const from = Math.max(startAt, firstConverged ?? endAt)
  const cut = (stretches) =>
    stretches
      .filter((s) => !s.ok && s.to > from && s.from < endAt)
      .map((s) => ({ from: Math.max(s.from, from), to: Math.min(s.to, endAt), open: s.to > endAt }))
      .filter((s) => s.to > s.from)
  const notConverged = cut(conv)
  const notCovered = cut(cov)
  // (c) The state at each quiet point: the last replayed moment strictly before it.
  const unfair = []
  for (const q of quietAt) {
    if (q < from || q > endAt) continue
    let lo = 0
    let hi = states.length - 1
    let found
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      if (states[mid].at < q) {
        found = states[mid]
        lo = mid + 1
      } else hi = mid - 1
    }
    if (found === undefined) continue
    const r = found.r
    if (r.assigned && r.exact && !r.balanced) {
      unfair.push({
        at: q,
        sizes: Object.fromEntries(found.entries.map((x) => [x.label, (x.slots ?? []).length])),
        detail: `at ${iso(q)} every slot had one live owner but the set sizes were ` +
          `${found.entries.map((x) => `${x.label} ${(x.slots ?? []).length}`).join(", ")} (differ by ${Math.max(...r.sizes) - Math.min(...r.sizes)})`
      })
    }
  }
  return {
    firstConvergedAt: firstConverged,
    notConverged,
    notConvergedMs: notConverged.reduce((sum, s) => sum + (s.to - s.from), 0),
    notCovered,
    notCoveredMs: notCovered.reduce((sum, s) => sum + (s.to - s.from), 0),
    unfair
  }
}

/**
 * (b) Each judged fault: how long until every slot was again in a live member's set (the end of the
 * last stretch with an unowned slot that began before the next fault), against the fault's bound.
 */
export const unownedAfterFaults = (faults, notCovered, endAt) => {
  const sorted = faults.filter((f) => f.judged !== false).sort((a, b) => a.at - b.at)
  return sorted.map((f, i) => {
    const nextAt = sorted[i + 1]?.at ?? endAt
    const stretches = notCovered.filter((s) => s.to > f.at && s.from < nextAt)
    const end = stretches.length === 0 ? f.at : Math.max(...stretches.map((s) => s.to))
    const unownedMs = end - f.at
    // A slot still unowned when the next fault came (or at the end): not owned again in time either.
    const unfinished = stretches.some((s) => (nextAt < endAt ? s.to > nextAt : s.open))
    return { kind: f.kind, at: f.at, label: f.label, boundMs: f.boundMs, unownedMs, unfinished, withinBound: unownedMs <= f.boundMs && !unfinished }
  })
}

/** Lines a slots-mode process must never print: a slot outside [0, S), a set not sorted or with repeats. */
export const slotOrderProblems = (p, S) => {
  const problems = []
  for (const e of p.events) {
    if (!Array.isArray(e.slots)) continue
    const bad = e.slots.some((s, i) => !Number.isInteger(s) || s < 0 || s >= S || (i > 0 && e.slots[i - 1] >= s))
    if (bad) problems.push(`${p.label}: set ${JSON.stringify(e.slots).slice(0, 80)} at ${e.ts} is not ascending slots in [0, ${S})`)
    if (e.index !== null && e.index !== undefined) problems.push(`${p.label}: index ${e.index} in slots mode at ${e.ts}`)
  }
  return problems
}

/** The whole per-slot analysis over [startAt, endAt]. */
export const analyzeSlots = (monitor, procs, S, startAt, endAt) => {
  const tenures = procs.flatMap((p) => slotTenuresOf(p, endAt))
  const overlaps = checkSlotOverlaps(tenures, procs)
  const judged = monitor.faults.filter((f) => f.judged !== false)
  const quietAt = [...judged.map((f) => f.at), endAt]
  const timeline = slotTimelines(monitor, procs, S, startAt, endAt, quietAt)
  const unowned = unownedAfterFaults(monitor.faults, timeline.notCovered, endAt)
  const handoffs = handoffsOf(tenures.filter((t) => t.start >= startAt && t.start <= endAt), S)
  // Handoffs per judged fault: those that started in its window (until the next judged fault).
  const sorted = [...judged].sort((a, b) => a.at - b.at)
  const handoffsPerFault = sorted.map((f, i) => {
    const nextAt = sorted[i + 1]?.at ?? endAt
    return { kind: f.kind, at: f.at, count: handoffs.starts.filter((at) => at >= f.at && at < nextAt).length }
  })
  const order = procs.flatMap((p) => slotOrderProblems(p, S))
  return { S, tenures, overlaps, timeline, unowned, handoffs, handoffsPerFault, order }
}
