/**
 * Fenced transactions against real PostgreSQL, in real time: members are fibers of this process over
 * the real store; a wrapper lets a test stop one member's heartbeats (a hang, as far as the database
 * can tell) while its fenced transaction stays open.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { expect, it } from "@effect/vitest"
import { Cause, Deferred, Duration, Effect, Exit, Fiber, Layer, Option, Scope } from "effect"
import * as Fenced from "../src/Fenced.js"
import * as Membership from "../src/Membership.js"
import type { MembershipConfigInput } from "../src/MembershipConfig.js"
import { StoreError } from "../src/MembershipError.js"
import type { MembershipStoreService } from "../src/MembershipStore.js"
import { MembershipStore } from "../src/MembershipStore.js"
import type { Assignment } from "../src/MemberState.js"
import * as Notifier from "../src/internal/pg/notifier.js"
import * as PgMembershipStore from "../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "./support/Database.js"

const fast = { heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const

/** The real store, with heartbeats that a test can fail for one member. */
const PausableStore = Effect.gen(function*() {
  yield* PgMembershipStore.prepare()
  const inner = yield* PgMembershipStore.make()
  const paused = new Set<string>()
  const store: MembershipStoreService = {
    ...inner,
    heartbeat: (groupId, memberId, ack, leaseMs, announce) =>
      paused.has(memberId)
        ? Effect.fail(new StoreError({ operation: "heartbeat", reason: "paused by the test" }))
        : inner.heartbeat(groupId, memberId, ack, leaseMs, announce)
  }
  return {
    store,
    pause: (memberId: string) => Effect.sync(() => void paused.add(memberId)),
    resume: (memberId: string) => Effect.sync(() => void paused.delete(memberId))
  }
})

/** Polls `done` every 20 ms of real time; returns the milliseconds it took. */
const waitFor = <E, R>(done: Effect.Effect<boolean, E, R>, max = Duration.seconds(10)) =>
  Effect.gen(function*() {
    const start = Date.now()
    while (!(yield* done)) {
      if (Date.now() - start > Duration.toMillis(max)) return yield* Effect.dieMessage(`not done within ${Duration.format(max)}`)
      yield* Effect.sleep(Duration.millis(20))
    }
    return Date.now() - start
  })

const setup = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const groupId = randomGroupId(prefix)
    const { pause, resume, store } = yield* PausableStore
    // A table of the app's, written through fenced transactions.
    const table = `fenced_${groupId.replace(/-/g, "_")}`
    yield* Effect.acquireRelease(
      sql`CREATE TABLE ${sql(table)} (id bigserial PRIMARY KEY, note text NOT NULL, epoch bigint)`,
      () => Effect.orDie(sql`DROP TABLE IF EXISTS ${sql(table)}`)
    )
    const join = (input: Partial<MembershipConfigInput> = {}) =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const m = yield* Membership.make({ groupId, ...fast, ...input }).pipe(
          Effect.provideService(MembershipStore, store),
          Scope.extend(scope)
        )
        yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
        return m
      })
    const group = Effect.map(
      sql<{ epoch: string; changed_at: string }>`
        SELECT epoch, changed_at::text AS changed_at FROM modulo_group.groups WHERE group_id = ${groupId}`,
      (rows) => ({ epoch: Number(rows[0]!.epoch), changedAt: rows[0]!.changed_at })
    )
    const notes = Effect.map(sql<{ note: string; epoch: string }>`SELECT note, epoch FROM ${sql(table)} ORDER BY id`, (rows) =>
      rows.map((r) => `${r.note}@${r.epoch}`))
    const insert = (note: string, epoch: number) => sql`INSERT INTO ${sql(table)} (note, epoch) VALUES (${note}, ${epoch})`
    /** Backends waiting for a lock that `pid` holds. */
    const blockedBy = (pid: number) =>
      Effect.map(
        sql<{ n: string }>`SELECT count(*) AS n FROM pg_stat_activity WHERE ${pid} = ANY(pg_blocking_pids(pid))`,
        (rows) => Number(rows[0]!.n)
      )
    const allAssigned = (ms: ReadonlyArray<Membership.MembershipService>, size: number) =>
      Effect.map(Effect.forEach(ms, (m) => m.state), (states) =>
        states.every((s) => s._tag === "Assigned" && s.size === size) && new Set(states.map((s) => "epoch" in s && s.epoch)).size === 1)
    return { sql, groupId, table, store, pause, resume, join, group, notes, insert, blockedBy, allAssigned }
  })

/**
 * Opens a fenced transaction for `m` that writes a row, then waits for `release` before finishing.
 * Yields the backend pid holding its locks; the fiber returns the database time of its last statement.
 */
const holdOpen = (
  m: Membership.MembershipService,
  write: (a: Assignment) => Effect.Effect<unknown, SqlError, SqlClient.SqlClient>,
  timeout: Duration.DurationInput = "15 seconds"
) =>
  Effect.gen(function*() {
    const inside = yield* Deferred.make<number>()
    const release = yield* Deferred.make<void>()
    const assignment = yield* m.guard
    const last = { at: "-infinity" }
    const fiber = yield* Effect.fork(
      Fenced.fenced(
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          yield* write(assignment)
          const [{ pid }] = (yield* sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`) as [{ pid: number }]
          yield* Deferred.succeed(inside, pid)
          yield* Deferred.await(release)
          const [row] = yield* sql<{ last: string }>`SELECT clock_timestamp()::text AS last`
          last.at = row!.last
          return last.at
        }),
        { timeout }
      ).pipe(Effect.provideService(Membership.Membership, m))
    )
    const pid = yield* Deferred.await(inside)
    /** The database time of the transaction's last statement before the fence's final check. */
    return { pid, assignment, fiber, release: Deferred.succeed(release, undefined), last }
  })

const TestLive = Notifier.layer.pipe(Layer.provideMerge(PgLive))

it.live("a fenced transaction commits the app's writes; a failing one commits nothing", () =>
  Effect.gen(function*() {
    const t = yield* setup("fenced-ok")
    const a = yield* t.join()
    const asg = yield* a.awaitAssigned
    const value = yield* Fenced.fenced(Effect.as(t.insert("first", asg.epoch), 42)).pipe(
      Effect.provideService(Membership.Membership, a)
    )
    expect(value).toBe(42)
    // The server-side backstop against a hung client: timeouts local to the transaction.
    const settings = t.sql<{ st: string; idle: string; tx: string | null }>`
      SELECT current_setting('statement_timeout') AS st,
             current_setting('idle_in_transaction_session_timeout') AS idle,
             current_setting('transaction_timeout', true) AS tx`
    const [inside] = yield* Fenced.fenced(settings, { timeout: "3 seconds" }).pipe(Effect.provideService(Membership.Membership, a))
    expect(inside).toMatchObject({ st: "4s", idle: "4s" })
    if (inside!.tx !== null) expect(inside!.tx).toBe("4s") // PostgreSQL 17+
    const [outside] = yield* settings
    expect(outside!.idle).not.toBe("4s") // gone with the transaction
    const failed = yield* Effect.flip(
      Fenced.fenced(Effect.zipRight(t.insert("second", asg.epoch), Effect.fail("the app gave up" as const))).pipe(
        Effect.provideService(Membership.Membership, a)
      )
    )
    expect(failed).toBe("the app gave up")
    // A transaction that outlives its timeout is rolled back.
    const slow = yield* Effect.flip(
      Fenced.fenced(Effect.zipRight(t.insert("third", asg.epoch), Effect.sleep("2 seconds")), { timeout: "200 millis" }).pipe(
        Effect.provideService(Membership.Membership, a)
      )
    )
    // Its own tagged error, whose message names the option to change; not an anonymous TimeoutException.
    expect(slow._tag).toBe("FenceTimeout")
    expect(slow).toMatchObject({ timeoutMs: 200, side: "client", epoch: asg.epoch })
    expect(slow.message).toMatch(/`timeout` option of fenced/)
    expect(Cause.isTimeoutException(slow)).toBe(false)
    expect(yield* t.notes).toEqual([`first@${asg.epoch}`])
  }).pipe(Effect.scoped, Effect.provide(TestLive)))

it.live("lock modes: while a fenced transaction is open, the member's own heartbeat runs; deleting it, changing the group or locking it for a change waits", () =>
  Effect.gen(function*() {
    const t = yield* setup("fenced-locks")
    const a = yield* t.join()
    yield* a.awaitAssigned
    const held = yield* holdOpen(a, (x) => t.insert("held", x.epoch))
    /** Runs `stmt` in a transaction that gives up on a lock after 200 ms, then rolls back: "ok" or the SQLSTATE. */
    const attempt = (stmt: Effect.Effect<unknown, SqlError>) =>
      t.sql.withTransaction(
        Effect.zipRight(t.sql`SET LOCAL lock_timeout = '200ms'`, Effect.zipRight(stmt, Effect.fail("rollback" as const)))
      ).pipe(
        Effect.flip,
        Effect.map((e) => (e === "rollback" ? "ok" : String((e.cause as { code?: string }).code)))
      )
    // What a heartbeat does (non-key columns of the member's row): not blocked.
    expect(yield* attempt(t.sql`
      UPDATE modulo_group.members SET lease_expires_at = lease_expires_at, heartbeat_at = heartbeat_at,
                                      acked_epoch = acked_epoch
       WHERE member_id = ${a.memberId}`)).toBe("ok")
    // Reaping or leaving (DELETE), re-indexing (a key column), bumping the epoch, a change's FOR UPDATE,
    // and a change's advisory lock: all wait for the fenced transaction (55P03 = lock_not_available).
    expect(yield* attempt(t.sql`DELETE FROM modulo_group.members WHERE member_id = ${a.memberId}`)).toBe("55P03")
    expect(yield* attempt(t.sql`UPDATE modulo_group.members SET idx = idx + 100 WHERE member_id = ${a.memberId}`)).toBe("55P03")
    expect(yield* attempt(t.sql`UPDATE modulo_group.groups SET epoch = epoch + 1 WHERE group_id = ${t.groupId}`)).toBe("55P03")
    expect(yield* attempt(t.sql`SELECT 1 FROM modulo_group.groups WHERE group_id = ${t.groupId} FOR UPDATE`)).toBe("55P03")
    expect(yield* attempt(t.sql`SELECT pg_advisory_xact_lock(${Fenced.advisoryLockClass}, hashtext(${t.groupId}))`))
      .toBe("55P03")
    // Other fenced transactions (shared locks) are not blocked: members work in parallel.
    expect(yield* Fenced.fenced(Effect.as(t.insert("parallel", 0), "ok")).pipe(Effect.provideService(Membership.Membership, a)))
      .toBe("ok")
    yield* held.release
    yield* Fiber.join(held.fiber)
  }).pipe(Effect.scoped, Effect.provide(TestLive)))

it.live("a member's heartbeats go on during its own fenced transaction, which may outlast the lease and still commit", () =>
  Effect.gen(function*() {
    const t = yield* setup("fenced-long")
    const a = yield* t.join()
    const asg = yield* a.awaitAssigned
    const held = yield* holdOpen(a, (x) => t.insert("long", x.epoch))
    const heartbeatAt = t.sql<{ age: string }>`
      SELECT (extract(epoch FROM clock_timestamp() - heartbeat_at) * 1000)::bigint AS age
        FROM modulo_group.members WHERE member_id = ${a.memberId}`
    const start = Date.now()
    while (Date.now() - start < 2_600) { // longer than the 2 s lease
      const [row] = yield* heartbeatAt
      expect(Number(row!.age)).toBeLessThan(1_000)
      expect((yield* a.state)._tag).toBe("Assigned")
      yield* Effect.sleep("200 millis")
    }
    yield* held.release
    yield* Fiber.join(held.fiber)
    expect(yield* t.notes).toEqual([`long@${asg.epoch}`])
  }).pipe(Effect.scoped, Effect.provide(TestLive)))

it.live("a fenced transaction racing the reaping of its member: the reaper waits, the transaction fails, the epoch moves only after the rollback", () =>
  Effect.gen(function*() {
    const t = yield* setup("fenced-reap")
    const a = yield* t.join({ name: "a" })
    const b = yield* t.join({ name: "b" })
    yield* waitFor(t.allAssigned([a, b], 2))
    const e = (yield* t.group).epoch
    const held = yield* holdOpen(a, (x) => t.insert("a", x.epoch))
    expect(held.assignment.epoch).toBe(e)

    // a stops renewing (a hang, as far as the database can tell); its lease runs out on the database
    // clock; b notices and tries to reap it, and must wait for a's transaction.
    yield* t.pause(a.memberId)
    const leaseLeft = Effect.map(t.store.members(t.groupId), (rows) => rows.find((r) => r.memberId === a.memberId)!.leaseLeftMs)
    yield* waitFor(Effect.map(leaseLeft, (ms) => ms < 0), Duration.seconds(5))
    yield* waitFor(Effect.map(t.blockedBy(held.pid), (n) => n > 0), Duration.seconds(5))
    // Held for longer than b's statement timeout: b's reap times out and retries; nothing changes.
    const start = Date.now()
    let sawBlocked = 0
    while (Date.now() - start < 1_500) {
      expect((yield* t.group).epoch).toBe(e)
      expect((yield* b.state)._tag).toBe("Assigned")
      if ((yield* t.blockedBy(held.pid)) > 0) sawBlocked++
      yield* Effect.sleep("50 millis")
    }
    expect(sawBlocked).toBeGreaterThan(10)
    expect((yield* a.state)._tag).toBe("Fenced") // a fenced itself locally long ago

    // a's transaction reaches its end: its lease has expired, so it rolls back instead of committing.
    yield* held.release
    const exit = yield* Fiber.await(held.fiber)
    expect(Exit.isFailure(exit)).toBe(true)
    const error = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined
    expect(error?._tag).toBe("StaleAssignment")
    expect(error?.message).toMatch(/lease expired during the transaction/)
    expect(yield* t.notes).toEqual([])

    // Now the reap goes through: b alone in a newer epoch, changed after a's transaction ended.
    yield* waitFor(Effect.map(t.group, (g) => g.epoch > e), Duration.seconds(5))
    yield* waitFor(t.allAssigned([b], 1))
    const g = yield* t.group
    const [order] = yield* t.sql<{ after: boolean }>`SELECT ${g.changedAt}::timestamptz > ${held.last.at}::timestamptz AS after`
    expect(order!.after).toBe(true)

    // A fenced call after the reap fails: locally (a is not assigned) and on the database (its row is gone).
    const local = yield* Effect.flip(Fenced.fenced(t.insert("late", e)).pipe(Effect.provideService(Membership.Membership, a)))
    expect(local._tag).toBe("StaleAssignment")
    const remote = yield* Effect.flip(Fenced.fencedWith({ groupId: t.groupId, memberId: a.memberId, ...held.assignment }, t.insert("late", e)))
    expect(remote._tag).toBe("StaleAssignment")
    expect((remote as { reason: string }).reason).toMatch(/moved on to epoch|row is gone/)
    expect(yield* t.notes).toEqual([])

    // a comes back: it rejoins as a new member and both work again.
    yield* t.resume(a.memberId)
    yield* waitFor(t.allAssigned([a, b], 2), Duration.seconds(10))
  }).pipe(Effect.scoped, Effect.provide(TestLive)), 30_000)

it.live("a fenced transaction racing a join: the join waits, the transaction commits, the new epoch comes after the commit", () =>
  Effect.gen(function*() {
    const t = yield* setup("fenced-join")
    const a = yield* t.join({ name: "a" })
    yield* waitFor(t.allAssigned([a], 1))
    const e = (yield* t.group).epoch
    const held = yield* holdOpen(a, (x) => t.insert("a", x.epoch))
    const c = yield* t.join({ name: "c" }) // its join transaction runs in its driver, and waits
    yield* waitFor(Effect.map(t.blockedBy(held.pid), (n) => n > 0), Duration.seconds(5))
    yield* Effect.sleep("300 millis")
    expect((yield* t.group).epoch).toBe(e)
    yield* held.release
    const committedAt = yield* Fiber.join(held.fiber)
    expect(yield* t.notes).toEqual([`a@${e}`])
    yield* waitFor(t.allAssigned([a, c], 2), Duration.seconds(10))
    const g = yield* t.group
    expect(g.epoch).toBeGreaterThan(e)
    const [order] = yield* t.sql<{ after: boolean }>`SELECT ${g.changedAt}::timestamptz > ${committedAt}::timestamptz AS after`
    expect(order!.after).toBe(true)
    // And a's old assignment is now refused by the database as well.
    const stale = yield* Effect.flip(Fenced.fencedWith({ groupId: t.groupId, memberId: a.memberId, ...held.assignment }, t.insert("late", e)))
    expect(stale._tag).toBe("StaleAssignment")
  }).pipe(Effect.scoped, Effect.provide(TestLive)), 30_000)

it.live("under continuous fenced load from every member, a join still gets through at once (fair queueing)", () =>
  Effect.gen(function*() {
    const t = yield* setup("fenced-load")
    const ms = yield* Effect.forEach(["a", "b", "c", "d"], (name) => t.join({ name }), { concurrency: "unbounded" })
    yield* waitFor(t.allAssigned(ms, 4))
    let commits = 0
    let refused = 0
    // Every member runs fenced transactions back to back (20-60 ms each) while assigned: at almost
    // any moment some member holds the group row share-locked.
    for (const m of ms) {
      yield* m.whileAssigned(() =>
        Fenced.fenced(t.sql`SELECT pg_sleep(${0.02 + Math.random() * 0.04})`).pipe(
          Effect.provideService(Membership.Membership, m),
          Effect.tap(() => Effect.sync(() => commits++)),
          // Refused (stale, or timed out behind a change): back off a little, as any real loop would.
          Effect.catchAll(() => Effect.zipRight(Effect.sync(() => refused++), Effect.sleep("10 millis"))),
          Effect.forever
        )
      )
    }
    yield* waitFor(Effect.sync(() => commits >= 20))
    const e = yield* t.join({ name: "e" })
    // Without fair queueing the join starves behind the share locks: each attempt times out (after the
    // store's 2 s statement timeout) until one is lucky. With it, the first attempt gets through.
    const took = yield* waitFor(t.allAssigned([...ms, e], 5), Duration.seconds(10))
    console.log(`join under fenced load converged in ${took} ms`)
    expect(took).toBeLessThan(1_800)
    const before = commits
    yield* Effect.sleep("500 millis")
    expect(commits).toBeGreaterThan(before) // work resumed in the new epoch
    expect(refused).toBeLessThan(commits)
  }).pipe(Effect.scoped, Effect.provide(TestLive)), 30_000)
