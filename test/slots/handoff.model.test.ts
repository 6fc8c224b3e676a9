/**
 * A model check of the handoff protocol of docs/slots.md, before any of it is wired in: members
 * following the design's rules over the slot rows of `src/internal/slots/table.ts` (the statements'
 * pure twins), under random schedules of joins, leaves, crashes, hangs, fences, reaps, renewals that
 * read stale snapshots (a READ COMMITTED statement that waited on a lock, or any delay), stops that
 * take their time, releases that are delayed, duplicated, lost, or whose reply is lost, fenced
 * members that recover before their lease runs out.
 *
 * Checked after every step (safety, G2 and G6 per slot): no slot's work runs in two members at once;
 * a member whose work on slot s may be running (working or stopping) is, in the latest rows, s's
 * holder at the generation it works under (so its fenced transactions would commit). After the
 * schedule, once faults heal (hung members fence, the dead are reaped) and a few rounds of renewals,
 * stops and releases pass: every slot is worked by its owner, a live member, at its current
 * generation, and sizes differ by at most one.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import type { MemberId } from "../../src/internal/slots/assignment.js"
import * as Table from "../../src/internal/slots/table.js"

type Status = "running" | "hung" | "fenced" | "crashed" | "left"

interface Member {
  readonly id: MemberId
  status: Status
  /** Slot -> generation: work running; work asked to stop (may still run); stopped, not yet released. */
  readonly working: Map<number, number>
  readonly stopping: Map<number, number>
  readonly stopped: Map<number, number>
  /** Releases sent whose outcome this member does not know. */
  readonly inflight: Map<number, number>
  /** The oldest table a renewal of this member may read (reads are monotonic per member). */
  minIndex: number
}

interface ReleaseOp {
  readonly member: Member
  readonly pairs: ReadonlyArray<{ readonly slot: number; readonly generation: number }>
}

type Step =
  | { readonly _tag: "join" }
  | {
    readonly _tag: "leave" | "crash" | "hang" | "fence" | "recover" | "reap" | "stopDone" | "sendRelease"
    readonly who: number
  }
  | { readonly _tag: "renew"; readonly who: number; readonly stale: number }
  | { readonly _tag: "deliver" | "duplicate" | "drop"; readonly which: number; readonly replied: boolean }

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 2, arbitrary: fc.constant<Step>({ _tag: "join" }) },
  {
    weight: 6,
    arbitrary: fc.record({
      _tag: fc.constantFrom("leave", "crash", "hang", "fence", "recover", "reap", "stopDone", "stopDone", "sendRelease", "sendRelease"),
      who: fc.nat(3)
    }) as fc.Arbitrary<Step>
  },
  { weight: 8, arbitrary: fc.record({ _tag: fc.constant("renew" as const), who: fc.nat(3), stale: fc.oneof(fc.constant(0), fc.nat(4)) }) },
  {
    weight: 4,
    arbitrary: fc.record({ _tag: fc.constantFrom("deliver", "deliver", "duplicate", "drop"), which: fc.nat(3), replied: fc.boolean() }) as fc.Arbitrary<Step>
  }
)

class World {
  readonly history: Array<Table.SlotTable>
  live: Array<MemberId> = []
  readonly members: Array<Member> = []
  ops: Array<ReleaseOp> = []
  private fresh = 0

  constructor(readonly slots: number) {
    this.history = [Table.empty(slots)]
  }

  get latest(): Table.SlotTable {
    return this.history[this.history.length - 1]!
  }

  private write(table: Table.SlotTable): void {
    if (table !== this.latest) this.history.push(table)
  }

  private changeTo(live: Array<MemberId>): void {
    this.live = live
    this.write(Table.change(this.latest, live).table)
  }

  pick(who: number, ok: (m: Member) => boolean): Member | undefined {
    const candidates = this.members.filter(ok)
    return candidates.length === 0 ? undefined : candidates[who % candidates.length]
  }

  isLive(m: Member): boolean {
    return this.live.includes(m.id)
  }

  run(s: Step): void {
    switch (s._tag) {
      case "join": {
        const m: Member = {
          id: `m${this.fresh++}`,
          status: "running",
          working: new Map(),
          stopping: new Map(),
          stopped: new Map(),
          inflight: new Map(),
          minIndex: 0
        }
        this.members.push(m)
        this.changeTo([...this.live, m.id])
        m.minIndex = this.history.length - 1
        return
      }
      case "leave": {
        // A graceful leave: all its work stops first (the leave waits for it), then its row goes.
        const m = this.pick(s.who, (x) => x.status === "running" && this.isLive(x))
        if (m === undefined) return
        m.working.clear()
        m.stopping.clear()
        m.stopped.clear()
        m.status = "left"
        this.changeTo(this.live.filter((id) => id !== m.id))
        return
      }
      case "crash": {
        const m = this.pick(s.who, (x) => x.status === "running" || x.status === "hung")
        if (m === undefined) return
        m.status = "crashed"
        m.working.clear()
        m.stopping.clear()
        return
      }
      case "hang": {
        const m = this.pick(s.who, (x) => x.status === "running")
        if (m !== undefined) m.status = "hung"
        return
      }
      case "fence": {
        // The local deadline passed (G3): all work stopped before the lease can expire.
        const m = this.pick(s.who, (x) => x.status === "running" || x.status === "hung")
        if (m === undefined) return
        m.status = "fenced"
        m.working.clear()
        m.stopping.clear()
        return
      }
      case "recover": {
        // A fenced member whose renewal succeeded before its lease expired works again (its row was
        // not reaped): it restarts what it still holds and owns on its next renewal.
        const m = this.pick(s.who, (x) => x.status === "fenced" && this.isLive(x))
        if (m !== undefined) m.status = "running"
        return
      }
      case "reap": {
        // Only a member whose lease expired, which by G3 has stopped: crashed or fenced.
        const m = this.pick(s.who, (x) => (x.status === "crashed" || x.status === "fenced") && this.isLive(x))
        if (m !== undefined) this.changeTo(this.live.filter((id) => id !== m.id))
        return
      }
      case "stopDone": {
        const m = this.pick(s.who, (x) => x.status === "running" && x.stopping.size > 0)
        if (m === undefined) return
        const [slot, generation] = [...m.stopping][s.who % m.stopping.size]!
        m.stopping.delete(slot)
        m.stopped.set(slot, generation)
        return
      }
      case "sendRelease": {
        const m = this.pick(s.who, (x) => x.status === "running" && this.isLive(x) && x.stopped.size > 0)
        if (m !== undefined) this.send(m)
        return
      }
      case "deliver":
      case "duplicate":
      case "drop": {
        if (this.ops.length === 0) return
        const i = s.which % this.ops.length
        const op = this.ops[i]!
        if (s._tag === "drop") {
          this.ops.splice(i, 1)
          return
        }
        if (s._tag === "duplicate") {
          this.ops.push(op)
          return
        }
        this.ops.splice(i, 1)
        this.deliver(op, s.replied)
        return
      }
      case "renew": {
        const m = this.pick(s.who, (x) => x.status === "running" && this.isLive(x))
        if (m !== undefined) this.renew(m, Math.max(m.minIndex, this.history.length - 1 - s.stale))
        return
      }
    }
  }

  send(m: Member): void {
    const pairs = [...m.stopped].map(([slot, generation]) => ({ slot, generation }))
    for (const { generation, slot } of pairs) m.inflight.set(slot, generation)
    m.stopped.clear()
    this.ops.push({ member: m, pairs })
  }

  deliver(op: ReleaseOp, replied: boolean): void {
    const { released, table } = Table.release(this.latest, op.member.id, op.pairs, this.isLive(op.member))
    this.write(table)
    if (replied && op.member.status === "running") {
      for (const slot of released) op.member.inflight.delete(slot)
      op.member.minIndex = this.history.length - 1
    }
  }

  /** The member's rules of docs/slots.md for one renewal reply that read table `index`. */
  renew(m: Member, index: number): void {
    const snapshot = this.history[index]!
    snapshot.forEach((row, slot) => {
      const tracked = m.working.has(slot) || m.stopping.has(slot) || m.stopped.has(slot)
      if (row.holder !== m.id) {
        // By the invariant nobody else can take a slot from a live holder: seeing it is a bug.
        expect(tracked, `${m.id} sees slot ${slot} held by ${row.holder} while it still has it`).toBe(false)
        m.inflight.delete(slot) // our release applied
        return
      }
      if (tracked) {
        const generation = m.working.get(slot)
        if (generation !== undefined) {
          expect(row.generation, `${m.id} works slot ${slot} at another generation`).toBe(generation)
          if (row.owner !== m.id) {
            m.working.delete(slot)
            m.stopping.set(slot, generation)
          }
        }
        return
      }
      const sent = m.inflight.get(slot)
      if (sent !== undefined) {
        if (row.generation > sent) {
          m.inflight.delete(slot) // it applied and the slot came back
        } else if (row.owner === m.id) {
          // Held and owned again at the released generation: take it back at a new generation
          // first, so that a late release of the old one is a no-op; start on a later renewal.
          this.write(Table.retake(this.latest, m.id, slot, sent))
          return
        } else {
          this.ops.push({ member: m, pairs: [{ slot, generation: sent }] }) // send the release again
          return
        }
      }
      if (row.owner === m.id) m.working.set(slot, row.generation)
      else m.stopped.set(slot, row.generation) // held, not worked, owned by another: release it
    })
    m.minIndex = this.history.length - 1
  }

  /** No slot runs twice; whoever may be running a slot holds it at that generation now. */
  check(): void {
    const runner = new Map<number, MemberId>()
    for (const m of this.members) {
      if (m.status !== "running" && m.status !== "hung") continue
      for (const [slot, generation] of [...m.working, ...m.stopping]) {
        expect(runner.get(slot), `slot ${slot} runs in ${runner.get(slot)} and ${m.id}`).toBeUndefined()
        runner.set(slot, m.id)
        const row = this.latest[slot]!
        expect({ slot, holder: row.holder, generation: row.generation }).toEqual({ slot, holder: m.id, generation })
      }
    }
  }

  /** Faults heal; a few rounds of renewals, stops and releases. */
  settle(): void {
    for (const m of this.members) if (m.status === "hung") m.status = "fenced"
    for (const m of this.members) {
      if ((m.status === "crashed" || m.status === "fenced") && this.isLive(m)) this.changeTo(this.live.filter((id) => id !== m.id))
    }
    this.check()
    for (let round = 0; round < 4; round++) {
      const running = this.members.filter((m) => m.status === "running" && this.isLive(m))
      for (const m of running) this.renew(m, this.history.length - 1)
      for (const m of running) {
        for (const [slot, generation] of m.stopping) m.stopped.set(slot, generation)
        m.stopping.clear()
      }
      this.check()
      for (const m of running) if (m.stopped.size > 0) this.send(m)
      while (this.ops.length > 0) this.deliver(this.ops.shift()!, true)
      this.check()
    }
  }
}

/** Runs `steps`, checking after each; returns the world. */
const play = (slots: number, steps: ReadonlyArray<Step>): World => {
  const world = new World(slots)
  for (const s of steps) {
    world.run(s)
    world.check()
  }
  return world
}

describe("the handoff protocol of docs/slots.md, as a model", () => {
  // m0 owns slots 0 and 1; m1 joins and gets slot 1; m0 stops it and sends a release that is delayed;
  // m1 leaves, so slot 1 is m0's again while m0 still holds it at the released generation. Restarting
  // it at that generation would let the late release hand it to m2 while m0 works it: m0 retakes it at
  // a new generation first, which turns the late release into a no-op.
  it("a release whose outcome is unknown: the slot comes back, is retaken at a new generation, and the late release is a no-op", () => {
    const world = play(2, [
      { _tag: "join" },
      { _tag: "renew", who: 0, stale: 0 },
      { _tag: "join" },
      { _tag: "renew", who: 0, stale: 0 },
      { _tag: "stopDone", who: 0 },
      { _tag: "sendRelease", who: 0 },
      { _tag: "leave", who: 1 },
      { _tag: "renew", who: 0, stale: 0 }, // retakes slot 1 at a new generation
      { _tag: "renew", who: 0, stale: 0 }, // starts it
      { _tag: "join" },
      { _tag: "deliver", which: 0, replied: true } // the late release: no-op
    ])
    const m0 = world.members[0]!
    expect(m0.working.get(1)).toBe(world.latest[1]!.generation)
    expect(world.latest[1]).toMatchObject({ owner: "m2", holder: "m0" })
    world.settle()
    expect(world.latest[1]).toMatchObject({ owner: "m2", holder: "m2" })
  })

  // A duplicated release of generation g: the first copy hands slot 1 to m1; m1 leaves, the slot comes
  // back to m0 at a newer generation and m0 works it; m2 joins and owns it; the second copy arrives
  // while m0 still works it and must not release it (the generation no longer matches).
  it("a duplicated release delivered after the slot came back is a no-op", () => {
    const world = play(2, [
      { _tag: "join" },
      { _tag: "renew", who: 0, stale: 0 },
      { _tag: "join" },
      { _tag: "renew", who: 0, stale: 0 },
      { _tag: "stopDone", who: 0 },
      { _tag: "sendRelease", who: 0 },
      { _tag: "duplicate", which: 0, replied: false },
      { _tag: "deliver", which: 0, replied: false },
      { _tag: "renew", who: 1, stale: 0 }, // m1 starts slot 1
      { _tag: "leave", who: 1 }, // slot 1 goes back to m0 at once, at a new generation
      { _tag: "renew", who: 0, stale: 0 }, // m0 starts it
      { _tag: "join" },
      { _tag: "deliver", which: 0, replied: true } // the duplicate: no-op
    ])
    expect(world.members[0]!.working.get(1)).toBe(world.latest[1]!.generation)
    expect(world.latest[1]).toMatchObject({ owner: "m2", holder: "m0" })
  })


  it.prop(
    "no slot runs in two members at once, every runner holds its slot at its generation, and it converges",
    [fc.oneof(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 24 })), fc.array(step, { maxLength: 80, size: "max" })],
    ([slots, steps]) => {
      const world = new World(slots)
      for (const s of steps) {
        world.run(s)
        world.check()
      }
      world.settle()
      const live = world.members.filter((m) => m.status === "running" && world.isLive(m))
      expect(live.map((m) => m.id)).toEqual(world.live)
      const table = world.latest
      if (live.length === 0) return
      const sizes = live.map((m) => m.working.size)
      expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1)
      table.forEach((row, slot) => {
        expect(row.holder).toBe(row.owner)
        const m = live.find((x) => x.id === row.owner)
        expect(m, `slot ${slot}'s owner ${row.owner} is a live member`).toBeDefined()
        expect(m!.working.get(slot), `slot ${slot} worked by its owner at its generation`).toBe(row.generation)
      })
    },
    { fastCheck: { numRuns: 800 } }
  )
})
