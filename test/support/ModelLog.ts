/**
 * The model test's log: every member's work intervals and units of work, the leases as the store
 * granted them, and a readable trace. G1, G2 and G3 are checked as each entry is appended, so a
 * violation is reported at the instant it happens (the Recorder idea, extended to units of work,
 * leases and pauses).
 *
 * - G1: within an epoch, one size, and each index held by one member (and each member by one index),
 *   in range; whether learnt from the store's replies or from started work.
 * - G2: no work (start or unit) in an epoch older than one already worked in, and no start while an
 *   older epoch's interval is open.
 * - G3: a member works (starts, does a unit, is still working) only before its lease expires by the
 *   store's clock. Intervals of a member that was paused (SIGSTOP) are exempt: a stopped process
 *   does nothing; what counts is that it does no unit of stale work after it continues. So are those
 *   of work that will not stop while its member cannot renew (a hang, an outage): no protocol can
 *   stop such work before the lease runs out. Work that will not stop is otherwise held to G2 and
 *   G3 like any other: its member must keep its lease and hold the barrier until it stops.
 */

export interface Interval {
  readonly member: string
  readonly memberId: string
  readonly epoch: number
  readonly index: number
  readonly size: number
  readonly start: number
  /** The member was paused while this interval was open: only its units are checked. */
  tainted: boolean
}

interface Lease {
  expiry: number
  present: boolean
}

interface EpochInfo {
  size: number
  readonly byIndex: Map<number, string>
  readonly byMember: Map<string, number>
}

const fmt = (t: number) => {
  const s = (Math.round(t * 1000) / 1000).toFixed(t % 1 === 0 ? 0 : 3)
  return `${s.padStart(6)}ms`
}

export class ModelLog {
  readonly trace: Array<string> = []
  readonly violations: Array<string> = []
  readonly open = new Map<string, Interval>()
  /** memberId -> label, for the store's events. */
  readonly labels = new Map<string, string>()
  private readonly leases = new Map<string, Lease>()
  private readonly epochs = new Map<number, EpochInfo>()
  private maxWorked = 0
  starts = 0
  units = 0
  /** Length of the trace when the first violation was noted. */
  firstViolationLine: number | undefined = undefined

  /** `tracing` off skips the trace (a run replays exactly, so a failure is re-run with it on). */
  constructor(readonly now: () => number, readonly tracing = true, readonly traceLimit = 5000) {}

  note(text: string): void {
    if (!this.tracing) return
    if (this.trace.length < this.traceLimit) this.trace.push(`${fmt(this.now())}  ${text}`)
    else if (this.trace.length === this.traceLimit) this.trace.push("... (trace truncated)")
  }

  private readonly seen = new Set<string>()

  /**
   * Static membership: whether two labels are incarnations of one instance (`m3`, `m3#2`): a takeover
   * gives the new one the old one's seat in the same epoch (never while both work: see `start`).
   */
  sameInstance: (a: string, b: string) => boolean = () => false

  violation(rule: string, text: string): void {
    const v = `${rule} at ${fmt(this.now()).trim()}: ${text}`
    // The same violation again (a renewal every heartbeat...) is noted once.
    if (this.seen.has(`${rule}: ${text}`)) return
    this.seen.add(`${rule}: ${text}`)
    this.violations.push(v)
    this.note(`!!! ${v}`)
    if (this.firstViolationLine === undefined) this.firstViolationLine = this.trace.length
  }

  // --- G1: one assignment per epoch -------------------------------------------------------------

  /** Records that `member` holds `index` of `size` in `epoch` (a reply of the store, or started work). */
  seat(member: string, epoch: number, index: number, size: number, source: string): void {
    let e = this.epochs.get(epoch)
    if (e === undefined) {
      e = { size, byIndex: new Map(), byMember: new Map() }
      this.epochs.set(epoch, e)
    }
    if (e.size !== size) this.violation("G1", `epoch ${epoch} has two sizes, ${e.size} and ${size} (${source} of ${member})`)
    if (index < 0 || index >= size) this.violation("G1", `${member} holds index ${index} outside [0, ${size}) in epoch ${epoch}`)
    const holder = e.byIndex.get(index)
    if (holder !== undefined && holder !== member && !this.sameInstance(holder, member)) {
      this.violation("G1", `index ${index} of epoch ${epoch} held by ${holder} and ${member} (${source})`)
    }
    const had = e.byMember.get(member)
    if (had !== undefined && had !== index) {
      this.violation("G1", `${member} holds two indices in epoch ${epoch}: ${had} and ${index} (${source})`)
    }
    e.byIndex.set(index, member)
    e.byMember.set(member, index)
  }

  // --- the store's side: leases by the store's clock -----------------------------------------

  /** A join or renewal committed at the store's `now`: the lease now lasts until `expiry`. */
  leased(memberId: string, expiry: number): void {
    this.leases.set(memberId, { expiry, present: true })
  }

  /** The member's row is gone (its own leave, or found expired). */
  unleased(memberId: string): void {
    const l = this.leases.get(memberId)
    if (l !== undefined) l.present = false
  }

  private checkLease(i: Interval, what: string, strictPresent: boolean): void {
    const l = this.leases.get(i.memberId)
    const t = this.now()
    if (l === undefined) {
      this.violation("G3", `${i.member} ${what} in epoch ${i.epoch} without ever holding a lease`)
    } else if (t >= l.expiry) {
      this.violation("G3", `${i.member} ${what} in epoch ${i.epoch} at or after its lease expired at ${fmt(l.expiry).trim()} (store clock)`)
    } else if (strictPresent && !l.present) {
      this.violation("G3", `${i.member} ${what} in epoch ${i.epoch} after its row was deleted`)
    }
  }

  // --- work ---------------------------------------------------------------------------------

  start(member: string, memberId: string, epoch: number, index: number, size: number): void {
    const i: Interval = { member, memberId, epoch, index, size, start: this.now(), tainted: false }
    this.starts++
    this.note(`${member} starts work: epoch ${epoch} index ${index}/${size}`)
    if (this.open.has(member)) this.violation("G2", `${member} starts epoch ${epoch} while its own work is open`)
    if (epoch < this.maxWorked) this.violation("G2", `${member} starts epoch ${epoch} after epoch ${this.maxWorked} was worked in`)
    for (const o of this.open.values()) {
      if (o.tainted) continue
      if (o.epoch < epoch) this.violation("G2", `${member} starts epoch ${epoch} while ${o.member} still works in epoch ${o.epoch}`)
      if (o.epoch === epoch && o.index === index) {
        this.violation("G1", `${member} and ${o.member} work index ${index} of epoch ${epoch} at once`)
      }
    }
    this.seat(member, epoch, index, size, "start")
    this.checkLease(i, "starts work", true)
    this.maxWorked = Math.max(this.maxWorked, epoch)
    this.open.set(member, i)
  }

  end(member: string): void {
    const i = this.open.get(member)
    if (i === undefined) return
    this.open.delete(member)
    this.note(`${member} stops work: epoch ${i.epoch}${i.tainted ? " (was paused)" : ""}`)
    if (!i.tainted) this.checkLease(i, "was still working", false)
  }

  /** A unit of work under `epoch`, done after `guard` succeeded (reported as `guardEpoch`). */
  unit(member: string, epoch: number, guardEpoch: number): void {
    const i = this.open.get(member)
    this.units++
    if (i === undefined) {
      this.violation("G2", `${member} did a unit of work in epoch ${epoch} outside any work interval`)
      return
    }
    if (guardEpoch !== epoch) {
      this.violation("G2", `${member}'s work for epoch ${epoch} passed the guard of epoch ${guardEpoch}`)
    }
    if (epoch < this.maxWorked) {
      this.violation("G2", `${member} did a unit of work in epoch ${epoch} after epoch ${this.maxWorked} was worked in`)
    }
    this.checkLease(i, "did a unit of work", true)
  }

  /** The member's process is paused: its open interval is exempt from the interval checks. */
  paused(member: string): void {
    this.taint(member, "paused")
  }

  /**
   * The member's open interval is exempt from the interval checks (its units are still checked):
   * its process was paused, or its work will not stop while its renewals cannot succeed (a hang,
   * an outage), so its lease may lapse against its will and nothing can stop the work in time.
   */
  taint(member: string, why: string): void {
    const i = this.open.get(member)
    if (i !== undefined && !i.tainted) {
      i.tainted = true
      this.note(`${member}'s open work is exempt from the interval checks from now on (${why})`)
    }
  }

  /** Members working now. */
  working(): ReadonlyArray<Interval> {
    return [...this.open.values()]
  }
}
