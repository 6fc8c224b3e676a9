/**
 * The chaos monitor (chaos/monitor.mjs) is not vacuous: fed made-up lines, it finds an overlap
 * across epochs, a duplicate index, a stale work line and a slow reconvergence, and it accepts the
 * legitimate cases (a stopped member's tenure ends at the stop; one unit in flight at the stop).
 * A duplicate start, the same (epoch, index) started by two members, is a G1 violation even when the
 * two tenures never overlap in time; it is found in an event log replayed from JSON Lines too. A
 * member told to leave that never prints `left` breaks G5.
 */
import { describe, expect, it } from "vitest"
import { converged, duplicateStarts, Monitor } from "../../chaos/monitor.mjs"

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
  it("static membership: incarnations of one instance id hold one (epoch, index) one after the other, never at once", () => {
    const run = (overlap: boolean) => {
      const m = new Monitor({ heartbeatMs: 500, leaseMs: 3_000 })
      m.spawn("w0#1", 0, T0)
      const say = (label: string, ms: number, event: "state" | "work", state: string, epoch: number | null, index: number | null, size: number | null) =>
        m.line(label, JSON.stringify({ ts: new Date(T0 + ms).toISOString(), member: `id-${label}`, group: "g", event, state, epoch, index, size, instance: "w0" }))
      say("w0#1", 0, "state", "joining", null, null, null)
      say("w0#1", 100, "state", "assigned", 1, 0, 1)
      say("w0#1", 200, "work", "assigned", 1, 0, 1)
      if (!overlap) {
        m.term("w0#1", T0 + 250)
        say("w0#1", 251, "state", "leaving", null, null, null)
        say("w0#1", 300, "state", "left", null, null, null)
        m.exited("w0#1", T0 + 310, 0, null)
      }
      m.spawn("w0#2", 0, T0 + 400)
      say("w0#2", 900, "state", "joining", null, null, null)
      say("w0#2", 1_000, "state", "assigned", 1, 0, 1)
      say("w0#2", 1_100, "work", "assigned", 1, 0, 1)
      if (overlap) say("w0#1", 1_200, "work", "assigned", 1, 0, 1)
      return m.analyze(T0, T0 + 2_000)
    }
    const takeover = run(false)
    expect(takeover.g1.violations).toEqual([])
    expect(takeover.g1.duplicates).toEqual([])
    const twice = run(true)
    expect(twice.g1.violations.join()).toMatch(/index 0 worked by w0#1 .* and w0#2 .* at the same time/)
  })

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

  /**
   * a and b split epoch 1; a is sent SIGSTOP at 200 ms; b moves to epoch 2 alone at 3,400; a gets its
   * SIGCONT at 3,500 and fences itself at 3,510. `stopped` work lines of a's are stamped while it
   * is stopped (at the given ms), `afterCont` of them just after the SIGCONT.
   */
  const frozen = (stopped: Array<number>, afterCont: number) => {
    const { m, say, assigned, work, ended } = setup("a", "b")
    say("a", 0, "state", "joining")
    say("b", 0, "state", "joining")
    assigned("a", 100, 1, 0, 2)
    assigned("b", 100, 1, 1, 2)
    m.stop("a", T0 + 200)
    for (const ms of stopped) work("a", ms, 1, 0, 2)
    ended("b", 3_300, "renegotiating", 1, 1, 2)
    assigned("b", 3_400, 2, 0, 1)
    m.cont("a", T0 + 3_500)
    for (let i = 0; i < afterCont; i++) work("a", 3_501 + i, 1, 0, 2)
    ended("a", 3_510, "fenced", 1, 0, 2)
    return m.analyze(T0, T0 + 4_000)
  }

  it("a stopped member's tenure ends at the SIGSTOP; one unit in flight after SIGCONT is reported apart; two are an overlap", () => {
    const run = (linesAfterCont: number) => frozen([], linesAfterCont)
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

  it("a line stamped after the SIGSTOP's send time but before the SIGCONT was printed before the stop took effect: the tenure ends at that line", () => {
    // The runner reads the clock, then sends SIGSTOP; a loaded machine can run the member a few ms
    // more. Frozen, it prints nothing until the SIGCONT, then fences itself.
    const run = (lastLineMs: number) => frozen([lastLineMs], 0)
    // Before the fix, the line at 201 ms made the whole frozen stretch (to the fence at 3,510) work.
    const racing = run(201)
    expect(racing.g2.violations).toEqual([])
    expect(racing.g2.staleWork).toBe(0)
    // A line stamped while a later epoch already ran is real work in the overlap, stop or not.
    const late = run(3_450)
    expect(late.g2.violations.length).toBe(1)
    expect(late.g2.violations[0]!.detail).toMatch(/work lines after .*: 00:00:03\.450Z/)
  })

  it("a stop never continued: a line stamped just after the send time ends the tenure there, not at the end of the run", () => {
    const { m, say, assigned, work } = setup("a", "b")
    say("a", 0, "state", "joining")
    say("b", 0, "state", "joining")
    assigned("a", 100, 1, 0, 2)
    assigned("b", 100, 1, 1, 2)
    m.stop("a", T0 + 200)
    work("a", 201, 1, 0, 2)
    say("b", 3_300, "state", "renegotiating", 1, 1, 2)
    assigned("b", 3_400, 2, 0, 1)
    const r = m.analyze(T0, T0 + 4_000)
    expect(r.g2.violations).toEqual([])
    expect(r.g2.staleWork).toBe(0)
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

  describe("duplicate starts of an (epoch, index) (G1)", () => {
    /** An event log as a run's `--events` file has it: one JSON object per line, in time order. */
    const log = (rows: Array<[label: string, ms: number, event: "state" | "work", state: string, epoch?: number, index?: number, size?: number]>) =>
      rows.map(([label, ms, event, state, epoch = null, index = null, size = null]) =>
        JSON.stringify({
          at: T0 + ms,
          label,
          line: { ts: new Date(T0 + ms).toISOString(), member: `id-${label}`, group: "g", event, state, epoch, index, size }
        })
      ).join("\n")

    // a holds [0/2] of epoch 5 and fences itself (it could not renew); it has no work line after
    // that, b never overlaps it in time, and yet b starts [0/2] of the same epoch 5.
    const oneAfterTheOther = log([
      ["a", 0, "state", "joining"],
      ["b", 0, "state", "joining"],
      ["c", 0, "state", "joining"],
      ["a", 100, "state", "assigned", 5, 0, 2],
      ["c", 100, "state", "assigned", 5, 1, 2],
      ["a", 200, "work", "assigned", 5, 0, 2],
      ["a", 300, "state", "fenced", 5, 0, 2],
      ["b", 400, "state", "assigned", 5, 0, 2],
      ["b", 500, "work", "assigned", 5, 0, 2]
    ])

    it("a duplicate start with no overlap in time is flagged, with both lines as evidence", () => {
      const r = Monitor.replay(oneAfterTheOther).analyze(T0, T0 + 1_000)
      expect(r.g2.violations).toEqual([]) // one epoch only: G2 has nothing to say
      expect(r.g1.duplicates).toHaveLength(1)
      const d = r.g1.duplicates[0]!
      expect([d.epoch, d.index, d.overlapping]).toEqual([5, 0, false])
      expect(d.starts.map((s) => [s.label, s.member, s.at - T0])).toEqual([["a", "id-a", 100], ["b", "id-b", 400]])
      expect(r.g1.violations).toHaveLength(1)
      expect(r.g1.violations[0]).toMatch(/epoch 5: index 0 held by 2 members/)
      expect(r.g1.violations[0]).toContain("a (member id-a) assigned at 00:00:00.100")
      expect(r.g1.violations[0]).toContain("b (member id-b) assigned at 00:00:00.400")
      expect(r.g1.violations[0]).toMatch(/one after the other/)
    })

    it("overlapping duplicates, and a work line of a member never assigned there, are flagged too", () => {
      const r = Monitor.replay(log([
        ["a", 100, "state", "assigned", 2, 1, 3],
        ["b", 150, "state", "assigned", 2, 1, 3],
        ["a", 200, "work", "assigned", 2, 1, 3],
        ["c", 250, "work", "assigned", 2, 1, 3]
      ])).analyze(T0, T0 + 1_000)
      expect(r.g1.duplicates).toHaveLength(1)
      expect(r.g1.duplicates[0]!.overlapping).toBe(true)
      expect(r.g1.duplicates[0]!.starts.map((s) => [s.label, s.event])).toEqual([["a", "state"], ["b", "state"], ["c", "work"]])
      expect(r.g1.violations[0]).toMatch(/index 1 held by 3 members.*c \(member id-c\) worked at 00:00:00.250.*at the same time/)
      expect(r.order).toHaveLength(1) // c's work line outside an assignment
    })

    it("a clean log passes: one holder per (epoch, index); the same member assigned again after a fence is one holder", () => {
      const clean = log([
        ["a", 0, "state", "joining"],
        ["b", 0, "state", "joining"],
        ["a", 100, "state", "assigned", 1, 0, 2],
        ["b", 100, "state", "assigned", 1, 1, 2],
        ["a", 150, "work", "assigned", 1, 0, 2],
        // a fences itself, then renews in time and is assigned again in the same epoch.
        ["a", 200, "state", "fenced", 1, 0, 2],
        ["a", 250, "state", "assigned", 1, 0, 2],
        ["a", 300, "state", "renegotiating", 1, 0, 2],
        ["b", 300, "state", "renegotiating", 1, 1, 2],
        // index 0 leaves; b takes index 0 of the next epoch: a new (epoch, index), no duplicate.
        ["a", 320, "state", "leaving"],
        ["b", 400, "state", "assigned", 2, 0, 1],
        ["b", 450, "work", "assigned", 2, 0, 1],
        ["a", 420, "state", "left"]
      ])
      const m = Monitor.replay(clean)
      const r = m.analyze(T0, T0 + 1_000)
      expect(r.g1.duplicates).toEqual([])
      expect(r.g1.violations).toEqual([])
      expect(r.g2.violations).toEqual([])
      expect(r.order).toEqual([])
      // The same log through dump() and replay() again: still clean, same lines.
      const again = Monitor.replay(m.dump())
      expect(again.analyze(T0, T0 + 1_000).g1.violations).toEqual([])
      expect(duplicateStarts([...again.procs.values()])).toEqual([])
      expect(duplicateStarts([...Monitor.replay(oneAfterTheOther).procs.values()])).toHaveLength(1)
    })

    it("a restarted process under the same name is a different holder", () => {
      const { m, say, assigned } = setup("m0#1", "m0#2", "m1#1")
      say("m0#1", 0, "state", "joining")
      assigned("m0#1", 100, 3, 0, 2)
      assigned("m1#1", 100, 3, 1, 2)
      m.kill("m0#1", T0 + 200)
      // The restarted m0 (another process, another member id) must not get [0/2] of epoch 3.
      assigned("m0#2", 5_000, 3, 0, 2)
      const r = m.analyze(T0, T0 + 6_000)
      expect(r.g1.duplicates.map((d) => [d.epoch, d.index, d.starts.map((s) => s.label)])).toEqual([[3, 0, ["m0#1", "m0#2"]]])
    })
  })

  it("a member told to leave must print `left` before it exits (G5), unless the database was restarting", () => {
    const run = (left: boolean, restartAt?: number) => {
      const { m, say, assigned } = setup("a", "b")
      assigned("a", 100, 1, 0, 2)
      assigned("b", 100, 1, 1, 2)
      if (restartAt !== undefined) m.fault("restart", T0 + restartAt, 3_500, undefined, { stopMs: 200, startMs: 300 })
      m.term("b", T0 + 1_000)
      say("b", 1_001, "state", "leaving")
      if (left) say("b", 1_050, "state", "left")
      m.exited("b", T0 + 1_080, 0, null)
      // The shutdown of the runner (after the end of the observation) is not judged.
      m.term("a", T0 + 5_001)
      m.exited("a", T0 + 5_050, 0, null)
      return m.analyze(T0, T0 + 5_000).g5
    }
    expect(run(true)).toEqual({ leaves: 1, excused: 0, violations: [] })
    const missing = run(false)
    expect(missing.violations).toHaveLength(1)
    expect(missing.violations[0]).toMatch(/^b: SIGTERM at 00:00:01.000Z, exit at 00:00:01.080Z \(code 0, signal null\), no "left" line \(last state: leaving/)
    expect(run(false, 900)).toEqual({ leaves: 1, excused: 1, violations: [] })
  })
})
