/**
 * Slots mode's assignment rule (src/internal/slots/assignment.ts), pure: balance and cover after any
 * sequence of joins, leaves and crashes from any starting state; the fewest moves any balanced
 * assignment allows (against an independent formula, and against brute force on small groups); a
 * join moves slots only to the newcomer, a leave or crash only the departed member's slots;
 * determinism (also under renaming the members); the handoff plan; `slotOf` and the range summary.
 * The SQL side of `slotOf` is in keys.pg.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import * as Ownership from "../../src/Ownership.js"
import type { MemberId } from "../../src/internal/slots/assignment.js"
import * as Assignment from "../../src/internal/slots/assignment.js"
import { slotOf } from "../../src/internal/slots/keys.js"
import { fromRanges, toRanges } from "../../src/internal/slots/ranges.js"

type Owners = ReadonlyArray<MemberId | null>

const id = (i: number): MemberId => `m${i}`

/** Counts of every live member (0 for a member that owns nothing). */
const countsOf = (owners: Owners, live: ReadonlyArray<MemberId>): ReadonlyArray<number> => {
  const c = Assignment.counts(owners)
  return live.map((m) => c.get(m) ?? 0)
}

const changed = (before: Owners, after: Owners): ReadonlyArray<number> =>
  before.flatMap((owner, s) => (owner === after[s] ? [] : [s]))

/** Every slot owned by a live member, sizes within one of each other (exactly floor/ceil of S/N). */
const expectBalancedCover = (slots: number, owners: Owners, live: ReadonlyArray<MemberId>): void => {
  expect(owners).toHaveLength(slots)
  if (live.length === 0) {
    expect(owners.every((o) => o === null)).toBe(true)
    return
  }
  const isLive = new Set(live)
  expect(owners.findIndex((owner) => owner === null || !isLive.has(owner)), "a slot without a live owner").toBe(-1)
  const sizes = countsOf(owners, live)
  expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1)
  expect(Math.min(...sizes)).toBe(Math.floor(slots / live.length))
}

/**
 * The fewest slots any balanced assignment must move, computed independently of `rebalance`: the
 * slots without a live owner, plus each member's slots above floor(S / N), less the S mod N members
 * above it that may keep one more (a member above floor keeps floor + 1 at most).
 */
const fewestMoves = (slots: number, owners: Owners, live: ReadonlyArray<MemberId>): number => {
  if (live.length === 0) return owners.filter((o) => o !== null).length
  const isLive = new Set(live)
  const unowned = owners.filter((o) => o === null || !isLive.has(o)).length
  const base = Math.floor(slots / live.length)
  const above = countsOf(owners, live).filter((c) => c > base)
  return unowned + above.reduce((sum, c) => sum + c - base, 0) - Math.min(above.length, slots % live.length)
}

/** A pool of member ids (some will be live, some departed) and an arbitrary owner map over it. */
const anyState = (maxSlots: number) =>
  fc.record({
    slots: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: maxSlots })),
    pool: fc.integer({ min: 1, max: 12 })
  }).chain(({ pool, slots }) =>
    fc.record({
      slots: fc.constant(slots),
      owners: fc.array(fc.option(fc.integer({ min: 0, max: pool - 1 }).map(id), { nil: null }), {
        minLength: slots,
        maxLength: slots
      }),
      // The live members: a subset of the pool in some join order (possibly none).
      live: fc.shuffledSubarray(Array.from({ length: pool }, (_, i) => id(i)))
    })
  )

type Change = { readonly _tag: "join" } | { readonly _tag: "leave" | "crash"; readonly which: number }

const changes = fc.array(
  fc.oneof(
    fc.constant<Change>({ _tag: "join" }),
    fc.nat(100).map((which): Change => ({ _tag: "leave", which })),
    fc.nat(100).map((which): Change => ({ _tag: "crash", which }))
  ),
  { maxLength: 25 }
)

describe("rebalance", () => {
  it.prop("from any state, every slot gets one live owner and sizes differ by at most one", [anyState(2_000)], ([{ live, owners, slots }]) => {
    expectBalancedCover(slots, Assignment.rebalance(slots, owners, live), live)
  })

  it.prop(
    "after any sequence of joins, leaves and crashes from any state: balanced cover at every step, and no move that is not forced",
    [anyState(600), changes],
    ([{ live: initial, owners: start, slots }, steps]) => {
      let live = [...initial]
      let owners: Owners = Assignment.rebalance(slots, start, live)
      let fresh = 100
      for (const step of steps) {
        if (step._tag === "join") live = [...live, id(fresh++)]
        else if (live.length > 0) live = live.filter((_, i) => i !== step.which % live.length)
        const next = Assignment.rebalance(slots, owners, live)
        expectBalancedCover(slots, next, live)
        expect(changed(owners, next).length).toBe(fewestMoves(slots, owners, live))
        owners = next
      }
    }
  )

  it.prop("moves exactly the fewest slots a balanced assignment can, from any state", [anyState(2_000)], ([{ live, owners, slots }]) => {
    const target = Assignment.rebalance(slots, owners, live)
    expect(changed(owners, target).length).toBe(fewestMoves(slots, owners, live))
  })

  it.prop(
    "no balanced assignment moves fewer slots (brute force over every assignment of small groups)",
    [fc.integer({ min: 1, max: 6 }).chain((slots) =>
      fc.record({
        slots: fc.constant(slots),
        owners: fc.array(fc.option(fc.integer({ min: 0, max: 3 }).map(id), { nil: null }), { minLength: slots, maxLength: slots }),
        live: fc.shuffledSubarray([id(0), id(1), id(2), id(3)], { minLength: 1, maxLength: 3 })
      })
    )],
    ([{ live, owners, slots }]) => {
      let best = Infinity
      const current: Array<MemberId> = []
      const search = (s: number): void => {
        if (s === slots) {
          const sizes = countsOf(current, live)
          if (Math.max(...sizes) - Math.min(...sizes) <= 1) best = Math.min(best, changed(owners, current).length)
          return
        }
        for (const m of live) {
          current.push(m)
          search(s + 1)
          current.pop()
        }
      }
      search(0)
      expect(changed(owners, Assignment.rebalance(slots, owners, live)).length).toBe(best)
    }
  )

  it.prop(
    "the members that give slots up are never less loaded than the rest, those that receive never more loaded",
    [anyState(1_000)],
    ([{ live, owners, slots }]) => {
      const target = Assignment.rebalance(slots, owners, live)
      const isLive = new Set(live)
      const before = new Map(live.map((m, i) => [m, countsOf(owners, live)[i]!]))
      const moved = changed(owners, target)
      const donors = new Set(moved.map((s) => owners[s]).filter((o): o is MemberId => o !== null && isLive.has(o)))
      const receivers = new Set(moved.map((s) => target[s]!))
      for (const d of donors) expect(receivers.has(d)).toBe(false)
      for (const m of live) {
        if (!donors.has(m)) for (const d of donors) expect(before.get(d)!).toBeGreaterThanOrEqual(before.get(m)!)
        if (!receivers.has(m)) for (const r of receivers) expect(before.get(r)!).toBeLessThanOrEqual(before.get(m)!)
      }
    }
  )
})

/** A settled group: N members in join order, after some history of joins and crashes from nothing. */
const settled = (slots: number, n: number, history: ReadonlyArray<number>): { owners: Owners; live: Array<MemberId> } => {
  let live: Array<MemberId> = []
  let owners: Owners = Array.from({ length: slots }, () => null)
  let fresh = 0
  for (const r of history) {
    live = r % 3 === 0 && live.length > 0 ? live.filter((_, i) => i !== r % live.length) : [...live, id(fresh++)]
    owners = Assignment.rebalance(slots, owners, live)
  }
  while (live.length < n) {
    live = [...live, id(fresh++)]
    owners = Assignment.rebalance(slots, owners, live)
  }
  while (live.length > n) {
    live = live.slice(1)
    owners = Assignment.rebalance(slots, owners, live)
  }
  return { owners, live }
}

const settledGroup = fc.record({
  slots: fc.oneof(
    { weight: 4, arbitrary: fc.integer({ min: 1, max: 300 }) },
    { weight: 1, arbitrary: fc.constantFrom(256, 1024, 16_384) },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 16_384 }) }
  ),
  n: fc.integer({ min: 1, max: 40 }),
  history: fc.array(fc.nat(1000), { maxLength: 12 })
})

describe("one change from a settled group", () => {
  it("S = 256, 8 members: a join moves at most ceil(256/9) + 1 slots, all to the newcomer; a leave and a crash only the departed member's", () => {
    const { live, owners } = settled(256, 8, [])
    expect(countsOf(owners, live)).toEqual(Array.from({ length: 8 }, () => 32))

    const joined = Assignment.rebalance(256, owners, [...live, "newcomer"])
    const joinMoves = changed(owners, joined)
    expect(joinMoves.length).toBeLessThanOrEqual(Math.ceil(256 / 9) + 1)
    expect(joinMoves.length).toBe(28) // floor(256 / 9)
    expect(joinMoves.every((s) => joined[s] === "newcomer")).toBe(true)
    expect([...countsOf(joined, [...live, "newcomer"])].sort()).toEqual([28, 28, 28, 28, 29, 29, 29, 29, 28].sort())

    for (const departed of [live[0]!, live[3]!, live[7]!]) {
      const rest = live.filter((m) => m !== departed)
      const after = Assignment.rebalance(256, owners, rest)
      const moves = changed(owners, after)
      expect(moves).toEqual(Assignment.slotsOf(owners, departed))
      expectBalancedCover(256, after, rest)
    }
  })

  it.prop("a join moves floor(S / (N + 1)) slots, all to the newcomer, each donor keeping at least as many", [settledGroup], ([{ history, n, slots }]) => {
    const { live, owners } = settled(slots, n, history)
    const joined = Assignment.rebalance(slots, owners, [...live, "newcomer"])
    const moves = changed(owners, joined)
    expect(moves.length).toBe(Math.floor(slots / (n + 1)))
    expect(moves.length).toBeLessThanOrEqual(Math.ceil(slots / (n + 1)) + 1)
    for (const s of moves) expect(joined[s]).toBe("newcomer")
    const plan = Assignment.handoff(slots, owners, joined, [...live, "newcomer"])
    expect(plan.every((m) => m.after === "release" && m.to === "newcomer")).toBe(true)
    for (const m of live) {
      expect(Assignment.slotsOf(joined, m).length).toBeGreaterThanOrEqual(Math.floor(slots / (n + 1)))
    }
  })

  it.prop("a leave or a crash moves exactly the departed member's slots, each to be started at once", [settledGroup, fc.nat()], ([{ history, n, slots }, which]) => {
    const { live, owners } = settled(slots, n, history)
    const departed = live[which % live.length]!
    const rest = live.filter((m) => m !== departed)
    const after = Assignment.rebalance(slots, owners, rest)
    expect(changed(owners, after)).toEqual(Assignment.slotsOf(owners, departed))
    expectBalancedCover(slots, after, rest)
    const plan = Assignment.handoff(slots, owners, after, rest)
    expect(plan.every((m) => m.from === departed && m.after === "nothing")).toBe(true)
  })
})

describe("determinism", () => {
  it.prop("the same state gives the same answer, and the inputs are not changed", [anyState(2_000)], ([{ live, owners, slots }]) => {
    const ownersCopy = [...owners]
    const liveCopy = [...live]
    const a = Assignment.rebalance(slots, owners, live)
    const b = Assignment.rebalance(slots, ownersCopy, liveCopy)
    expect(a).toEqual(b)
    expect(owners).toEqual(ownersCopy)
    expect(live).toEqual(liveCopy)
  })

  it.prop(
    "ids are only names: renaming every member (any new ids, same join order) renames the answer",
    [anyState(1_000), fc.array(fc.uuid(), { minLength: 12, maxLength: 12 }).filter((u) => new Set(u).size === u.length)],
    ([{ live, owners, slots }, uuids]) => {
      const rename = (m: MemberId | null) => (m === null ? null : uuids[Number(m.slice(1))]!)
      expect(Assignment.rebalance(slots, owners.map(rename), live.map((m) => rename(m)!)))
        .toEqual(Assignment.rebalance(slots, owners, live).map(rename))
    }
  )
})

describe("handoff", () => {
  it.prop(
    "one move per slot whose holder is not its target; a live holder releases, anything else starts at once; plans partition the moves",
    [anyState(500).chain((state) =>
      fc.record({
        state: fc.constant(state),
        // Holders: mostly the owners, some slots still held by someone else (a handoff in flight).
        holders: fc.array(fc.option(fc.integer({ min: 0, max: 11 }).map(id), { nil: null, freq: 3 }), {
          minLength: state.slots,
          maxLength: state.slots
        }).map((other) => state.owners.map((o, s) => (s % 3 === 0 ? other[s]! : o)))
      })
    )],
    ([{ holders, state: { live, owners, slots } }]) => {
      const target = Assignment.rebalance(slots, owners, live)
      const moves = Assignment.handoff(slots, holders, target, live)
      expect(moves.map((m) => m.slot)).toEqual(changed(holders, target))
      const isLive = new Set(live)
      for (const m of moves) {
        expect(m.from).toBe(holders[m.slot])
        expect(m.to).toBe(target[m.slot])
        expect(m.after).toBe(m.from !== null && isLive.has(m.from) ? "release" : "nothing")
      }
      const everyone = [...new Set([...live, ...holders.filter((h): h is MemberId => h !== null)])]
      const released: Array<number> = []
      const started: Array<number> = []
      for (const member of everyone) {
        const plan = Assignment.planFor(moves, member)
        released.push(...plan.release)
        started.push(...plan.startAfterRelease, ...plan.startNow)
        for (const s of [...plan.startAfterRelease, ...plan.startNow]) expect(plan.release).not.toContain(s)
        // A member keeps working every slot it holds and keeps.
        const keeps = Assignment.slotsOf(holders, member).filter((s) => target[s] === member)
        for (const s of keeps) expect([...plan.release, ...plan.startAfterRelease, ...plan.startNow]).not.toContain(s)
      }
      expect(released.sort((a, b) => a - b)).toEqual(moves.filter((m) => m.from !== null).map((m) => m.slot))
      expect(started.sort((a, b) => a - b)).toEqual(moves.filter((m) => m.to !== null).map((m) => m.slot))
    }
  )

  it("a handoff in flight that the next change sends back to its holder is no move at all", () => {
    // Slot 0 was being handed from a to b; b left before taking it; a gets it back.
    const moves = Assignment.handoff(2, ["a", "a"], ["a", "a"], ["a"])
    expect(moves).toEqual([])
    expect(Assignment.planFor(moves, "a")).toEqual({ release: [], startAfterRelease: [], startNow: [] })
  })

  it("a handoff in flight whose old holder is reaped is handed over at once; the new owner keeps its target", () => {
    // Slot 0 was on its way from a to b (owner b, holder a); a crashed and was reaped.
    const target = Assignment.rebalance(2, ["b", "b"], ["b"])
    expect(target).toEqual(["b", "b"])
    const moves = Assignment.handoff(2, ["a", "b"], target, ["b"])
    expect(moves).toEqual([{ slot: 0, from: "a", to: "b", after: "nothing" }])
    expect(Assignment.planFor(moves, "b")).toEqual({ release: [], startAfterRelease: [], startNow: [0] })
  })

  it("refuses arguments out of range", () => {
    expect(() => Assignment.rebalance(0, [], [])).toThrow(/slots: must be an integer in \[1, 16384\]/)
    expect(() => Assignment.rebalance(16_385, [], [])).toThrow(Assignment.InvalidSlots)
    expect(() => Assignment.rebalance(2.5, [null, null], [])).toThrow(Assignment.InvalidSlots)
    expect(() => Assignment.rebalance(2, [null], ["a"])).toThrow(/owners: must have one entry per slot/)
    expect(() => Assignment.rebalance(2, [null, ""], ["a"])).toThrow(/owners/)
    expect(() => Assignment.rebalance(2, [null, null], ["a", "a"])).toThrow(/listed twice/)
    expect(() => Assignment.handoff(2, [null, null], [null], [])).toThrow(/target/)
    expect(Assignment.rebalance(16_384, Array.from({ length: 16_384 }, () => null), ["a"]).every((o) => o === "a")).toBe(true)
  })
})

describe("slotOf", () => {
  it.prop(
    "is Ownership's mapping with N = S: non-negative for negative ids, text and uuid hashed as Ownership hashes them",
    [
      fc.oneof(
        fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((k) => ({ key: k as number | bigint | string, keyType: "integer" as const })),
        fc.integer({ min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }).map((k) => ({ key: k, keyType: "integer" as const })),
        fc.string({ unit: "grapheme" }).map((k) => ({ key: k, keyType: "text" as const })),
        fc.uuid().map((k) => ({ key: k, keyType: "uuid" as const }))
      ),
      fc.integer({ min: 1, max: Assignment.maxSlots })
    ],
    ([{ key, keyType }, slots]) => {
      const slot = slotOf(key, slots, keyType)
      expect(Number.isSafeInteger(slot) && slot >= 0 && slot < slots).toBe(true)
      expect(slot).toBe(Ownership.ownerOf(key, slots, keyType))
      if (keyType === "integer") {
        const k = BigInt(key)
        expect(BigInt(slot)).toBe(((k % BigInt(slots)) + BigInt(slots)) % BigInt(slots))
      }
    }
  )

  it("examples; slot counts out of [1, 16384] are refused", () => {
    expect(slotOf(-1, 16)).toBe(15)
    expect(slotOf(-16n, 16)).toBe(0)
    expect(slotOf("17", 16)).toBe(1)
    expect(slotOf(5, 1)).toBe(0)
    expect(slotOf("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", 256, "uuid")).toBe(slotOf("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", 256, "uuid"))
    expect(() => slotOf(1, 0)).toThrow(Assignment.InvalidSlots)
    expect(() => slotOf(1, 16_385)).toThrow(/\[1, 16384\]/)
    expect(() => slotOf(1.5, 16)).toThrow(Ownership.InvalidOwnership)
  })
})

describe("ranges", () => {
  it("renders sorted runs", () => {
    expect(toRanges([])).toBe("")
    expect(toRanges([5])).toBe("5")
    expect(toRanges(Array.from({ length: 16 }, (_, i) => i).concat(Array.from({ length: 16 }, (_, i) => 32 + i)))).toBe("0-15,32-47")
    expect(toRanges([10, 9, 7, 3, 2, 1, 0, 9])).toBe("0-3,7,9-10")
    expect(() => toRanges([-1])).toThrow(Assignment.InvalidSlots)
    for (const bad of ["0-3,4", "3-1", "5,2", " 1", "-1", "01", "1,", ",1", "1--2"]) {
      expect(() => fromRanges(bad), bad).toThrow(Assignment.InvalidSlots)
    }
  })

  it.prop("fromRanges(toRanges(set)) is the set, sorted, without duplicates", [fc.array(fc.nat(300), { maxLength: 120 })], ([set]) => {
    const text = toRanges(set)
    expect(fromRanges(text)).toEqual([...new Set(set)].sort((a, b) => a - b))
    expect(toRanges(fromRanges(text))).toBe(text)
  })
})
