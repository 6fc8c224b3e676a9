/**
 * Work intervals of many members, from fibers or from other processes, in one place: tells when the
 * members converged (G1 exact cover: N members working in one epoch on indices 0..N-1) and checks
 * G1/G2 on every start in O(1), so it stays cheap with thousands of members.
 *
 * Times are `performance.now()` of this process; marks from other processes are converted from
 * their absolute time (`performance.timeOrigin + performance.now()` there).
 *
 * Marks from several processes arrive in the order this process reads their pipes, which is not
 * the order they happened in: a member's `end` can be read after another's `start` it preceded
 * (both written before this process, busy, read either). So an overlap of two epochs is judged on
 * the marks' own times: a start next to work still open in another epoch waits for that work's end
 * mark (or its process's kill) and is a violation only if the work ended after the other epoch's
 * start (G2: once a member works under E2, nobody works under E1 < E2 any more).
 */

export interface Mark {
  readonly member: string
  readonly kind: "start" | "end"
  /** The protocol epoch; for the original design, which has none, the group count it worked under. */
  readonly epoch: number
  readonly index: number
  readonly size: number
  readonly at: number
}

interface EpochCell {
  open: number
  live: number
  size: number
  /** How many open marks hold each index (more than one is a G1 violation, or a stale view in the original design). */
  indices: Map<number, number>
  /** The members whose work in this epoch is open. */
  members: Set<string>
}

/** Work of `member` in `epoch`, open when another epoch's work started at `deadline`: a violation if it ends later. */
interface Overlap {
  readonly member: string
  readonly epoch: number
  readonly deadline: number
  readonly describe: (endedAt: number | undefined) => string
}

interface Waiter {
  readonly n: number
  readonly resolve: (at: number) => void
}

export interface CoverOptions {
  /** Check G1/G2 on every start (off for the original design, which overlaps by design). */
  readonly checkGuarantees: boolean
}

/** Times within one change, for a breakdown of its convergence. */
export interface Phase {
  /** The last work stop of a live member before the first start (every member has learnt of the change). */
  lastStop: number
  /** The first work start (the barrier has cleared for someone). */
  firstStart: number
}

export class Cover {
  private readonly confirmed: Array<string> = []
  /** Overlaps waiting for the end mark of the work that may have run too long. */
  private overlaps: Array<Overlap> = []
  /** The first start of each epoch (its own time). */
  private readonly firstStart = new Map<number, number>()
  /** Marks received, for a sanity count. */
  marks = 0
  /** Overlaps by the order read that the marks' own times settled (an end read after a start it preceded). */
  reordered = 0
  private readonly open = new Map<string, Mark>()
  private readonly dead = new Set<string>()
  private readonly epochs = new Map<number, EpochCell>()
  private liveOpen = 0
  private maxStarted = 0
  private waiters: Array<Waiter> = []
  private phase: Phase | undefined

  constructor(private readonly options: CoverOptions = { checkGuarantees: true }) {}

  /** G1/G2 violations: those confirmed, and overlaps whose work has not been seen to end (yet). */
  get violations(): ReadonlyArray<string> {
    return [...this.confirmed, ...this.overlaps.map((o) => o.describe(undefined))]
  }

  private cell(epoch: number, size: number): EpochCell {
    let c = this.epochs.get(epoch)
    if (c === undefined) {
      c = { open: 0, live: 0, size, indices: new Map(), members: new Set() }
      this.epochs.set(epoch, c)
    }
    return c
  }

  /** The work of `member` ended at `at`: settles the overlaps that waited for it. */
  private ended(member: string, epoch: number, at: number) {
    if (this.overlaps.length === 0) return
    this.overlaps = this.overlaps.filter((o) => {
      if (o.member !== member || o.epoch !== epoch) return true
      if (at > o.deadline) {
        if (this.confirmed.length <= 100) this.confirmed.push(o.describe(at))
      } else {
        this.reordered++
      }
      return false
    })
  }

  private close(member: string, at: number) {
    const o = this.open.get(member)
    if (o === undefined) return
    this.ended(member, o.epoch, at)
    this.open.delete(member)
    const c = this.epochs.get(o.epoch)!
    c.open--
    c.members.delete(member)
    const k = c.indices.get(o.index)! - 1
    if (k === 0) c.indices.delete(o.index)
    else c.indices.set(o.index, k)
    if (!this.dead.has(member)) {
      c.live--
      this.liveOpen--
    }
    if (c.open === 0) this.epochs.delete(o.epoch)
  }

  /** Starts recording a `Phase` for the next change (read it back once the change has converged). */
  beginPhase(): Phase {
    this.phase = { lastStop: NaN, firstStart: NaN }
    return this.phase
  }

  add(mark: Mark) {
    this.marks++
    if (this.phase !== undefined && Number.isNaN(this.phase.firstStart) && !this.dead.has(mark.member)) {
      if (mark.kind === "end") this.phase.lastStop = mark.at
      else this.phase.firstStart = mark.at
    }
    if (mark.kind === "end") {
      const o = this.open.get(mark.member)
      if (o !== undefined && o.epoch === mark.epoch) this.close(mark.member, mark.at)
    } else {
      this.close(mark.member, mark.at)
      if (this.options.checkGuarantees) this.check(mark)
      const c = this.cell(mark.epoch, mark.size)
      c.open++
      c.indices.set(mark.index, (c.indices.get(mark.index) ?? 0) + 1)
      c.members.add(mark.member)
      this.open.set(mark.member, mark)
      const first = this.firstStart.get(mark.epoch)
      if (first === undefined || mark.at < first) this.firstStart.set(mark.epoch, mark.at)
      if (!this.dead.has(mark.member)) {
        c.live++
        this.liveOpen++
      }
      this.maxStarted = Math.max(this.maxStarted, mark.epoch)
    }
    this.settle(mark.at)
  }

  private check(m: Mark) {
    if (this.confirmed.length > 100) return
    // A newer epoch had started before this start (by the marks' own times, not their arrival).
    // Only when one has started at all (as read so far): a start of the newest epoch, nearly every
    // start, stays O(1).
    let late = false
    if (m.epoch < this.maxStarted) for (const [e, at] of this.firstStart) {
      if (e > m.epoch && at <= m.at) {
        this.confirmed.push(`${m.member} started epoch ${m.epoch} ${fmt(m.at - at)} ms after epoch ${e} had started`)
        late = true
        break
      }
    }
    for (const [e, c] of this.epochs) {
      // A late start is counted once, above, not again for each newer member still working.
      if (e === m.epoch || c.open === 0 || (late && e > m.epoch)) continue
      for (const member of c.members) {
        const o = this.open.get(member)!
        this.overlaps.push(
          e < m.epoch
            // Older work still open: it must have ended by this start.
            ? {
              member,
              epoch: e,
              deadline: m.at,
              describe: (end) => `${m.member} started epoch ${m.epoch} while ${member} worked in epoch ${e} (${until(end, m.at)})`
            }
            // Newer work already open (its start was read first): this work must end by that start.
            : {
              member: m.member,
              epoch: m.epoch,
              deadline: o.at,
              describe: (end) => `${m.member} worked in epoch ${m.epoch} after ${member} started epoch ${e} (${until(end, o.at)})`
            }
        )
      }
    }
    const c = this.epochs.get(m.epoch)
    if (c !== undefined && c.indices.has(m.index)) this.confirmed.push(`index ${m.index} twice in epoch ${m.epoch}`)
    if (c !== undefined && c.size !== m.size) this.confirmed.push(`two sizes in epoch ${m.epoch}`)
    if (m.index < 0 || m.index >= m.size) this.confirmed.push(`index ${m.index} out of [0, ${m.size}) in epoch ${m.epoch}`)
  }

  /**
   * A crashed member: its marks no longer count towards the cover. `stopped`: its work ended now
   * (a killed process); otherwise its work is still open until its own end mark (a fiber member
   * that hangs keeps its work until it fences itself, G3: the checks then still apply to it).
   */
  kill(member: string, stopped: boolean) {
    if (this.dead.has(member)) return
    if (stopped) this.close(member, performance.now())
    this.dead.add(member)
    const o = this.open.get(member)
    if (o !== undefined) {
      this.epochs.get(o.epoch)!.live--
      this.liveOpen--
    }
  }

  /** Exact cover by `n` live members right now. */
  covered(n: number): boolean {
    if (this.liveOpen !== n) return false
    for (const c of this.epochs.values()) {
      if (c.live === n && c.size === n && c.open === n && c.indices.size === n && this.inRange(c, n)) return true
    }
    return false
  }

  private inRange(c: EpochCell, n: number): boolean {
    for (const i of c.indices.keys()) if (i < 0 || i >= n) return false
    return true
  }

  private settle(at: number) {
    if (this.waiters.length === 0) return
    const still: Array<Waiter> = []
    for (const w of this.waiters) {
      if (this.covered(w.n)) w.resolve(at)
      else still.push(w)
    }
    this.waiters = still
  }

  /** Resolves with the time of the mark that next completes an exact cover by `n` members. */
  next(n: number, timeoutMs: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done)
        reject(new Error(`no exact cover by ${n} members within ${timeoutMs} ms (live working: ${this.liveOpen})`))
      }, timeoutMs)
      const done = (at: number) => {
        clearTimeout(timer)
        resolve(at)
      }
      this.waiters.push({ n, resolve: done })
    })
  }

  /** Resolves at once if covered now, else like `next`. */
  when(n: number, timeoutMs: number): Promise<number> {
    return this.covered(n) ? Promise.resolve(performance.now()) : this.next(n, timeoutMs)
  }

  /** The newest epoch anyone works in. */
  get epoch(): number {
    return this.maxStarted
  }

  get working(): number {
    return this.liveOpen
  }
}

const fmt = (ms: number) => ms.toFixed(1)
const until = (end: number | undefined, deadline: number) =>
  end === undefined ? "no end seen" : `it ended ${fmt(end - deadline)} ms after that start`
