/**
 * The chaos monitor (chaos/monitor.mjs) is not vacuous: fed made-up lines, it finds an overlap
 * across epochs, a duplicate index, a stale work line and a slow reconvergence, and it accepts the
 * legitimate cases (a stopped member's tenure ends at the stop; one unit in flight at the stop).
 */
import { describe, expect, it } from "vitest"
import { converged, Monitor } from "../../chaos/monitor.mjs"

const T0 = Date.parse("2026-01-01T00:00:00.000Z")

/** A monitor with processes `labels`; `say(label, ms, state, epoch?, index?, size?)` prints a line. */
const setup = (...labels: Array<string>) => {
  const m = new Monitor({ heartbeatMs: 500, leaseMs: 3_000 })
  labels.forEach((l, i) => m.spawn(l, i, T0))
  const say = (label: string, ms: number, event: "state" | "work", state: string, epoch: number | null = null, index: number | null = null, size: number | null = null) =>
    m.line(label, JSON.stringify({ ts: new Date(T0 + ms).toISOString(), member: `id-${label}`, group: "g", event, state, epoch, index, size }))
  const assigned = (label: string, ms: number, epoch: number, index: number, size: number) => say(label, ms, "state", "assigned", epoch, index, size)
  const work = (label: string, ms: number, epoch: number, index: number, size: number) => say(label, ms, "work", "assigned", epoch, index, size)
  const ended = (label: string, ms: number, state: string, epoch: number, index: number, size: number) => say(label, ms, "state", state, epoch, index, size)
  return { m, say, assigned, work, ended }
}

describe("chaos monitor", () => {
  it("converged: one epoch, size = live members, indices exactly 0..N-1", () => {
    const s = (epoch: number, index: number, size: number) => ({ state: "assigned", epoch, index, size })
    expect(converged([s(3, 0, 2), s(3, 1, 2)]).ok).toBe(true)
    expect(converged([s(3, 0, 2), s(4, 1, 2)]).ok).toBe(false)
    expect(converged([s(3, 0, 3), s(3, 1, 3)]).ok).toBe(false)
    expect(converged([s(3, 0, 2), s(3, 0, 2)]).ok).toBe(false)
    expect(converged([s(3, 0, 2), undefined]).ok).toBe(false)
  })

  it("a clean handover passes; an overlap across epochs, a stale work line and a duplicate index are found", () => {
    const clean = setup("a", "b")
    clean.say("a", 0, "state", "joining")
    clean.say("b", 0, "state", "joining")
    clean.assigned("a", 100, 1, 0, 2)
    clean.assigned("b", 100, 1, 1, 2)
    clean.work("a", 200, 1, 0, 2)
    clean.ended("a", 300, "renegotiating", 1, 0, 2)
    clean.ended("b", 310, "renegotiating", 1, 1, 2)
    clean.assigned("a", 400, 2, 1, 2)
    clean.assigned("b", 400, 2, 0, 2)
    const ok = clean.m.analyze(T0, T0 + 1_000)
    expect(ok.g2.violations).toEqual([])
    expect(ok.g1.violations).toEqual([])

    const bad = setup("a", "b")
    bad.say("a", 0, "state", "joining")
    bad.say("b", 0, "state", "joining")
    bad.assigned("a", 100, 1, 0, 2)
    bad.assigned("b", 100, 1, 0, 2) // the same index
    bad.assigned("b", 100, 2, 0, 1) // (a second open tenure: an order problem)
    bad.work("a", 500, 1, 0, 2) // epoch 1 still worked after epoch 2 started
    bad.ended("a", 600, "renegotiating", 1, 0, 2)
    const found = bad.m.analyze(T0, T0 + 1_000)
    expect(found.g1.violations.join()).toMatch(/index 0 held by/)
    expect(found.g2.violations.length).toBeGreaterThan(0)
    expect(found.g2.staleWork).toBe(1)
  })

  it("a stopped member's tenure ends at the SIGSTOP; one unit in flight after SIGCONT is reported apart; two are an overlap", () => {
    const run = (linesAfterCont: number) => {
      const { m, say, assigned, work, ended } = setup("a", "b")
      say("a", 0, "state", "joining")
      say("b", 0, "state", "joining")
      assigned("a", 100, 1, 0, 2)
      assigned("b", 100, 1, 1, 2)
      m.stop("a", T0 + 200)
      ended("b", 3_300, "renegotiating", 1, 1, 2)
      assigned("b", 3_400, 2, 0, 1)
      m.cont("a", T0 + 3_500)
      for (let i = 0; i < linesAfterCont; i++) work("a", 3_501 + i, 1, 0, 2)
      ended("a", 3_510, "fenced", 1, 0, 2)
      return m.analyze(T0, T0 + 4_000)
    }
    const none = run(0)
    expect(none.g2.violations).toEqual([])
    const one = run(1)
    expect(one.g2.violations).toEqual([])
    expect(one.g2.staleWork).toBe(0)
    expect(one.g2.inFlightStale.length).toBe(1)
    const two = run(2)
    expect(two.g2.violations.length).toBe(1)
    expect(two.g2.staleWork).toBe(1)
  })

  it("a fault whose group does not reconverge within its bound is over bound", () => {
    const { m, say, assigned } = setup("a", "b")
    say("a", 0, "state", "joining")
    say("b", 0, "state", "joining")
    assigned("a", 100, 1, 0, 2)
    assigned("b", 100, 1, 1, 2)
    m.kill("b", T0 + 1_000)
    m.fault("kill", T0 + 1_000, 4_000, "b")
    say("a", 6_000, "state", "renegotiating", 1, 0, 2)
    assigned("a", 6_100, 2, 0, 1)
    const r = m.analyze(T0, T0 + 8_000)
    expect(r.faults.list).toHaveLength(1)
    expect(r.faults.list[0]!.reconvergedMs).toBe(5_100)
    expect(r.faults.list[0]!.withinBound).toBe(false)
    expect(r.faults.list[0]!.unfinished).toBe(false)
    // Converged in the very millisecond the observation ends: finished, not open.
    expect(m.analyze(T0, T0 + 6_100).faults.list[0]!.unfinished).toBe(false)
    // Not converged when it ends: unfinished.
    expect(m.analyze(T0, T0 + 5_000).faults.list[0]!.unfinished).toBe(true)
    // The runner's shutdown is stamped after the end (chaos/runner.mjs), even when it starts in the
    // millisecond of the last line: the run still ends converged.
    m.term("a", T0 + 6_101)
    expect(m.analyze(T0, T0 + 6_100).faults.list[0]!.unfinished).toBe(false)
  })
})
