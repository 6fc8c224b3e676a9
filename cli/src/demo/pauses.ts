/**
 * Slots mode: how long each slot's work paused per change, from the members' `slot` lines (a slot's
 * work started or stopped in a member) and the faults (a killed or frozen member works nothing from
 * the moment of the signal, whatever it prints later). Pure.
 *
 * A slot is paused from the moment its last worker stopped (or was killed or frozen) until a member
 * starts it again; the pause belongs to the change during which it began. A slot that nobody has
 * worked yet (before the first start) is not paused. A pause that its worker ends itself, starting
 * the slot again under the same generation after it said it fenced itself (the slot never changed
 * hands: a late renewal, then a renewal), is no doing of the change: it is counted apart
 * (`fencedSlots`). Without such a `fenced` line, a same-generation pause is the change's.
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
  /** The slot's generation in the member's line. */
  readonly generation?: number | undefined
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
  /** Slots worked when the change began that the change did not pause (a self-fence's: `fencedSlots`). */
  readonly kept: number
  /** Members that stopped at least one slot (or were stopped) during the change. */
  readonly stopped: ReadonlyArray<string>
  /** Members that worked slots when the change began and stopped none of them during it: no pause. */
  readonly unpaused: ReadonlyArray<string>
  /**
   * Slots whose work paused during the change and was started again by the same member under the
   * same generation (a self-fence and renewal, e.g. a late renewal under load): not the change's,
   * so not in `slots`, `maxMs`, `totalMs` nor `stopped`.
   */
  readonly fencedSlots: number
  /** The members that paused and resumed those slots. */
  readonly fenced: ReadonlyArray<string>
}

interface Interval {
  readonly member: string
  readonly generation: number | undefined
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
  end: number,
  fences: ReadonlyArray<Cutoff> = []
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
      const i: Interval = { member: e.member, generation: e.generation, start: e.at, end: Infinity }
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
  // A gap that the same member closes under the same generation: the slot did not change hands.
  const gaps: Array<{
    readonly slot: number
    readonly from: number
    readonly to: number
    readonly unfinished: boolean
    readonly by: Interval
    readonly own: boolean
  }> = []
  // The member said it fenced itself between shortly before the stop (its `stop` lines can come a
  // few ms before its `fenced` line) and the restart.
  const fencedBetween = (member: string, from: number, to: number): boolean =>
    fences.some((f) => f.member === member && f.at >= from - fenceLineSlackMs && f.at <= to)
  const resumes = (before: Interval, after: Interval): boolean =>
    after.member === before.member && before.generation !== undefined && after.generation === before.generation &&
    fencedBetween(before.member, before.end, after.start)
  const ownStops = new Set<Interval>()
  for (const [slot, list] of bySlot) {
    list.sort((a, b) => a.start - b.start)
    let last = list[0]!
    for (const i of list.slice(1)) {
      if (i.start > last.end) {
        const own = resumes(last, i)
        if (own) ownStops.add(last)
        gaps.push({ slot, from: last.end, to: i.start, unfinished: false, by: last, own })
      }
      if (i.end > last.end) last = i
    }
    if (last.end < end) gaps.push({ slot, from: last.end, to: end, unfinished: true, by: last, own: false })
  }
  return windows.map((w) => {
    const all = gaps.filter((g) => g.from >= w.from && g.from < w.to)
    const mine = all.filter((g) => !g.own)
    const fenced = all.filter((g) => g.own)
    const stopped = new Set<string>()
    for (const list of bySlot.values()) {
      for (const i of list) if (i.end >= w.from && i.end < w.to && i.end < end && !ownStops.has(i)) stopped.add(i.member)
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
      unpaused: [...working].filter((m) => !stopped.has(m)).sort(byName),
      fencedSlots: new Set(fenced.map((g) => g.slot)).size,
      fenced: [...new Set(fenced.map((g) => g.by.member))].sort(byName)
    }
  })
}

/** How much earlier than a member's `fenced` line its `stop` lines of that fence may come. */
const fenceLineSlackMs = 1_000

/** `m2` before `m10`. */
const byName = (a: string, b: string): number => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0)
