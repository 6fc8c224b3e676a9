/**
 * Break 3: work that will not stop holds the barrier, loudly (fail closed). In-memory store and
 * TestClock, default config (heartbeat 1 s, lease 10 s, fence margin 2 s, stop timeout 5 s).
 *
 * The stuck work ignores its interruption for 3 × stopTimeout (an uninterruptible finalizer that
 * sleeps 15 s). While it runs, its member keeps its row and its lease, never acknowledges the next
 * epoch, and says so (stuck = true, `stoppingSince` on its row, an error log); nobody starts the
 * next epoch before the stuck work has ended, nor when the stuck member is asked to leave.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Scope } from "effect"
import type { MemberRow } from "../../src/MembershipStore.js"
import type { MemberState } from "../../src/MemberState.js"
import { at, collectLogs, HEARTBEAT, LEASE, now, setup, STOP, stuckWork, until, untilEffect } from "./support.js"

interface Run {
  readonly epoch: number
  readonly index: number
  readonly size: number
  readonly start: number
  end?: number
}

/** A worker that, while `stuck()` holds, ignores its interruption for 3 × stopTimeout. */
const stuckWorker = (runs: Array<Run>, stuck: () => boolean) => (a: { epoch: number; index: number; size: number }) =>
  stuckWork(runs, (start) => ({ epoch: a.epoch, index: a.index, size: a.size, start }), stuck)

const rowOf = (rows: ReadonlyArray<MemberRow>, id: string) => rows.find((r) => r.memberId === id)

describe("Break 3: stuck work holds the barrier", () => {
  it.scoped("a renegotiation waits for work that ignores interruption for 3 × stopTimeout; then the group converges", () => {
    const logs = collectLogs()
    return Effect.gen(function*() {
      const groupId = "safety-stuck-renegotiation"
      const { join, rec, store } = yield* setup(groupId)
      yield* join({ name: "a" })
      yield* join({ name: "b" })
      const c = yield* join({ name: "c" }, false)
      const runs: Array<Run> = []
      let stuck = true
      yield* c.m.whileAssigned(stuckWorker(runs, () => stuck)).pipe(Scope.extend(c.scope))
      yield* until(() => rec.working().length === 2 && rec.working().every((w) => w.size === 3) && runs.length === 1)
      const oldEpoch = runs[0]!.epoch
      yield* at(1_500)
      const t0 = yield* now
      yield* join({ name: "d" }) // a new epoch: everyone must stop and acknowledge
      stuck = false // c's work in the new epoch stops normally

      // Sample every 100 ms while c's work refuses to stop.
      const samples: Array<{ t: number; state: MemberState; row: MemberRow | undefined }> = []
      yield* at(t0 + 100)
      while (runs[0]!.end === undefined) {
        samples.push({ t: yield* now, state: yield* c.m.state, row: rowOf(yield* store.members(groupId), c.id) })
        yield* at((yield* now) + 100)
      }
      const cEnd = runs[0]!.end!
      // The work was asked to stop when c learnt of d's epoch (at once, by notification), and took 15 s.
      expect(cEnd - t0).toBeGreaterThanOrEqual(3 * STOP)
      expect(cEnd - t0).toBeLessThanOrEqual(3 * STOP + 100)

      for (const s of samples) {
        // c never gave up its row nor let its lease lapse, and never acknowledged the new epoch.
        expect(s.row, `c's row at ${s.t}`).toBeDefined()
        expect(s.row!.leaseLeftMs, `c's lease at ${s.t}`).toBeGreaterThan(0)
        expect(s.row!.leaseLeftMs).toBeGreaterThan(LEASE - 2 * HEARTBEAT)
        expect(s.row!.ackedEpoch, `c's ack at ${s.t}`).toBe(oldEpoch)
        expect(s.state._tag, `c's state at ${s.t}`).toBe("Renegotiating")
        // Past the stop timeout (and one renewal to tell the store), c says it is stuck.
        if (s.t >= t0 + STOP + HEARTBEAT) {
          expect(s.state).toMatchObject({ _tag: "Renegotiating", stuck: true, epoch: oldEpoch })
          expect(s.row!.stoppingSince, `c's stoppingSince at ${s.t}`).not.toBeNull()
        }
      }
      expect(samples.filter((s) => s.t >= t0 + STOP + HEARTBEAT).length).toBeGreaterThan(80)

      // Nobody started any newer epoch before c's old work had ended.
      const newer = rec.marks.filter((m) => m.kind === "start" && m.epoch > oldEpoch)
      expect(newer.filter((m) => m.at < cEnd)).toEqual([])
      expect(runs.slice(1).filter((r) => r.start < cEnd)).toEqual([])

      // Then the group converges at once: a, b, d (recorded) and c in one 4-member epoch.
      const done = yield* until(
        () =>
          rec.working().length === 3 && runs.length >= 2 && runs.at(-1)!.end === undefined &&
          new Set([...rec.working().map((w) => w.epoch), runs.at(-1)!.epoch]).size === 1,
        2 * HEARTBEAT
      )
      expect(done - cEnd).toBeLessThanOrEqual(HEARTBEAT)
      const all = [...rec.working().map((w) => ({ index: w.index, size: w.size })), runs.at(-1)!]
      expect(all.map((w) => w.size)).toEqual([4, 4, 4, 4])
      expect(all.map((w) => w.index).sort()).toEqual([0, 1, 2, 3])
      expect(yield* c.m.state).toMatchObject({ _tag: "Assigned", epoch: runs.at(-1)!.epoch })
      const row = rowOf(yield* store.members(groupId), c.id)!
      expect(row.stoppingSince).toBeNull()
      expect(rec.violations).toEqual([])
      // Loudly: an error at the stop timeout, and one per renewal while stuck.
      const errors = logs.lines.filter((l) => l.level === "ERROR" && l.at >= t0 && l.at <= cEnd)
      expect(errors.some((l) => /did not stop within stopTimeout/.test(l.message))).toBe(true)
      expect(errors.filter((l) => /has not stopped for/.test(l.message)).length).toBeGreaterThanOrEqual(8)
    }).pipe(Effect.provide(logs.layer))
  })

  it.scoped("a stuck member that is asked to leave keeps its row (renewing) until its work stops, then leaves", () => {
    const logs = collectLogs()
    return Effect.gen(function*() {
      const groupId = "safety-stuck-leave"
      const { join, of, rec, store } = yield* setup(groupId)
      yield* join({ name: "a" })
      yield* join({ name: "b" })
      const c = yield* join({ name: "c" }, false)
      const runs: Array<Run> = []
      yield* c.m.whileAssigned(stuckWorker(runs, () => true)).pipe(Scope.extend(c.scope))
      yield* until(() => rec.working().length === 2 && rec.working().every((w) => w.size === 3) && runs.length === 1)
      const oldEpoch = runs[0]!.epoch
      yield* at(1_500)
      const t0 = yield* now
      const closing = yield* Effect.forkDaemon(c.close)

      const samples: Array<{ t: number; row: MemberRow | undefined; closed: boolean }> = []
      while (runs[0]!.end === undefined) {
        samples.push({ t: yield* now, row: rowOf(yield* store.members(groupId), c.id), closed: closing.unsafePoll() !== null })
        yield* at((yield* now) + 100)
      }
      const cEnd = runs[0]!.end!
      expect(cEnd - t0).toBe(3 * STOP)
      for (const s of samples) {
        expect(s.row, `c's row at ${s.t}`).toBeDefined()
        expect(s.row!.leaseLeftMs, `c's lease at ${s.t}`).toBeGreaterThan(0)
        if (s.t >= t0 + STOP + HEARTBEAT) expect(s.row!.stoppingSince, `c's stoppingSince at ${s.t}`).not.toBeNull()
        expect(s.closed, `c's scope closed at ${s.t} while its work still ran`).toBe(false)
      }
      expect(of("leave", c.id).filter((x) => x.at < cEnd)).toEqual([])
      // a and b went on in the old epoch and started nothing newer while c's work ran.
      expect(rec.marks.filter((m) => m.kind === "start" && m.at > t0 && m.at < cEnd)).toEqual([])
      expect(rec.marks.filter((m) => m.kind === "end" && m.at > t0 && m.at < cEnd)).toEqual([])
      expect(samples.length).toBeGreaterThan(140)
      expect(rec.marks.filter((m) => m.kind === "start" && m.epoch > oldEpoch && m.at < cEnd)).toEqual([])

      // Once the work has stopped, c leaves at once and a, b go on as two, in a newer epoch.
      const done = yield* until(() => rec.working().length === 2 && rec.working().every((w) => w.size === 2), HEARTBEAT)
      expect(rec.working().every((w) => w.epoch > oldEpoch)).toBe(true)
      expect(done - cEnd).toBeLessThanOrEqual(10)
      expect(rowOf(yield* store.members(groupId), c.id)).toBeUndefined()
      yield* untilEffect(Effect.sync(() => closing.unsafePoll() !== null), HEARTBEAT)
      expect(yield* c.m.state).toMatchObject({ _tag: "Left" })
      expect(Option.isNone(yield* c.m.assignment)).toBe(true)
      expect(rec.violations).toEqual([])
      expect(logs.lines.some((l) => l.level === "ERROR" && /holding the barrier/.test(l.message))).toBe(true)
    }).pipe(Effect.provide(logs.layer))
  })
})

describe("a stop's report answers that stop only", () => {
  // Found by an adversarial review (on PostgreSQL, a row held locked past the lease): the background
  // watcher of a stop past the stop timeout reported `WorkStopped` into the driver's queue, where it
  // waited behind the app's `leave()`, while the rejoin (alone in its group) had already started new
  // work. The leave stopped that work, which was slow to stop too, and took the old report for its
  // stop: the member deleted its row and was `Left` while its new work still ran.
  it.scoped("a member that lost its row while stuck, rejoined alone and is asked to leave keeps its row until its new work stops", () => {
    const logs = collectLogs()
    return Effect.gen(function*() {
      const groupId = "safety-stale-stop-report"
      const { control, join, of, store } = yield* setup(groupId)
      const c = yield* join({ name: "c" }, false)
      const runs: Array<Run> = []
      yield* c.m.whileAssigned(stuckWorker(runs, () => true)).pipe(Scope.extend(c.scope))
      yield* until(() => runs.length === 1)
      // Its renewals hang (a slow database): it fences, its work does not stop within the stop
      // timeout, and its lease runs out in the store.
      yield* at(2_000)
      yield* control.hang(c.id)
      yield* at(15_000)
      expect(yield* c.m.state).toMatchObject({ _tag: "Fenced", stopping: true, stuck: true })
      // Resumed: the renewal finds no row; the member is lost and its rejoin waits for the old work.
      yield* control.resume(c.id)
      yield* at(15_100)
      expect((yield* c.m.state)._tag).toBe("Lost")
      // The app asks it to leave meanwhile.
      yield* at(16_000)
      const leaving = yield* Effect.forkDaemon(c.m.leave)
      // Its join takes a while (a round trip to a database): the old work's stop is reported before
      // the join's view starts new work.
      yield* at(24_000)
      yield* control.hang(c.id)
      yield* at(25_500)
      expect(runs[0]!.end).toBe(25_000)
      yield* control.resume(c.id)
      // The old work stops; the rejoin (alone: the barrier is down at once) starts new work, which
      // the leave stops and which is slow to stop too.
      yield* until(() => runs.length === 2, 30_000, 10)
      const second = runs[1]!
      yield* until(() => second.end !== undefined, 30_000, 10)
      // The member kept its row until its new work had stopped, and only then left.
      const leaves = of("leave", c.id)
      expect(leaves.length).toBeGreaterThan(0)
      expect(leaves.filter((l) => l.at < second.end!), "leave sent while the new work still ran").toEqual([])
      yield* untilEffect(Effect.sync(() => leaving.unsafePoll() !== null), 2 * HEARTBEAT)
      expect(yield* c.m.state).toMatchObject({ _tag: "Left" })
      expect(rowOf(yield* store.members(groupId), c.id)).toBeUndefined()
    }).pipe(Effect.provide(logs.layer))
  })
})
