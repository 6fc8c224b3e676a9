/**
 * The chaos monitor in slots mode (chaos/slots.mjs, `npm run chaos -- --slots S`) is not vacuous:
 * fed made-up lines of `join --slots S --json` processes, it finds (a) a slot in two members' sets at
 * once, (b) a slot left in no live member's set past the fault's bound, (c) unfair set sizes at a
 * quiet point, (d) a work line naming a slot another member took; and it accepts the legitimate
 * cases: a clean handoff (the giving line before the taking line), a leave (its tenures end at the
 * `leaving` line), a kill, and a member frozen past its lease whose stopping lines after the SIGCONT
 * name slots already taken (reported apart, as the modulo monitor's unit in flight).
 */
import { describe, expect, it } from "vitest"
import { convergedSlots, Monitor } from "../../chaos/monitor.mjs"

const T0 = Date.parse("2026-01-01T00:00:00.000Z")
const S = 4

/** A slots-mode monitor (S = 4) with processes `labels`; `set(label, ms, slots)` prints a work line with that set. */
const setup = (...labels: Array<string>) => {
  const m = new Monitor({ heartbeatMs: 500, leaseMs: 3_000, slots: S })
  labels.forEach((l, i) => m.spawn(l, i, T0))
  const line = (label: string, ms: number, event: "state" | "work", state: string, slots: Array<number>, epoch: number | null = 1) =>
    m.line(
      label,
      JSON.stringify({ ts: new Date(T0 + ms).toISOString(), member: `id-${label}`, group: "g", event, state, epoch, index: null, size: labels.length, instance: null, slots })
    )
  const state = (label: string, ms: number, s: string, slots: Array<number> = [], epoch: number | null = 1) => line(label, ms, "state", s, slots, epoch)
  const set = (label: string, ms: number, slots: Array<number>) => line(label, ms, "work", "assigned", slots)
  return { m, state, set }
}

/** Two members that split the four slots: a holds 0-1, b holds 2-3, from 100 ms. */
const formed = () => {
  const g = setup("a", "b")
  g.state("a", 0, "joining", [], null)
  g.state("b", 0, "joining", [], null)
  g.state("a", 50, "assigned")
  g.state("b", 50, "assigned")
  g.set("a", 100, [0, 1])
  g.set("b", 100, [2, 3])
  return g
}

describe("chaos monitor, slots mode", () => {
  it("converged: every live member assigned, every slot in exactly one set, sizes within one", () => {
    const st = { state: "assigned" }
    expect(convergedSlots([{ state: st, slots: [0, 1] }, { state: st, slots: [2, 3] }], 4).ok).toBe(true)
    expect(convergedSlots([{ state: st, slots: [0, 1, 2] }, { state: st, slots: [3] }], 4)).toMatchObject({ ok: false, exact: true, balanced: false })
    expect(convergedSlots([{ state: st, slots: [0, 1] }, { state: st, slots: [1, 2, 3] }], 4)).toMatchObject({ ok: false, covered: true, exact: false })
    expect(convergedSlots([{ state: st, slots: [0, 1] }, { state: st, slots: [2] }], 4)).toMatchObject({ ok: false, covered: false })
    expect(convergedSlots([{ state: { state: "fenced" }, slots: [0, 1] }, { state: st, slots: [2, 3] }], 4).ok).toBe(false)
    expect(convergedSlots([], 4).ok).toBe(false)
  })

  it("a clean join (giving lines before the taking line) passes, with its handoffs counted", () => {
    const { m, state, set } = setup("a", "b")
    state("a", 0, "joining", [], null)
    state("a", 50, "assigned")
    set("a", 100, [0, 1, 2, 3])
    set("a", 200, [0, 1, 2, 3])
    // b joins at 1000; a gives 2 and 3 (one line per slot stopped), then b takes them.
    state("b", 1_000, "joining", [], null)
    m.fault("join", T0 + 1_000, 4_000, "b")
    state("b", 1_050, "assigned", [], 2)
    set("a", 1_200, [0, 1, 3])
    set("a", 1_201, [0, 1])
    set("b", 1_300, [2, 3])
    set("a", 1_400, [0, 1])
    set("b", 1_400, [2, 3])
    const r = m.analyze(T0, T0 + 2_000)
    const s = r.slots!
    expect(s.overlaps.violations).toEqual([])
    expect(s.overlaps.staleWork).toBe(0)
    expect(s.timeline.unfair).toEqual([])
    expect(s.unowned).toEqual([expect.objectContaining({ kind: "join", withinBound: true, unownedMs: 300 })])
    expect(s.handoffs.total).toBe(2)
    expect(s.handoffsPerFault).toEqual([expect.objectContaining({ kind: "join", count: 2 })])
    expect(r.faults.list[0]!.withinBound).toBe(true)
    expect(r.order).toEqual([])
    // The modulo checks do not apply in slots mode (index null, the epoch is no barrier).
    expect(r.g1.violations).toEqual([])
    expect(r.g2.violations).toEqual([])
  })

  it("(a) a slot taken before its giving line is an overlap, with both tenures named", () => {
    const { m, set } = formed()
    set("b", 1_000, [1, 2, 3]) // takes slot 1 ...
    set("a", 1_100, [0]) // ... before a gave it
    const s = m.analyze(T0, T0 + 2_000).slots!
    expect(s.overlaps.violations).toHaveLength(1)
    expect(s.overlaps.violations[0]).toMatchObject({ slot: 1, labels: ["a", "b"], overlapMs: 100 })
    expect(s.overlaps.violations[0]!.detail).toMatch(/slot 1: a from 00:00:00.100Z until 00:00:01.100Z .*b from 00:00:01.000Z/)
  })

  it("(d) a work line naming a slot after another member took it is stale work (and an overlap)", () => {
    const { m, set } = formed()
    set("a", 1_000, [0]) // a gives 1
    set("b", 1_100, [1, 2, 3]) // b takes it
    set("a", 1_200, [0, 1]) // a works 1 again without holding it
    set("a", 1_300, [0])
    const s = m.analyze(T0, T0 + 2_000).slots!
    expect(s.overlaps.staleWork).toBe(0) // a's second tenure of slot 1 is a tenure, not a stale line ...
    expect(s.overlaps.violations.map((v) => v.slot)).toEqual([1]) // ... that overlaps b's

    const g = formed()
    g.set("a", 1_000, [0, 1])
    g.set("b", 1_100, [1, 2, 3]) // b takes 1 while a still works it
    g.set("a", 1_200, [0, 1]) // a's work line of slot 1 after b's start
    g.set("a", 1_300, [0])
    const t = g.m.analyze(T0, T0 + 2_000).slots!
    expect(t.overlaps.staleWork).toBe(1)
    expect(t.overlaps.violations.map((v) => v.slot)).toEqual([1])
  })

  it("a leave's tenures end at its `leaving` line; a kill's at the kill", () => {
    const { m, state, set } = formed()
    m.term("a", T0 + 1_000)
    m.fault("leave", T0 + 1_000, 4_000, "a")
    state("a", 1_001, "leaving", [0, 1])
    set("b", 1_050, [0, 1, 2, 3])
    state("a", 1_100, "left", [], null)
    m.exited("a", T0 + 1_110, 0, null)
    const s = m.analyze(T0, T0 + 2_000).slots!
    expect(s.overlaps.violations).toEqual([])
    expect(s.unowned[0]).toMatchObject({ kind: "leave", unownedMs: 50, withinBound: true })

    const k = formed()
    k.m.kill("b", T0 + 1_000)
    k.m.fault("kill", T0 + 1_000, 4_000, "b")
    k.set("b", 1_000, [2, 3]) // printed in the millisecond of the kill
    k.set("a", 4_200, [0, 1, 2, 3])
    const r = k.m.analyze(T0, T0 + 5_000).slots!
    expect(r.overlaps.violations).toEqual([])
    expect(r.unowned[0]).toMatchObject({ kind: "kill", unownedMs: 3_200, withinBound: true })
  })

  it("a frozen member: its tenures end at the SIGSTOP; one due tick and its stop lines after the SIGCONT are in flight; a second tick is an overlap", () => {
    const run = (ticks: number) => {
      const { m, state, set } = formed()
      m.stop("a", T0 + 1_000)
      m.fault("sigstop", T0 + 1_000, 4_000, "a")
      set("b", 4_300, [0, 1, 2, 3]) // a's lease ran out, it was reaped, b took its slots
      m.cont("a", T0 + 4_500)
      m.fault("sigcont", T0 + 4_500, 4_000, "a")
      let at = 4_501
      for (let i = 0; i < ticks; i++) set("a", at++, [0, 1]) // work ticks that were due
      set("a", at++, [1]) // the fence stops slot 0 ...
      set("a", at++, []) // ... and slot 1
      state("a", at++, "fenced", [])
      state("a", 4_600, "lost", [], null)
      return m.analyze(T0, T0 + 5_000).slots!
    }
    const zero = run(0)
    expect(zero.overlaps.violations).toEqual([])
    expect(zero.overlaps.inFlightStale.length).toBe(1) // the stop line of slot 0 still names slot 1, which b had taken
    const one = run(1)
    expect(one.overlaps.violations).toEqual([])
    expect(one.overlaps.staleWork).toBe(0)
    const two = run(2)
    expect(two.overlaps.violations.map((v) => v.slot).sort()).toEqual([0, 1])
    expect(two.overlaps.staleWork).toBeGreaterThan(0)
  })

  it("a frozen member's line stamped after the SIGSTOP's send time but before the SIGCONT was printed before the stop took effect", () => {
    const run = (lastLineMs: number) => {
      const { m, state, set } = formed()
      m.stop("a", T0 + 1_000)
      m.fault("sigstop", T0 + 1_000, 4_000, "a")
      set("a", lastLineMs, [0, 1]) // a work tick the runner's clock read preceded, the signal did not
      set("b", 4_300, [0, 1, 2, 3])
      m.cont("a", T0 + 4_500)
      m.fault("sigcont", T0 + 4_500, 4_000, "a")
      set("a", 4_501, [1])
      set("a", 4_502, [])
      state("a", 4_503, "fenced", [])
      return m.analyze(T0, T0 + 5_000).slots!
    }
    // Before the fix, the line at 1,001 ms made the frozen stretch up to the fence a tenure.
    expect(run(1_001).overlaps.violations).toEqual([])
    // Stamped after b took the slots: real work in the overlap.
    expect(run(4_400).overlaps.violations.map((v) => v.slot).sort()).toEqual([0, 1])
  })

  it("(b) a slot left in no live member's set past the fault's bound is found; within it, not", () => {
    const run = (takenAt: number) => {
      const { m, set } = formed()
      m.kill("b", T0 + 1_000)
      m.fault("kill", T0 + 1_000, 4_000, "b")
      set("a", takenAt, [0, 1, 2])
      set("a", takenAt + 10, [0, 1, 2, 3])
      m.fault("term-backend", T0 + 8_000, 4_000)
      return m.analyze(T0, T0 + 9_000)
    }
    const late = run(6_000)
    expect(late.slots!.unowned[0]).toMatchObject({ kind: "kill", unownedMs: 5_010, boundMs: 4_000, withinBound: false })
    expect(late.faults.list[0]!.withinBound).toBe(false)
    const soon = run(3_900)
    expect(soon.slots!.unowned[0]).toMatchObject({ kind: "kill", unownedMs: 2_910, withinBound: true })
    expect(soon.slots!.unowned[1]).toMatchObject({ kind: "term-backend", unownedMs: 0, withinBound: true })

    // Still unowned when the next fault comes: not owned again in time, though within the bound so far.
    const g = formed()
    g.m.kill("b", T0 + 1_000)
    g.m.fault("kill", T0 + 1_000, 4_000, "b")
    g.m.fault("term-backend", T0 + 2_000, 4_000)
    g.set("a", 2_500, [0, 1, 2, 3])
    const cut = g.m.analyze(T0, T0 + 3_000).slots!
    expect(cut.unowned[0]).toMatchObject({ kind: "kill", unownedMs: 1_500, unfinished: true, withinBound: false })
    expect(cut.unowned[1]).toMatchObject({ kind: "term-backend", unownedMs: 500, unfinished: false, withinBound: true })
  })

  it("(c) set sizes that differ by more than one at a quiet point are unfair; a balanced group is not", () => {
    const run = (aSlots: Array<number>, bSlots: Array<number>) => {
      const { m, set } = formed()
      set("a", 1_000, aSlots)
      set("b", 1_000, bSlots)
      m.fault("term-backend", T0 + 2_000, 4_000)
      return m.analyze(T0, T0 + 3_000).slots!
    }
    const unfair = run([0, 1, 2], [3])
    expect(unfair.overlaps.violations).toEqual([]) // (b gave 2 at 1000 too: same millisecond)
    expect(unfair.timeline.unfair.length).toBe(2) // at the fault and at the end
    expect(unfair.timeline.unfair[0]!.sizes).toEqual({ a: 3, b: 1 })
    expect(unfair.timeline.unfair[0]!.detail).toMatch(/a 3, b 1 \(differ by 2\)/)
    const fair = run([0, 1], [2, 3])
    expect(fair.timeline.unfair).toEqual([])
  })

  it("a replayed event log of a slots-mode run is judged the same", () => {
    const { m, set } = formed()
    set("b", 1_000, [1, 2, 3])
    set("a", 1_100, [0])
    const again = Monitor.replay(m.dump(), { heartbeatMs: 500, leaseMs: 3_000, slots: S })
    expect(again.analyze(T0, T0 + 2_000).slots!.overlaps.violations.map((v) => v.slot)).toEqual([1])
  })
})
