/**
 * A leave that finds the group's lock held by another process's change (`busyLeave` in
 * PgMembershipStore.ts, `Statements.expireLease`). Measured before it (docs/benchmarks.md, 64
 * processes): when 65 processes left at once, 51-60 leaves waited their turn past the final leave's
 * budget and gave up, and their rows stayed a whole lease. Now such a leave, once it has waited half
 * a statement timeout (1 s here) for its turn, ends its own lease (its member has stopped working),
 * and the next change deletes every such row. Two stores on separate pools stand for two processes;
 * process A's join holds the group lock (paused once it has the lock, before it touches a row) while
 * process B's members leave.
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Layer, Option, Redacted, Schedule } from "effect"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Statements from "../../src/internal/pg/statements.js"
import type { MemberInfo } from "../../src/MembershipStore.js"
import * as Migrations from "../../src/Migrations.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, randomGroupId, writerOf } from "../support/Database.js"

const info = (name: string): MemberInfo => ({ memberId: crypto.randomUUID(), name, host: "test", pid: 1 })
const lease = 60_000

/** Until the store's hook has seen `step` (dies after 5 s). */
const untilStep = (steps: ReadonlyArray<string>, step: string) =>
  Effect.sync(() => steps.includes(step)).pipe(
    Effect.flatMap((seen) => (seen ? Effect.void : Effect.fail("not yet"))),
    Effect.retry(Schedule.spaced(Duration.millis(10)).pipe(Schedule.upTo(Duration.seconds(5)))),
    Effect.orDie
  )

/**
 * Two processes' stores. A's next join, once it holds the group's lock, waits at `step` until
 * `release`: at "group", before it reads or writes a row (as any change ahead in the queue); at
 * "reap", after it has read the group and locked every member row `FOR KEY SHARE`
 * (`selectGroupForUpdate`), as a change is for most of its time under the lock. A's statement
 * timeout is 10 s (its transaction waits idle meanwhile), B's 2 s.
 */
const twoProcesses = (step: "group" | "reap" = "group") => Effect.gen(function*() {
  const layer = (name: string) =>
    Notifier.layer.pipe(
      Layer.provideMerge(PgClient.layer({ url: Redacted.make(databaseUrl()), applicationName: name, maxConnections: 4 }))
    )
  const ctxA = yield* Layer.build(layer("busy-leave-A"))
  const ctxB = yield* Layer.build(layer("busy-leave-B"))
  yield* Migrations.run.pipe(Effect.provide(ctxB))
  const held = { reached: yield* Deferred.make<void>(), go: yield* Deferred.make<void>(), armed: false }
  const storeA = yield* PgMembershipStore.make({
    statementTimeout: Duration.seconds(10),
    onStatement: (operation, reached) =>
      Effect.suspend(() => {
        if (operation !== "join" || reached !== step || !held.armed) return Effect.void
        held.armed = false
        return Effect.zipRight(Deferred.succeed(held.reached, undefined), Deferred.await(held.go))
      })
  }).pipe(Effect.provide(ctxA))
  const stepsB: Array<string> = []
  const storeB = yield* PgMembershipStore.make({
    statementTimeout: Duration.seconds(2),
    onStatement: (operation, step) => Effect.sync(() => void stepsB.push(`${operation}:${step}`))
  }).pipe(Effect.provide(ctxB))
  const sql = yield* SqlClient.SqlClient.pipe(Effect.provide(ctxB))
  const rowOf = (groupId: string, m: MemberInfo) =>
    Effect.map(
      sql<{ expired: boolean }>`
        SELECT lease_expires_at <= now() AS expired FROM modulo_group.members
         WHERE group_id = ${groupId} AND member_id = ${m.memberId}`,
      ([r]) => (r === undefined ? "gone" as const : r.expired ? "expired" as const : "live" as const)
    )
  const epochOf = (groupId: string) =>
    Effect.map(sql<{ epoch: string }>`SELECT epoch FROM modulo_group.groups WHERE group_id = ${groupId}`, ([g]) => Number(g!.epoch))
  /** A's join of a new member, holding the lock until `release` (the fiber of A's join). */
  const holdLock = (groupId: string, slots?: number) =>
    Effect.gen(function*() {
      held.armed = true
      const fiber = yield* Effect.fork(storeA.join(groupId, info("X"), lease, {}, slots === undefined ? {} : { slots }))
      yield* Deferred.await(held.reached)
      return fiber
    })
  return { sql, storeB, stepsB, rowOf, epochOf, holdLock, release: Deferred.succeed(held.go, undefined) }
})

describe("a leave behind another process's change", () => {
  // "reap": a review of the busy leave's skip of a row a fenced transaction holds (`FOR UPDATE SKIP
  // LOCKED`, its first form): a change holds `FOR KEY SHARE` on every member row too, so behind a
  // change past that point both leaves skipped their rows and waited their turn (4 s, leases running).
  for (const step of ["group", "reap"] as const) {
  it.live(`after half a statement timeout it ends its own lease, without the lock; the next change deletes every such row (the change held at "${step}")`, () =>
    Effect.gen(function*() {
      const { storeB, stepsB, rowOf, epochOf, holdLock, release } = yield* twoProcesses(step)
      const groupId = randomGroupId("busy-leave")
      const [m0, m1, m2, m3] = [info("M0"), info("M1"), info("M2"), info("M3")]
      for (const m of [m0, m1, m2, m3]) yield* storeB.join(groupId, m, lease)
      const e = yield* epochOf(groupId)
      for (const m of [m0, m1, m2, m3]) yield* storeB.heartbeat(groupId, m.memberId, e, lease)

      const x = yield* holdLock(groupId)
      // Two leaves of process B while A's change holds the lock: both return, the lock still held
      // (before: each waited for A's commit, past the final leave's budget if need be, then made a
      // change of its own).
      const left = yield* Effect.all([storeB.leave(groupId, m1.memberId), storeB.leave(groupId, m2.memberId)], {
        concurrency: "unbounded"
      }).pipe(Effect.timeoutOption(Duration.seconds(4)))
      expect(left).toEqual(Option.some([true, true]))
      expect(stepsB.filter((s) => s === "leave:expire").length).toBeGreaterThanOrEqual(1)
      // Their rows stay until a change, their leases run out; a renewal cannot bring one back.
      expect(yield* rowOf(groupId, m1)).toBe("expired")
      expect(yield* rowOf(groupId, m2)).toBe("expired")
      expect(yield* epochOf(groupId)).toBe(e)
      // A member that stays sees them as expired (and would ask for a reap).
      const view = yield* storeB.heartbeat(groupId, m0.memberId, e, lease)
      expect(Option.map(view, (v) => v.expired)).toEqual(Option.some(true))

      // A's change, when it goes on, deletes both: one change for the join and the two leaves.
      yield* release
      const joined = yield* Fiber.join(x)
      expect(yield* rowOf(groupId, m1)).toBe("gone")
      expect(yield* rowOf(groupId, m2)).toBe("gone")
      expect(joined.epoch).toBe(e + 1)
      expect(joined.size).toBe(3)
      const renewed = yield* storeB.heartbeat(groupId, m1.memberId, e + 1, lease)
      expect(Option.isNone(renewed)).toBe(true)
      const after = yield* storeB.heartbeat(groupId, m3.memberId, e + 1, lease)
      expect(Option.map(after, (v) => [v.epoch, v.size, v.expired])).toEqual(Option.some([e + 1, 3, false]))
    }).pipe(Effect.scoped), 30_000)
  }

  it.live("in slots mode it waits for the lock and deletes its row, as before", () =>
    Effect.gen(function*() {
      const { storeB, stepsB, rowOf, epochOf, holdLock, release } = yield* twoProcesses()
      const groupId = randomGroupId("busy-leave-slots")
      const [m0, m1] = [info("M0"), info("M1")]
      for (const m of [m0, m1]) yield* storeB.join(groupId, m, lease, {}, { slots: 8 })
      const x = yield* holdLock(groupId, 8)
      const leaving = yield* Effect.fork(storeB.leave(groupId, m1.memberId))
      // Past half a statement timeout it tries to end its lease, which changes nothing in slots mode.
      yield* untilStep(stepsB, "leave:expire")
      yield* Effect.sleep(Duration.millis(200))
      expect(Option.isNone(yield* Fiber.poll(leaving))).toBe(true)
      expect(yield* rowOf(groupId, m1)).toBe("live")
      yield* release
      expect(yield* Fiber.join(leaving)).toBe(true)
      expect(yield* rowOf(groupId, m1)).toBe("gone")
      // It tried to end its lease once, which changed nothing, then waited for the lock.
      expect(stepsB.filter((s) => s === "leave:expire")).toHaveLength(1)
      yield* Fiber.join(x)
      expect(yield* epochOf(groupId)).toBeGreaterThan(0)
    }).pipe(Effect.scoped), 30_000)

  it.live("a renewal the server started a moment before the lease was ended does not bring it back", () =>
    Effect.gen(function*() {
      const { sql, storeB, rowOf } = yield* twoProcesses()
      const groupId = randomGroupId("busy-leave-late")
      const m0 = info("M0")
      const view = yield* storeB.join(groupId, m0, lease)
      const [clock] = yield* sql<{ ms: string }>`SELECT (extract(epoch FROM now()) * 1000)::bigint AS ms`
      const t = Number(clock!.ms)
      const writer = yield* writerOf(m0.memberId).pipe(Effect.provideService(SqlClient.SqlClient, sql))
      const ended = yield* Statements.expireLease(sql, groupId, m0.memberId, writer, new Date(t).toISOString(), 2_000, Number.MAX_SAFE_INTEGER)
      expect(ended.length).toBe(1)
      // The renewal's statement time is 1 s before the leave's (it was running when the leave came,
      // and reaches the row after it). With the lease ended at the leave's own time, it renewed it
      // for a whole lease.
      const renewed = yield* Statements.renewLease(
        sql, groupId, m0.memberId, view.epoch, lease, false, new Date(t - 1_000).toISOString(), 2_000, Date.now() * 1_000, writer
      )
      expect(renewed).toEqual([])
      expect(yield* rowOf(groupId, m0)).toBe("expired")
    }).pipe(Effect.scoped), 30_000)

  it.live("behind a change shorter than half a statement timeout it waits its turn and deletes its row (a small group's shutdown leaves nothing behind)", () =>
    Effect.gen(function*() {
      const { storeB, stepsB, rowOf, epochOf, holdLock, release } = yield* twoProcesses()
      const groupId = randomGroupId("busy-leave-short")
      const [m0, m1] = [info("M0"), info("M1")]
      for (const m of [m0, m1]) yield* storeB.join(groupId, m, lease)
      const e = yield* epochOf(groupId)
      const x = yield* holdLock(groupId)
      const leaving = yield* Effect.fork(storeB.leave(groupId, m1.memberId))
      // It found the lock busy; A's change commits 300 ms later.
      yield* untilStep(stepsB, "leave:busy")
      yield* Effect.sleep(Duration.millis(300))
      yield* release
      yield* Fiber.join(x)
      expect(yield* Fiber.join(leaving)).toBe(true)
      expect(stepsB).not.toContain("leave:expire")
      expect(yield* rowOf(groupId, m1)).toBe("gone")
      // A's join, then B's leave: a change each.
      expect(yield* epochOf(groupId)).toBe(e + 2)
    }).pipe(Effect.scoped), 30_000)
})
