/**
 * Slots mode: how long each slot's work paused per change, from the members' `slot` lines (a slot's
 * work started or stopped in a member) and the faults (a killed or frozen member works nothing from
 * the moment of the signal, whatever it prints later). Pure.
 *
 * A slot is paused from the moment its last worker stopped (or was killed or frozen) until a member
 * starts it again; the pause belongs to the change during which it began. A slot that nobody has
 * worked yet (before the first start) is not paused.
 *
 * @since 0.3.0
 * @internal
 */

/**
 * A member's slot started or stopped, at `at` (ms since the Unix epoch).
 *
 * @since 0.3.0
 * @internal
 */
export interface SlotEvent {
  readonly member: string
  readonly slot: number
  readonly action: "start" | "stop"
  readonly at: number
}

/**
 * A member that stopped working at `at` without saying so (SIGKILL, SIGSTOP): its slots started
 * before `at` count as stopped at `at`.
 *
 * @since 0.3.0
 * @internal
 */
export interface Cutoff {
  readonly member: string
  readonly at: number
}

/**
 * What one change paused.
 *
 * @since 0.3.0
 * @internal
 */
export interface ChangePauses {
  /** Distinct slots whose work paused during the change. */
  readonly slots: number
  /** The longest pause, in ms (0 when none). */
  readonly maxMs: number
  /** The pauses summed, in slot-milliseconds. */
  readonly totalMs: number
  /** Pauses that had not ended when the window closed (a slot nobody took back in time). */
  readonly unfinished: number
  /** Slots worked when the change began that did not pause during it (their work went on). */
  readonly kept: number
  /** Members that stopped at least one slot (or were stopped) during the change. */
  readonly stopped: ReadonlyArray<string>
  /** Members that worked slots when the change began and stopped none of them during it: no pause. */
  readonly unpaused: ReadonlyArray<string>
}

interface Interval {
  readonly member: string
  readonly start: number
  end: number
}

/**
 * Per window `[from, to)` (ms since the Unix epoch, in order, not overlapping), the pauses that
 * began in it. `end` closes every interval still open (the demo stopping its members).
 *
 * @since 0.3.0
 * @internal
 */
export const pausesPerChange = (
  events: ReadonlyArray<SlotEvent>,
  cutoffs: ReadonlyArray<Cutoff>,
  windows: ReadonlyArray<{ readonly from: number; readonly to: number }>,
  end: number
): Array<ChangePauses> => {
  const cutOf = (member: string, start: number): number => {
    let at = Infinity
    for (const c of cutoffs) if (c.member === member && c.at >= start && c.at < at) at = c.at
    return at
  }
  // Per slot, the intervals during which some member worked it.
  const bySlot = new Map<number, Array<Interval>>()
  const open = new Map<string, Interval>()
  const sorted = [...events].sort((a, b) => a.at - b.at)
  for (const e of sorted) {
    const key = `${e.member}\u0000${e.slot}`
    if (e.action === "start") {
      if (open.has(key)) continue
      const i: Interval = { member: e.member, start: e.at, end: Infinity }
      open.set(key, i)
      const list = bySlot.get(e.slot) ?? []
      list.push(i)
      bySlot.set(e.slot, list)
    } else {
      const i = open.get(key)
      if (i === undefined) continue
      i.end = e.at
      open.delete(key)
    }
  }
  for (const list of bySlot.values()) {
    for (const i of list) i.end = Math.min(i.end, cutOf(i.member, i.start), end)
  }
  // The gaps in each slot's coverage, after its first start.
  const gaps: Array<{ readonly slot: number; readonly from: number; readonly to: number; readonly unfinished: boolean }> = []
  for (const [slot, list] of bySlot) {
    list.sort((a, b) => a.start - b.start)
    let reach = list[0]!.end
    for (const i of list.slice(1)) {
      if (i.start > reach) gaps.push({ slot, from: reach, to: i.start, unfinished: false })
      reach = Math.max(reach, i.end)
    }
    if (reach < end) gaps.push({ slot, from: reach, to: end, unfinished: true })
  }
  return windows.map((w) => {
    const mine = gaps.filter((g) => g.from >= w.from && g.from < w.to)
    const stopped = new Set<string>()
    for (const list of bySlot.values()) {
      for (const i of list) if (i.end >= w.from && i.end < w.to && i.end < end) stopped.add(i.member)
    }
    const working = new Set<string>()
    const workedSlots = new Set<number>()
    for (const [slot, list] of bySlot) {
      for (const i of list) {
        if (i.start <= w.from && i.end > w.from) {
          working.add(i.member)
          workedSlots.add(slot)
        }
      }
    }
    const pausedSlots = new Set(mine.map((g) => g.slot))
    return {
      slots: pausedSlots.size,
      kept: [...workedSlots].filter((slot) => !pausedSlots.has(slot)).length,
      maxMs: mine.reduce((m, g) => Math.max(m, g.to - g.from), 0),
      totalMs: mine.reduce((n, g) => n + (g.to - g.from), 0),
      unfinished: mine.filter((g) => g.unfinished).length,
      stopped: [...stopped].sort(byName),
      unpaused: [...working].filter((m) => !stopped.has(m)).sort(byName)
    }
  })
}

/** `m2` before `m10`. */
const byName = (a: string, b: string): number => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0)
