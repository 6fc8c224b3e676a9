/**
 * `modulo-group demo --slots 64` as users run it (the built CLI, real member processes, the test
 * database): every item processed exactly once through all five faults in slots mode, no slot's
 * work overlapping its next holder's, and per change a plausible pause report (only the slots that
 * must move pause; members that give no slot up do not pause). Plus the pause computation's pure parts.
 */
import { beforeAll, describe, expect, it, onTestFailed } from "vitest"
import { faultKinds } from "../../cli/src/demo/faults.js"
import { pausesPerChange, type SlotEvent } from "../../cli/src/demo/pauses.js"
import type { Summary } from "../../cli/src/demo/render.js"
import { slotsSettled } from "../../cli/src/demo/supervisor.js"
import { databaseUrl } from "../support/Database.js"
import { assertBuilt, run } from "./support.js"

const S = 64

describe("modulo-group demo --slots (child processes)", () => {
  beforeAll(assertBuilt)

  it("drains the ledger through all five faults: no duplicates, nothing missing, pauses per change", async () => {
    const env = { ...process.env, DATABASE_URL: databaseUrl() }
    const result = await run(["demo", "--json", "--slots", String(S), "--items", "2000", "--drain-time", "12s"], env, 100_000)
    const lines = result.stdout.trim().split("\n")
    expect(lines).toHaveLength(1)
    const summary = JSON.parse(lines.at(-1)!) as Summary
    console.log(
      `[cli demo --slots ${S}] ${summary.items} items in ${summary.durationMs} ms; stale refused ${summary.staleRejected}; ` +
        summary.changes.map((c) =>
          `${c.kind} ${c.convergedMs} ms: ${c.pauses?.slots} slots paused, max ${c.pauses?.maxMs} ms, total ${c.pauses?.totalMs} slot-ms` +
          (c.pauses?.fencedSlots ? ` (and ${c.pauses.fencedSlots} by a self-fence of ${c.pauses.fenced.join(", ")})` : "")
        ).join("; ")
    )
    // The demo's own account (e.g. a member that fenced itself) on any failure, not only a non-zero exit.
    onTestFailed(() => console.log(result.stderr))

    expect(summary).toMatchObject({ ok: true, items: 2000, once: 2000, duplicates: 0, missing: 0, slots: S, slotOverlaps: 0 })
    expect(summary.slotHandoffs).toBeGreaterThan(0)
    expect(summary.changes.map((c) => c.kind)).toEqual([...faultKinds])
    const lease = summary.settings.leaseMs
    for (const c of summary.changes) {
      expect(c.convergedMs, `${c.kind} converged`).not.toBeNull()
      const p = c.pauses!
      expect(p, `${c.kind} has a pause report`).toBeDefined()
      // The change moved slots, and no more than a balanced reassignment must: ceil(S/N)+1 for the
      // larger of the group sizes before and after (a join or a rejoin: the size after).
      const larger = c.kind === "join" || c.kind === "sigcont" ? c.size : c.size + 1
      expect(p.slots, `${c.kind} paused slots`).toBeGreaterThan(0)
      expect(p.slots, `${c.kind} paused slots`).toBeLessThanOrEqual(Math.ceil(S / larger) + 1)
      expect(p.unfinished, `${c.kind}: every paused slot resumed`).toBe(0)
      expect(p.maxMs).toBeGreaterThan(0)
      expect(p.totalMs).toBeGreaterThanOrEqual(p.maxMs)
      expect(p.totalMs).toBeLessThanOrEqual(p.slots * p.maxMs)
      // The slots that did not move went on.
      expect(p.kept, `${c.kind} slots that went on`).toBeGreaterThanOrEqual(S - Math.ceil(S / larger) - 1)
    }
    const [join, sigterm, sigkill, sigstop] = summary.changes
    // A join: the newcomer stops nothing; the handoffs wait for releases, not for a lease.
    expect(join!.pauses!.stopped).not.toContain(join!.member)
    expect(join!.pauses!.maxMs).toBeLessThan(lease)
    // A leave, a crash, a freeze: only the departed member's slots stop; every other member goes on.
    for (const c of [sigterm!, sigkill!, sigstop!]) {
      expect(c.pauses!.stopped, `${c.kind}: who stopped`).toEqual([c.member])
      expect(c.pauses!.unpaused, `${c.kind}: who did not pause`).toHaveLength(c.size)
      expect(c.pauses!.unpaused).not.toContain(c.member)
    }
    // A graceful leave hands over at once; a crash or a freeze only after the lease.
    expect(sigterm!.pauses!.maxMs).toBeLessThan(lease)
    expect(sigkill!.pauses!.maxMs).toBeGreaterThan(lease / 2)
    expect(sigstop!.pauses!.maxMs).toBeGreaterThan(lease / 2)
    expect(result.code).toBe(0)
  }, 100_000)
})

describe("Demo --slots: pure parts", () => {
  const ev = (member: string, slot: number, action: "start" | "stop", at: number, generation?: number): SlotEvent => ({
    member,
    slot,
    action,
    at,
    generation
  })

  it("measures a handoff's pause from the giver's stop to the taker's start, in the change it began in", () => {
    const events = [
      ev("a", 0, "start", 0),
      ev("a", 1, "start", 0),
      ev("b", 2, "start", 0),
      ev("a", 1, "stop", 110),
      ev("c", 1, "start", 150),
      // A second change: b is killed at 300 and prints nothing; a takes slot 2 at 900.
      ev("a", 2, "start", 900)
    ]
    const [first, second] = pausesPerChange(events, [{ member: "b", at: 300 }], [{ from: 100, to: 300 }, { from: 300, to: 1000 }], 1000)
    expect(first).toEqual({ slots: 1, kept: 2, maxMs: 40, totalMs: 40, unfinished: 0, stopped: ["a"], unpaused: ["b"], fencedSlots: 0, fenced: [] })
    expect(second).toEqual({ slots: 1, kept: 2, maxMs: 600, totalMs: 600, unfinished: 0, stopped: ["b"], unpaused: ["a", "c"], fencedSlots: 0, fenced: [] })
  })

  it("counts a member's self-fence inside a change's window apart from the change's own pauses", () => {
    const events = [
      ev("a", 0, "start", 0, 1),
      ev("a", 1, "start", 0, 1),
      ev("b", 2, "start", 0, 1),
      ev("b", 3, "start", 0, 1),
      // The change (at 100): a gives slot 1 to c (a new generation).
      ev("a", 1, "stop", 110, 1),
      ev("c", 1, "start", 150, 2),
      // b fences itself at 400 (a late renewal), stops both its slots, renews and starts them again
      // under the same generations: the slots never changed hands.
      ev("b", 2, "stop", 405, 1),
      ev("b", 3, "stop", 405, 1),
      ev("b", 2, "start", 480, 1),
      ev("b", 3, "start", 480, 1)
    ]
    // b said it fenced itself a few ms after its stop lines.
    const [change] = pausesPerChange(events, [], [{ from: 100, to: 1000 }], 1000, [{ member: "b", at: 409 }])
    expect(change).toEqual({ slots: 1, kept: 3, maxMs: 40, totalMs: 40, unfinished: 0, stopped: ["a"], unpaused: ["b"], fencedSlots: 2, fenced: ["b"] })
    // Without a `fenced` line, the same pauses are the change's: a member that paused slots it kept.
    const [unsaid] = pausesPerChange(events, [], [{ from: 100, to: 1000 }], 1000)
    expect(unsaid).toEqual({ slots: 3, kept: 1, maxMs: 75, totalMs: 190, unfinished: 0, stopped: ["a", "b"], unpaused: [], fencedSlots: 0, fenced: [] })
    // A `fenced` line long before the stop (another fence) does not excuse it either.
    const [earlier] = pausesPerChange(events, [], [{ from: 100, to: 1000 }], 1000, [{ member: "b", at: -2_000 }])
    expect(earlier.slots).toBe(3)
  })

  it("ends a frozen member's work at the freeze, whatever it prints after it resumes; counts an unfinished pause", () => {
    const events = [
      ev("a", 0, "start", 0),
      ev("b", 1, "start", 0),
      // b frozen at 200; a takes slot 1 at 500; b resumes and prints its stop at 700.
      ev("a", 1, "start", 500),
      ev("b", 1, "stop", 700),
      // a stops slot 0 at 800 and nobody takes it before the end.
      ev("a", 0, "stop", 800)
    ]
    const [freeze, later] = pausesPerChange(events, [{ member: "b", at: 200 }], [{ from: 200, to: 750 }, { from: 750, to: 1000 }], 1000)
    expect(freeze).toMatchObject({ slots: 1, maxMs: 300, unfinished: 0, stopped: ["b"], unpaused: ["a"] })
    expect(later).toMatchObject({ slots: 1, maxMs: 200, unfinished: 1, stopped: ["a"] })
  })

  it("calls slots settled only when the live members work every slot once, evenly", () => {
    const m = (...slots: Array<number>) => ({ slots: new Set(slots) })
    expect(slotsSettled([m(0, 1), m(2, 3)], 4)).toBe(true)
    expect(slotsSettled([m(0, 1, 2), m(3, 4)], 5)).toBe(true)
    expect(slotsSettled([m(0, 1, 2), m(3)], 4)).toBe(false) // uneven
    expect(slotsSettled([m(0, 1), m(1, 3)], 4)).toBe(false) // slot 1 twice, slot 2 nobody's
    expect(slotsSettled([m(0, 1), m(2)], 4)).toBe(false) // slot 3 nobody's
    expect(slotsSettled([], 4)).toBe(false)
  })
})
