/**
 * Work on top of the membership, on the in-memory store under the TestClock: the schedule maths
 * against the original's formula, the barrier between a run's finalizers and the next epoch, the stop
 * timeout, leader duties, and failure handling.
 */
import { expect, it } from "@effect/vitest"
import { Clock, Duration, Effect, Exit, FastCheck as fc, Option, Ref, Scope, Stream, TestClock } from "effect"
import * as InMemoryMembershipStore from "../src/InMemoryMembershipStore.js"
import * as Membership from "../src/Membership.js"
import * as MembershipConfig from "../src/MembershipConfig.js"
import { StaleAssignment } from "../src/MembershipError.js"
import { MembershipStore } from "../src/MembershipStore.js"
import type { Assignment } from "../src/MemberState.js"
import { MemberState } from "../src/MemberState.js"
import * as Work from "../src/Work.js"
import { advanceUntil } from "./support/TestClock.js"

// --- the schedule against the original ----------------------------------------------------------

/**
 * The original, transcribed from the Python port of `compute_next_work_time` (datetime/timedelta
 * arithmetic, exact in microseconds; `timedelta / int` rounds half to even):
 *
 *     last_time = current_time - (ct % wm) + work_offset + min_work_interval/instance_count*instance_modulo
 *     next_time = last_time + min_work_interval
 */
const originalFirstUs = (i: { nowUs: bigint; intervalUs: bigint; moduloUs: bigint; offsetUs: bigint; index: number; size: number }) => {
  const n = BigInt(i.size)
  const q = i.intervalUs / n
  const r = i.intervalUs % n
  const share = 2n * r > n || (2n * r === n && q % 2n === 1n) ? q + 1n : q
  const last = i.nowUs - (i.nowUs % i.moduloUs) + i.offsetUs + share * BigInt(i.index)
  return last + i.intervalUs
}

const scheduleArb = fc
  .record({
    now: fc.integer({ min: 0, max: 4_102_444_800_000 }), // up to 2100, in ms
    interval: fc.integer({ min: 1, max: 3_600_000 }),
    modulo: fc.integer({ min: 1, max: 3_600_000 }),
    offset: fc.integer({ min: 0, max: 60_000 }),
    size: fc.integer({ min: 1, max: 64 })
  })
  .chain((r) => fc.record({ index: fc.integer({ min: 0, max: r.size - 1 }) }).map(({ index }) => ({ ...r, index })))

it.prop("firstDue is the original's compute_next_work_time (to the microsecond it rounds to)", [scheduleArb], ([s]) => {
  const ours = Work.firstDue(s)
  const original = originalFirstUs({
    nowUs: BigInt(s.now) * 1000n,
    intervalUs: BigInt(s.interval) * 1000n,
    moduloUs: BigInt(s.modulo) * 1000n,
    offsetUs: BigInt(s.offset) * 1000n,
    index: s.index,
    size: s.size
  })
  // The original rounds interval / N to a microsecond before multiplying by k; we do not round.
  expect(Math.abs(ours * 1000 - Number(original))).toBeLessThanOrEqual(0.5 * s.index + 1)
  // And when N divides the interval (in milliseconds) nothing is rounded on either side: equal exactly.
  if (s.interval % s.size === 0) expect(ours).toBe(Number(original / 1000n))
}, { fastCheck: { numRuns: 2_000 } })

it.prop("stagger: member k of N is due interval / N * k after member 0, within one grid step of now + interval", [
  scheduleArb
], ([s]) => {
  const base = Work.firstDue({ ...s, index: 0 })
  const mine = Work.firstDue(s)
  // (to a microsecond: both are sums of numbers around 1e12 ms)
  expect(Math.abs(mine - base - Work.staggerOffset(s.interval, s.index, s.size))).toBeLessThan(1e-3)
  expect(Math.abs(mine - base - (s.interval / s.size) * s.index)).toBeLessThan(1e-3)
  expect(base).toBeGreaterThan(s.now - s.modulo + s.offset + s.interval - 1e-6)
  expect(base).toBeLessThanOrEqual(s.now + s.offset + s.interval)
  // Every later due time is one interval after the previous one.
  expect(Work.nextDue(mine, s.interval)).toBe(mine + s.interval)
})

it.prop("catchUp: the first slot of the member's grid at or after now", [
  fc.integer({ min: 0, max: 1e12 }),
  fc.integer({ min: 0, max: 1e7 }),
  fc.integer({ min: 1, max: 1e6 })
], ([due, late, interval]) => {
  const now = due + late
  const next = Work.catchUp(due, now, interval)
  expect(next).toBeGreaterThanOrEqual(now)
  expect(next - now).toBeLessThan(interval)
  expect(Number.isInteger((next - due) / interval)).toBe(true)
  expect(Work.catchUp(now + 5, now, interval)).toBe(now + 5)
})

// --- helpers ------------------------------------------------------------------------------------


/** A member in a scope of its own (closing it is a graceful leave), and a way to run things in that scope. */
const member = (input: Partial<MembershipConfig.MembershipConfigInput> = {}) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const m = yield* Membership.make({ groupId: "g", ...input }).pipe(Scope.extend(scope))
    const within = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      effect.pipe(Effect.provideService(Membership.Membership, m), Scope.extend(scope))
    return { m, scope, within, close: Scope.close(scope, Exit.void) }
  })

interface Event {
  readonly at: number
  readonly what: string
}

const makeLog = Effect.sync(() => {
  const events: Array<Event> = []
  const push = (what: string) => Effect.map(Clock.currentTimeMillis, (at) => void events.push({ at, what }))
  const find = (prefix: string) => events.find((e) => e.what.startsWith(prefix))
  const indexOf = (prefix: string) => events.findIndex((e) => e.what.startsWith(prefix))
  return { events, push, find, indexOf }
})

const inMemory = <A, E>(
  effect: Effect.Effect<A, E, MembershipStore | InMemoryMembershipStore.InMemoryStoreControl | Scope.Scope>
) => Effect.provide(Effect.scoped(effect), InMemoryMembershipStore.layer)

const isAssigned = (m: Membership.MembershipService, size: number) =>
  Effect.map(m.state, (s) => s._tag === "Assigned" && s.size === size)

/** Records every state of a member with the time it was entered. */
const recordStates = (a: { readonly m: Membership.MembershipService; readonly scope: Scope.Scope }) =>
  Effect.gen(function*() {
    const states: Array<
      { readonly at: number; readonly tag: string; readonly epoch: number | undefined; readonly stuck: boolean | undefined }
    > = []
    yield* Effect.forkIn(
      Stream.runForEach(a.m.changes, (s) =>
        Effect.map(Clock.currentTimeMillis, (at) =>
          void states.push({
            at,
            tag: s._tag,
            epoch: "epoch" in s ? s.epoch : undefined,
            stuck: "stuck" in s ? s.stuck : undefined
          }))),
      a.scope
    )
    return states
  })

// --- runEvery -----------------------------------------------------------------------------------

it.effect("runEvery runs each member on the original's staggered grid", () =>
  inMemory(Effect.gen(function*() {
    const runs: Array<Work.Tick & { readonly at: number; readonly who: string }> = []
    const ms = yield* Effect.forEach(["a", "b", "c"], (who) =>
      Effect.gen(function*() {
        const x = yield* member({ name: who })
        yield* x.within(Work.runEvery(
          "3 seconds",
          (tick) => Effect.map(Clock.currentTimeMillis, (at) => void runs.push({ ...tick, at, who })),
          { modulo: "3 seconds", offset: "250 millis" }
        ))
        return x
      }))
    yield* advanceUntil(() => Effect.map(Effect.forEach(ms, (x) => isAssigned(x.m, 3)), (ok) => ok.every(Boolean)))
    yield* TestClock.adjust(Duration.seconds(30))
    const final = runs.filter((r) => r.size === 3)
    expect(final.length).toBeGreaterThanOrEqual(27)
    expect(new Set(final.map((r) => r.index))).toEqual(new Set([0, 1, 2]))
    for (const r of runs) {
      // On time, and on the grid: offset + interval / N * k past a multiple of the interval.
      expect(r.at).toBe(r.dueAt)
      expect((((r.at - 250) % 3000) + 3000) % 3000).toBe(Math.round((3000 / r.size) * r.index))
    }
    for (const who of ["a", "b", "c"]) {
      const mine = final.filter((r) => r.who === who)
      for (let i = 1; i < mine.length; i++) expect(mine[i]!.at - mine[i - 1]!.at).toBe(3000)
      expect(mine.map((r) => r.run)).toEqual(mine.map((_, i) => i + mine[0]!.run))
    }
  })))

/**
 * A run in progress when the group changes, with a slow finalizer. `registerWhenAssigned`: the work is
 * registered after the member is assigned (started at once by `whileAssigned` itself) rather than
 * before (started by the member's driver when the epoch begins): both must stop at renegotiation.
 */
const interruptedOnRenegotiation = (registerWhenAssigned: boolean) =>
  inMemory(Effect.gen(function*() {
    const store = yield* MembershipStore
    const log = yield* makeLog
    const ackedOf = (memberId: string) =>
      Effect.map(store.members("g"), (rows) => rows.find((r) => r.memberId === memberId)?.ackedEpoch).pipe(Effect.orDie)

    const a = yield* member({ name: "a" })
    if (registerWhenAssigned) yield* advanceUntil(() => isAssigned(a.m, 1))
    yield* a.within(Work.runEvery("1 second", (tick) =>
      Effect.acquireRelease(
        log.push(`a:start:${tick.epoch}`),
        () =>
          Effect.gen(function*() {
            yield* log.push(`a:stopping:${tick.epoch}`)
            yield* Effect.sleep(Duration.millis(300)) // a slow cleanup
            yield* log.push(`a:stopped:${tick.epoch}:acked=${yield* ackedOf(a.m.memberId)}`)
          })
      ).pipe(Effect.zipRight(Effect.never)) // a long run: still in progress when the group changes
    ))
    yield* advanceUntil(() => log.find("a:start") !== undefined)
    const e1 = Number(log.find("a:start")!.what.split(":")[2])

    // b joins: a new epoch, which a must not acknowledge while its run is still cleaning up.
    const b = yield* member({ name: "b" })
    yield* b.m.whileAssigned((asg) => log.push(`b:start:${asg.epoch}`)).pipe(Scope.extend(b.scope))
    yield* advanceUntil(() => log.find("b:start") !== undefined)
    const e2 = Number(log.find("b:start")!.what.split(":")[2])

    expect(e2).toBeGreaterThan(e1)
    expect(log.events.map((e) => e.what).slice(0, 4)).toEqual([
      `a:start:${e1}`,
      `a:stopping:${e1}`,
      // At the end of a's cleanup the store still has a acknowledging only the old epoch...
      `a:stopped:${e1}:acked=${e1}`,
      // ...and only then does anyone start the new one.
      `b:start:${e2}`
    ])
    expect(log.find("b:start")!.at).toBeGreaterThanOrEqual(log.find("a:stopping")!.at + 300)
    expect(yield* ackedOf(a.m.memberId)).toBe(e2)
    // a works again in the new epoch, on its next slot.
    yield* advanceUntil(() => log.find(`a:start:${e2}`) !== undefined, Duration.seconds(3))
  }))

it.effect("a run in progress is interrupted on renegotiation; the next epoch starts only after its finalizer ran", () =>
  interruptedOnRenegotiation(false))

it.effect("the same when the work is registered while the member is already assigned", () =>
  interruptedOnRenegotiation(true))

it.effect("a run that outlives stopTimeout holds the barrier: the member keeps its row and acknowledges only once the run stopped", () =>
  inMemory(Effect.gen(function*() {
    const store = yield* MembershipStore
    const log = yield* makeLog
    const rowOf = (memberId: string) =>
      Effect.map(store.members("g"), (rows) => rows.find((r) => r.memberId === memberId)).pipe(Effect.orDie)

    const a = yield* member({ name: "a", stopTimeout: "2 seconds" })
    const states = yield* recordStates(a)
    yield* a.within(Work.runEvery("1 second", (tick) =>
      Effect.acquireRelease(
        log.push(`a:start:${tick.epoch}`),
        () =>
          Effect.gen(function*() {
            yield* log.push(`a:stopping:${tick.epoch}`)
            yield* Effect.sleep(Duration.seconds(5)) // ignores the stop timeout (finalizers are uninterruptible)
            const row = yield* rowOf(a.m.memberId)
            yield* log.push(`a:stopped:${tick.epoch}:row=${row === undefined ? "none" : row.ackedEpoch}`)
          })
      ).pipe(Effect.zipRight(Effect.never))
    ))
    yield* advanceUntil(() => log.find("a:start") !== undefined)
    const e1 = Number(log.find("a:start")!.what.split(":")[2])

    const b = yield* member({ name: "b" })
    yield* b.m.whileAssigned((asg) => log.push(`b:start:${asg.epoch}:${asg.size}`)).pipe(Scope.extend(b.scope))
    yield* advanceUntil(() => log.find("a:stopped") !== undefined, Duration.seconds(10))

    // Past stopTimeout a said so (stuck) but kept its row, still acknowledging only the old epoch...
    expect(states.some((s) => s.tag === "Renegotiating" && s.stuck === true)).toBe(true)
    expect(log.find("a:stopped")!.what).toBe(`a:stopped:${e1}:row=${e1}`)
    expect(states.map((s) => s.tag)).not.toContain("Lost")
    // ...so nobody started the new epoch while a's run was still stopping (G2 holds, fail closed).
    yield* advanceUntil(() => log.find("b:start") !== undefined, Duration.seconds(10))
    expect(log.find("b:start")!.at).toBeGreaterThanOrEqual(log.find("a:stopped")!.at)
    expect(log.find("b:start")!.what).toMatch(/:2$/)
    yield* advanceUntil(() => Effect.zipWith(isAssigned(a.m, 2), isAssigned(b.m, 2), (x, y) => x && y), Duration.seconds(10))
  })))

it.effect("work that fails or dies is logged and retried on the next tick; the membership is unaffected", () =>
  inMemory(Effect.gen(function*() {
    const a = yield* member()
    let runs = 0
    yield* a.within(Work.runEvery("1 second", () =>
      Effect.suspend(() => {
        runs++
        return runs % 3 === 1 ? Effect.fail("boom") : runs % 3 === 2 ? Effect.dieMessage("bug") : Effect.void
      })))
    yield* advanceUntil(() => runs >= 1)
    yield* TestClock.adjust(Duration.seconds(9))
    expect(runs).toBe(10)
    expect((yield* a.m.state)._tag).toBe("Assigned")
  })))

it.effect("runEvery checks the guard before every run and skips the runs it refuses", () =>
  Effect.gen(function*() {
    // A stand-in membership whose guard the test controls, assigned throughout.
    const assignment: Assignment = { epoch: 7, index: 1, size: 2, incarnation: 1, isLeader: false }
    const fresh = yield* Ref.make(true)
    const config = yield* MembershipConfig.make({ groupId: "stub" })
    const service: Membership.MembershipService = {
      memberId: "stub",
      config,
      state: Effect.succeed(MemberState.Assigned({ epoch: 7, index: 1, size: 2, incarnation: 1 })),
      changes: Stream.make(MemberState.Assigned({ epoch: 7, index: 1, size: 2, incarnation: 1 })),
      assignment: Effect.succeed(Option.some(assignment)),
      awaitAssigned: Effect.succeed(assignment),
      guard: Effect.flatMap(Ref.get(fresh), (ok) =>
        ok ? Effect.succeed(assignment) : Effect.fail(new StaleAssignment({ epoch: 7, reason: "the lease deadline has passed" }))),
      whileAssigned: (work) => Effect.asVoid(Effect.forkScoped(Effect.ignore(work(assignment)))),
      whileOwning: () => Effect.void,
      whileOwningAll: () => Effect.void,
      owned: Effect.succeed({ slots: [], generations: [], count: 0 }),
      leave: Effect.void
    }
    const ran: Array<number> = []
    yield* Work.runEvery("1 second", (tick) => Effect.sync(() => ran.push(tick.dueAt))).pipe(
      Effect.provideService(Membership.Membership, service)
    )
    // Due at 500 (stagger of index 1 of 2), then every second.
    yield* TestClock.adjust(Duration.millis(2_600))
    expect(ran).toEqual([500, 1_500, 2_500])
    yield* Ref.set(fresh, false)
    yield* TestClock.adjust(Duration.seconds(3))
    expect(ran).toEqual([500, 1_500, 2_500])
    yield* Ref.set(fresh, true)
    yield* TestClock.adjust(Duration.seconds(1))
    expect(ran).toEqual([500, 1_500, 2_500, 6_500])
  }).pipe(Effect.scoped))

it.effect("leaderOnly runs only on index 0", () =>
  inMemory(Effect.gen(function*() {
    const who: Array<string> = []
    const ms = yield* Effect.forEach(["a", "b", "c"], (name) =>
      Effect.gen(function*() {
        const x = yield* member({ name })
        yield* x.within(Work.runEvery("1 second", (tick) => Effect.sync(() => who.push(`${name}:${tick.index}`)), { leaderOnly: true }))
        return x
      }))
    yield* advanceUntil(() => Effect.map(Effect.forEach(ms, (x) => isAssigned(x.m, 3)), (ok) => ok.every(Boolean)))
    const from = who.length
    yield* TestClock.adjust(Duration.seconds(5))
    expect(who.slice(from)).toEqual(Array(5).fill("a:0"))
  })))

it.effect("invalid intervals fail with InvalidConfig", () =>
  inMemory(Effect.gen(function*() {
    const a = yield* member()
    const e1 = yield* Effect.flip(a.within(Work.runEvery(0, () => Effect.void)))
    expect(e1._tag).toBe("InvalidConfig")
    expect(e1.message).toMatch(/interval/)
    const e2 = yield* Effect.flip(a.within(Work.runEvery("1 second", () => Effect.void, { modulo: "forever" as never })))
    expect(e2.message).toMatch(/modulo/)
  })))

// --- runAsLeader --------------------------------------------------------------------------------

it.effect("runAsLeader runs on index 0 only; on renegotiation it is interrupted and the next leader starts after it stopped", () =>
  inMemory(Effect.gen(function*() {
    const log = yield* makeLog
    let leading = 0
    let maxLeading = 0
    const duty = (name: string) => (asg: Assignment) =>
      Effect.acquireRelease(
        Effect.zipRight(
          Effect.sync(() => {
            leading++
            maxLeading = Math.max(maxLeading, leading)
          }),
          log.push(`${name}:lead:${asg.epoch}:${asg.index}`)
        ),
        () =>
          Effect.sleep(Duration.millis(200)).pipe(
            Effect.zipRight(log.push(`${name}:end:${asg.epoch}`)),
            Effect.zipRight(Effect.sync(() => leading--))
          )
      ).pipe(Effect.zipRight(Effect.never))
    const a = yield* member({ name: "a" })
    yield* a.within(Work.runAsLeader(duty("a")))
    yield* advanceUntil(() => log.find("a:lead") !== undefined)
    const b = yield* member({ name: "b" })
    yield* b.within(Work.runAsLeader(duty("b")))
    yield* advanceUntil(() => Effect.zipWith(isAssigned(a.m, 2), isAssigned(b.m, 2), (x, y) => x && y))
    yield* TestClock.adjust(Duration.seconds(2))
    // Two epochs so far (a alone, a and b); a led both, b neither.
    expect(log.events.filter((e) => e.what.includes(":lead:")).every((e) => e.what.startsWith("a:") && e.what.endsWith(":0")))
      .toBe(true)
    expect(log.find("b:lead")).toBeUndefined()

    yield* Effect.fork(a.close) // b becomes index 0 of the next epoch (a's duty needs the clock to stop)
    yield* advanceUntil(() => log.find("b:lead") !== undefined, Duration.seconds(5))
    const aEnds = log.events.filter((e) => e.what.startsWith("a:end"))
    expect(log.find("b:lead")!.at).toBeGreaterThanOrEqual(aEnds[aEnds.length - 1]!.at)
    expect(log.find("b:lead")!.what).toMatch(/:0$/)
    expect(maxLeading).toBe(1)
  })))

it.effect("a failed leader duty is restarted after retryDelay while the member leads; a finished one waits for the next epoch", () =>
  inMemory(Effect.gen(function*() {
    const a = yield* member()
    const attempts: Array<number> = []
    yield* a.within(Work.runAsLeader(
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        attempts.push(now)
        return attempts.length < 3 ? Effect.fail("not yet") : Effect.void
      }),
      { retryDelay: "500 millis" }
    ))
    yield* advanceUntil(() => attempts.length >= 1)
    yield* TestClock.adjust(Duration.seconds(5))
    expect(attempts.length).toBe(3)
    expect(attempts[1]! - attempts[0]!).toBe(500)
    expect(attempts[2]! - attempts[1]!).toBe(500)
  })))

// --- a self-fence and recovery within one epoch (issue 17, item 5) ------------------------------

/**
 * Renewals hang for longer than lease − fenceMargin (the member fences itself) but less than the
 * lease (its row survives); then they resume: the member goes Assigned -> Fenced -> Assigned in the
 * same epoch (possibly more than once while the backlog of renewals drains), and its work is started
 * again in that epoch. Renewals stay hung for `extra` after the member fenced itself. Returns once the
 * member has been assigned for 2 s in a row.
 */
const fenceAndRecover = (a: { readonly m: Membership.MembershipService }, extra: Duration.DurationInput) =>
  Effect.gen(function*() {
    const control = yield* InMemoryMembershipStore.InMemoryStoreControl
    const before = yield* a.m.state
    if (before._tag !== "Assigned") return yield* Effect.dieMessage("expected an assigned member")
    yield* control.hang(a.m.memberId)
    const fencedAfter = yield* advanceUntil(() => Effect.map(a.m.state, (s) => s._tag === "Fenced"), Duration.seconds(10))
    yield* TestClock.adjust(extra)
    yield* control.resume(a.m.memberId)
    let since = yield* Clock.currentTimeMillis
    yield* advanceUntil(() =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        if ((yield* a.m.state)._tag !== "Assigned") since = now
        return now - since >= 2_000
      }), Duration.seconds(10))
    return { epoch: before.epoch, fencedAfter, hungFor: fencedAfter + Duration.toMillis(extra), after: yield* a.m.state }
  })

/** The states went Assigned -> Fenced -> ... -> Assigned, all in `epoch`. */
const expectFencedAndBack = (
  states: ReadonlyArray<{ readonly at: number; readonly tag: string; readonly epoch: number | undefined }>,
  epoch: number
) => {
  expect(states.map((s) => s.tag)).toContain("Fenced")
  const from = states.findIndex((s) => s.tag === "Fenced")
  expect(states[from - 1]).toMatchObject({ tag: "Assigned", epoch })
  for (const s of states.slice(from)) {
    expect(["Assigned", "Fenced"]).toContain(s.tag)
    expect(s.epoch).toBe(epoch)
  }
  expect(states[states.length - 1]).toMatchObject({ tag: "Assigned", epoch })
  const back = from + states.slice(from).findIndex((s) => s.tag === "Assigned")
  return { fencedAt: states[from]!.at, backAt: states[back]!.at }
}

it.effect("a fence and recovery in the same epoch: a finished leader duty does not run again; an unfinished one restarts", () =>
  inMemory(Effect.gen(function*() {
    const log = yield* makeLog
    const a = yield* member({ name: "a", lease: "10 seconds", fenceMargin: "4 seconds" })
    const states = yield* recordStates(a)
    // A duty that finishes, and one that runs until it is interrupted.
    yield* a.within(Work.runAsLeader((asg) => log.push(`once:${asg.epoch}`)))
    yield* a.within(Work.runAsLeader((asg) =>
      Effect.acquireRelease(log.push(`loop:start:${asg.epoch}`), () => log.push(`loop:stop:${asg.epoch}`)).pipe(
        Effect.zipRight(Effect.never)
      )
    ))
    yield* advanceUntil(() => log.find("once") !== undefined && log.find("loop:start") !== undefined)
    yield* TestClock.adjust(Duration.seconds(2))

    const r = yield* fenceAndRecover(a, "2 seconds")
    // Hung for more than lease − fenceMargin (less one heartbeat), and back within the lease, in the same epoch.
    expect(r.fencedAfter).toBeGreaterThan(6_000 - 1_000)
    expect(r.hungFor).toBeLessThan(10_000 - 1_000)
    const { backAt, fencedAt } = expectFencedAndBack(states, r.epoch)
    expect(backAt - fencedAt).toBeGreaterThanOrEqual(2_000)

    yield* TestClock.adjust(Duration.seconds(5))
    const whats = log.events.map((e) => e.what)
    // The finished duty ran once in the epoch.
    expect(whats.filter((w) => w.startsWith("once:"))).toEqual([`once:${r.epoch}`])
    // The unfinished one was stopped by each fence and started again after each recovery.
    const loop = whats.filter((w) => w.startsWith("loop:"))
    expect(loop.length).toBeGreaterThanOrEqual(3)
    loop.forEach((w, i) => expect(w).toBe(`loop:${i % 2 === 0 ? "start" : "stop"}:${r.epoch}`))
    expect(loop.length % 2).toBe(1)
  })))

it.effect("a fence and recovery in the same epoch: runEvery's run counter continues and its schedule resumes on its grid", () =>
  inMemory(Effect.gen(function*() {
    const a = yield* member({ name: "a", lease: "10 seconds", fenceMargin: "4 seconds" })
    const states = yield* recordStates(a)
    const ticks: Array<Work.Tick & { readonly at: number }> = []
    yield* a.within(Work.runEvery(
      "3 seconds",
      (tick) => Effect.map(Clock.currentTimeMillis, (at) => void ticks.push({ ...tick, at })),
      { modulo: "1 second", offset: "250 millis" }
    ))
    yield* advanceUntil(() => ticks.length >= 2, Duration.seconds(10))
    const r = yield* fenceAndRecover(a, "2 seconds")
    const { backAt, fencedAt } = expectFencedAndBack(states, r.epoch)
    expect(backAt - fencedAt).toBeGreaterThanOrEqual(2_000)
    const recoveredAt = states[states.length - 1]!.at
    yield* TestClock.adjust(Duration.seconds(9))

    // One epoch throughout; the counter counts on (0, 1, 2, ...) across the fence.
    expect(new Set(ticks.map((t) => t.epoch))).toEqual(new Set([r.epoch]))
    expect(ticks.map((t) => t.run)).toEqual(ticks.map((_, i) => i))
    // Every run on time and on one grid of 3 s...
    for (const t of ticks) {
      expect(t.at).toBe(t.dueAt)
      expect((t.dueAt - ticks[0]!.dueAt) % 3_000).toBe(0)
    }
    // ...none while fenced, and after the recovery the next slot of that grid, not a schedule
    // recomputed (an interval later) from the recovery.
    for (const t of ticks) expect(t.at < fencedAt || t.at >= backAt).toBe(true)
    // (a slot passed while fenced: it was skipped, not counted)
    expect(ticks.some((t, i) => i > 0 && t.dueAt - ticks[i - 1]!.dueAt > 3_000)).toBe(true)
    const resumed = ticks.filter((t) => t.at >= recoveredAt)
    expect(resumed.length).toBeGreaterThanOrEqual(3)
    expect(resumed[0]!.dueAt - recoveredAt).toBeLessThan(3_000)
  })))

// --- registrations that close while their run will not stop -------------------------------------

it.effect("a leader duty registered again while its closed registration's run is still stopping starts only after that run stopped", () =>
  inMemory(Effect.gen(function*() {
    // An adversarial review (real PostgreSQL): the app closes a duty's layer, whose run ignores its
    // interruption for longer than stopTimeout (the close goes on after it, logging an error), and
    // builds the layer again: the new registration started its run at once, beside the old one, on
    // one leader in one epoch: the singleton duty twice at once.
    const log = yield* makeLog
    let running = 0
    let maxRunning = 0
    const duty = Effect.acquireRelease(
      Effect.zipRight(Effect.sync(() => {
        running++
        maxRunning = Math.max(maxRunning, running)
      }), log.push("start")),
      // A cleanup of 3 s, longer than stopTimeout (1 s).
      () => Effect.sleep(Duration.seconds(3)).pipe(Effect.zipRight(log.push("end")), Effect.zipRight(Effect.sync(() => running--)))
    ).pipe(Effect.zipRight(Effect.never))
    const a = yield* member({ name: "a", stopTimeout: "1 second" })
    const first = yield* Scope.make()
    yield* Work.runAsLeader(duty).pipe(Effect.provideService(Membership.Membership, a.m), Scope.extend(first))
    yield* advanceUntil(() => running === 1)
    const closing = yield* Effect.fork(Scope.close(first, Exit.void))
    expect(yield* advanceUntil(() => closing.unsafePoll() !== null)).toBe(1000)
    expect(running).toBe(1) // the close went on after stopTimeout, the cleanup still running
    const second = yield* Scope.make()
    yield* Work.runAsLeader(duty).pipe(Effect.provideService(Membership.Membership, a.m), Scope.extend(second))
    yield* advanceUntil(() => log.events.filter((e) => e.what === "start").length === 2, Duration.seconds(10))
    expect(maxRunning).toBe(1)
    expect(log.events.map((e) => e.what)).toEqual(["start", "end", "start"])
    // Started as soon as the old run's cleanup ended (3 s after the close began), not an epoch later.
    expect(log.events[2]!.at - log.events[1]!.at).toBeLessThan(100)
    yield* Effect.fork(Scope.close(second, Exit.void))
  })))

it.effect("closing the scope of a whileAssigned registration interrupts its run (it ran on until the epoch ended)", () =>
  inMemory(Effect.gen(function*() {
    const log = yield* makeLog
    const a = yield* member({ name: "a" })
    const registration = yield* Scope.make()
    yield* a.m.whileAssigned((asg) =>
      Effect.acquireRelease(log.push(`start:${asg.epoch}`), () => log.push(`end:${asg.epoch}`)).pipe(Effect.zipRight(Effect.never))
    ).pipe(Scope.extend(registration))
    yield* advanceUntil(() => log.find("start") !== undefined)
    yield* Scope.close(registration, Exit.void)
    yield* advanceUntil(() => log.find("end") !== undefined, Duration.seconds(1))
    expect(yield* isAssigned(a.m, 1)).toBe(true) // the same epoch: the close, not a change, ended it
  })))
