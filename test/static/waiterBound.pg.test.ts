/**
 * A static member waiting for its instance id writes its waiter row (store `wait`) at every retry,
 * and deletes it when it stops waiting (`stopWaiting`). A review found these the member's only
 * statements with no server-side bound, run interruptibly: a session holding the waiter row (an
 * operator's open psql transaction) kept each upsert waiting past the statement timeout, and when the
 * member gave up on it @effect/sql-pg sent `pg_cancel_backend` (which behind a pooler can hit another
 * client's statement; docs/operations.md, "Timeouts and cancellation"). Now each sets its own
 * lock_timeout and runs to its end (failed before: 5 cancels in 6 s).
 */
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Layer, Redacted } from "effect"
import { randomUUID } from "node:crypto"
import pg from "pg"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, ownDatabase, PgLive, randomGroupId } from "../support/Database.js"

const fast = { heartbeat: "200 millis", lease: "3 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const
const app = `modulo-group-waiter-${process.pid}`

it.live("a waiting static member's waiter-row statement is bounded on the server and never cancelled from the client", () =>
  Effect.gen(function*() {
    const g = randomGroupId("waiter-bound")
    yield* Membership.make({ groupId: g, ...fast, instanceId: "X" })
    yield* Effect.sleep("1500 millis")
    yield* Membership.make({ groupId: g, ...fast, instanceId: "X" }) // waits for X, writes its waiter row
    yield* Effect.sleep("2 seconds")
    const locker = new pg.Client({ connectionString: databaseUrl() })
    const probe = new pg.Client({ connectionString: databaseUrl() })
    yield* Effect.promise(() => Promise.all([locker.connect(), probe.connect()]))
    yield* Effect.promise(() => locker.query("BEGIN"))
    const locked = yield* Effect.promise(() =>
      locker.query("SELECT member_id FROM modulo_group.instance_waiters WHERE group_id = $1 FOR UPDATE", [g]))
    expect(locked.rowCount).toBeGreaterThan(0)
    // Cancels the app's pool sends (each seen once, by its query_start).
    const cancels = new Set<number>()
    const sampler = setInterval(() => {
      probe.query(
        `SELECT extract(epoch FROM query_start)::float8 AS qs FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = $1 AND query ILIKE 'SELECT pg_cancel_backend%'`,
        [app]
      ).then((r) => r.rows.forEach((row) => cancels.add(row.qs)), () => {})
    }, 20)
    let longest = 0
    for (let i = 0; i < 60; i++) {
      yield* Effect.sleep("100 millis")
      const r = yield* Effect.promise(() => probe.query(
        // How long the lock wait of a statement on the waiter rows has lasted (pg_locks.waitstart).
        `SELECT coalesce(max(extract(epoch FROM clock_timestamp() - l.waitstart)), 0)::float8 AS s
           FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted
          WHERE a.datname = current_database() AND a.application_name = $1 AND a.query LIKE '%instance_waiters%'`, [app]))
      longest = Math.max(longest, r.rows[0].s)
    }
    clearInterval(sampler)
    yield* Effect.promise(() => locker.query("COMMIT"))
    yield* Effect.promise(() => Promise.all([locker.end(), probe.end()]))
    console.log(`pg_cancel_backend sent by the member's pool: ${cancels.size}; longest server-side wait: ${longest.toFixed(1)} s`)
    expect({ cancelsSent: cancels.size, waitedPastStatementTimeout: longest > 1.5 }).toEqual({ cancelsSent: 0, waitedPastStatementTimeout: false })
  }).pipe(
    Effect.scoped,
    Effect.provide(PgMembershipStore.layerUsingNotifier({ statementTimeout: "1 second" }).pipe(
      Layer.provideMerge(Notifier.layer),
      Layer.provideMerge(Layer.fresh(PgClient.layer({ url: Redacted.make(databaseUrl()), applicationName: app, maxConnections: 6 })))
    ))
  ), 60_000)

// A lock on the whole waiter table (a migration, VACUUM FULL) is taken as a statement is parsed,
// before its own lock_timeout is set: such a statement waits on the server until the lock goes. A
// review of the fix above: every `wait` of a waiting member left one more of them holding a pool
// connection, and six emptied a pool of four: a live member's heartbeat timed out. One waiter
// statement per member at a time now (failed before). On a database of its own: the table lock
// would hold up the other files' static members.
it.live("a lock on the waiter table does not take the pool from a live member's heartbeat", () =>
  Effect.gen(function*() {
    const db = yield* ownDatabase("waiterpool", { maxConnections: 2 })
    const pool = Layer.fresh(PgClient.layer({ url: Redacted.make(db.url), applicationName: "waiter-pool", maxConnections: 4 }))
    yield* Effect.gen(function*() {
      const store = yield* MembershipStore
      const g = randomGroupId("waiter-pool")
      const live = randomUUID()
      yield* store.join(g, { memberId: live, name: "live", host: "h", pid: 1 }, 30_000)
      const locker = new pg.Client({ connectionString: db.url })
      yield* Effect.promise(() => locker.connect())
      yield* Effect.promise(() => locker.query("BEGIN; LOCK TABLE modulo_group.instance_waiters IN ACCESS EXCLUSIVE MODE"))
      const waiter = { memberId: randomUUID(), name: "w", host: "h", pid: 2 }
      // A waiting static member records its wait at each retry.
      for (let i = 0; i < 6; i++) yield* Effect.either(store.wait(g, waiter, "i1", 30_000))
      const heartbeat = yield* Effect.either(store.heartbeat(g, live, 1, 30_000))
      yield* Effect.promise(() => locker.query("ROLLBACK").then(() => locker.end()))
      expect(heartbeat._tag).toBe("Right")
    }).pipe(Effect.provide(PgMembershipStore.layer({ migrate: true, statementTimeout: Duration.millis(500) }).pipe(Layer.provideMerge(pool))))
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 60_000)
