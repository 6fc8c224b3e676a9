/**
 * A `fenced` block nested in an app's transaction keeps its locks (the shared advisory lock of the
 * group, FOR SHARE on the group row, FOR KEY SHARE on the member row) until the app's COMMIT, and
 * every change of the group (a join, a leave, a reap) waits for them. An adversarial review: the
 * block put the app's timeouts back when it ended, so with the server's defaults (0: no limit) an app
 * process that froze after the block (SIGSTOP, a blocked event loop), or a statement of the app that
 * hung, held the group for ever (docs/fencing.md point 7, "Hangs cannot hold the group hostage").
 * Now the rest of the app's transaction is bounded on the server by the fence's backstop
 * (`timeout` + 1 s) where the app's own timeouts are looser or off.
 *
 * The frozen client here is an app fiber that stops sending anything inside its transaction (it
 * waits on a Deferred): to the server, the same as a stopped process.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer, Scope } from "effect"
import * as Fenced from "../../src/Fenced.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { waitForEffect } from "../support/Wait.js"
import { fixture } from "./support.js"

type Fixture = Effect.Effect.Success<ReturnType<typeof fixture>>

/**
 * A change of the group as the store makes one (the exclusive group lock, the group row FOR UPDATE,
 * the epoch bumped, the member reaped), on another connection, waiting at most `lockTimeout` for each
 * lock. Succeeds with how long it took, in ms; fails (55P03) if the locks stayed held.
 */
const change = (t: Fixture, lockTimeout: string) =>
  t.sql.withTransaction(Effect.gen(function*() {
    const started = performance.now()
    yield* t.sql`SELECT set_config('lock_timeout', ${lockTimeout}, true)`
    yield* t.sql`SELECT pg_advisory_xact_lock(${Fenced.advisoryLockClass}, hashtext(${t.groupId}))`
    yield* t.sql`SELECT epoch FROM modulo_group.groups WHERE group_id = ${t.groupId} FOR UPDATE`
    yield* t.sql`UPDATE modulo_group.groups SET epoch = epoch + 1 WHERE group_id = ${t.groupId}`
    yield* t.sql`DELETE FROM modulo_group.members WHERE member_id = ${t.memberId}`
    return performance.now() - started
  }))

/**
 * Ends the app's backend when the test's scope closes (already gone when the server ended it), so
 * that a failed expectation does not leave the group locked behind the fixture's clean-up.
 */
const terminateAtEnd = (sql: SqlClient.SqlClient) =>
  Effect.flatMap(
    sql<{ pid: number; started: string }>`
      SELECT pid, backend_start::text AS started FROM pg_stat_activity WHERE pid = pg_backend_pid()`,
    ([row]) =>
      // That backend only: once it is gone, its pid may be another file's backend (files run in parallel).
      Effect.addFinalizer(() =>
        Effect.ignore(sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                           WHERE pid = ${row!.pid} AND backend_start = ${row!.started}::timestamptz`))
  )

const settings = (sql: SqlClient.SqlClient) =>
  Effect.map(
    sql<{ st: string; idle: string }>`
      SELECT current_setting('statement_timeout') AS st,
             current_setting('idle_in_transaction_session_timeout') AS idle`,
    (rows) => rows[0]!
  )

it.live("after a nested fenced block, a client that hangs in the app's transaction holds the group's changes at most the backstop", () =>
  Effect.gen(function*() {
    const t = yield* fixture("fence-nested-hang")
    const blockDone = yield* Deferred.make<{ st: string; idle: string }>()
    const thawed = yield* Deferred.make<void>()
    // The app: its own transaction with the server's defaults (no timeouts), a fenced write in it,
    // then it freezes before its COMMIT.
    const app = yield* t.sql.withTransaction(Effect.gen(function*() {
      yield* terminateAtEnd(t.sql)
      yield* t.sql`SET LOCAL statement_timeout = 0`
      yield* t.sql`SET LOCAL idle_in_transaction_session_timeout = 0`
      yield* Fenced.fencedWith(t.target, t.insert("nested"), { timeout: "300 millis" })
      yield* Deferred.succeed(blockDone, yield* settings(t.sql))
      yield* Deferred.await(thawed)
    })).pipe(Effect.exit, Effect.fork)
    // The rest of the app's transaction: bounded by the backstop, 300 ms + 1 s.
    expect(yield* Deferred.await(blockDone)).toEqual({ st: "1300ms", idle: "1300ms" })
    // A change queued now gets through once the server ends the idle transaction (before the fix: it
    // waited for as long as the app stayed frozen; here, until its lock_timeout).
    const took = yield* change(t, "5s")
    expect(took).toBeLessThan(4_000)
    yield* Deferred.succeed(thawed, undefined)
    const exit = yield* Fiber.join(app)
    expect(Exit.isFailure(exit)).toBe(true) // the server ended the app's transaction: nothing committed
    expect(yield* t.notes).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive)))

it.live("after a nested fenced block, a statement of the app that hangs holds the group's changes at most the backstop", () =>
  Effect.gen(function*() {
    const t = yield* fixture("fence-nested-stmt")
    const blockDone = yield* Deferred.make<void>()
    const app = yield* t.sql.withTransaction(Effect.gen(function*() {
      yield* terminateAtEnd(t.sql)
      yield* t.sql`SET LOCAL statement_timeout = 0`
      yield* Fenced.fencedWith(t.target, t.insert("nested"), { timeout: "300 millis" })
      yield* Deferred.succeed(blockDone, undefined)
      yield* t.sql`SELECT pg_sleep(10)` // a statement that runs far past the backstop
    })).pipe(Effect.exit, Effect.fork)
    yield* Deferred.await(blockDone)
    const took = yield* change(t, "5s")
    expect(took).toBeLessThan(4_000)
    const exit = yield* Fiber.join(app)
    expect(Exit.isFailure(exit)).toBe(true)
    expect(JSON.stringify(exit)).toMatch(/57014|statement timeout/)
    expect(yield* t.notes).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive)))

const fast = { heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const
const StoreLive = PgMembershipStore.layerUsingNotifier().pipe(Layer.provideMerge(Notifier.layer), Layer.provideMerge(PgLive))

// The review's reproduction, with a real membership: m1's app freezes after a nested fenced block,
// m2 joins. Before the fix the join waited for as long as the app stayed frozen (here: until the end
// of the wait, 10 s); now it goes through once the server ends the app's transaction (the default
// timeout, half of statementTimeout, + 1 s: 1.5 s).
it.live("a member whose app froze after a nested fenced block does not hold a join of the group", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const groupId = randomGroupId("fence-nested-join")
    const scope1 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope1, Exit.void))
    const m1 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(scope1))
    const before = yield* m1.awaitAssigned
    const blockDone = yield* Deferred.make<void>()
    const thawed = yield* Deferred.make<void>()
    const app = yield* sql.withTransaction(Effect.gen(function*() {
      yield* terminateAtEnd(sql)
      yield* sql`SET LOCAL statement_timeout = 0`
      yield* sql`SET LOCAL idle_in_transaction_session_timeout = 0`
      yield* Fenced.fenced(sql`SELECT 1`).pipe(Effect.provideService(Membership.Membership, m1))
      yield* Deferred.succeed(blockDone, undefined)
      yield* Deferred.await(thawed)
    })).pipe(Effect.exit, Effect.fork)
    yield* Deferred.await(blockDone)
    const scope2 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope2, Exit.void))
    const m2 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(scope2))
    const sizeIs = (m: Membership.MembershipService, n: number) =>
      Effect.map(m.assignment, (a) => a._tag === "Some" && a.value.size === n)
    const took = yield* waitForEffect(Effect.zipWith(sizeIs(m1, 2), sizeIs(m2, 2), (a, b) => a && b), "10 seconds", "both at size 2")
    console.log(`the join converged in ${took} ms while m1's app was frozen after a nested fenced block`)
    expect((yield* m1.guard).epoch).toBeGreaterThan(before.epoch)
    yield* Deferred.succeed(thawed, undefined)
    expect(Exit.isFailure(yield* Fiber.join(app))).toBe(true)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)
