/**
 * Fixtures for the fenced-transaction tests under test/fenced/: a group and a member written by hand
 * (no membership fibers, so nothing renews or reaps behind the test's back), an app table, and a
 * client that stalls before sending COMMIT (a GC pause or a blocked event loop at the worst moment).
 */
import { SqlClient } from "@effect/sql"
import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import { Context, Deferred, Duration, Effect, Fiber, FiberId, Ref } from "effect"
import { randomUUID } from "node:crypto"
import type { FenceTarget } from "../../src/Fenced.js"
import { randomGroupId } from "../support/Database.js"

/**
 * A group at epoch 7 with one member (index 0, lease `leaseMs` from now on the database clock) and a
 * table of the app's; all dropped at scope end.
 */
export const fixture = (prefix: string, leaseMs = 60_000) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const groupId = randomGroupId(prefix)
    const memberId = randomUUID()
    const table = `fenced_${groupId.replace(/-/g, "_")}`
    yield* Effect.acquireRelease(
      Effect.gen(function*() {
        yield* sql`INSERT INTO modulo_group.groups (group_id, epoch, size) VALUES (${groupId}, 7, 1)`
        yield* sql`
          INSERT INTO modulo_group.members (member_id, group_id, idx, lease_expires_at, heartbeat_at, joined_at)
          VALUES (${memberId}, ${groupId}, 0, clock_timestamp() + ${`${leaseMs} milliseconds`}::interval, now(), now())`
        yield* sql`CREATE TABLE ${sql(table)} (note text NOT NULL)`
      }),
      () =>
        Effect.orDie(Effect.all([
          sql`DROP TABLE IF EXISTS ${sql(table)}`,
          sql`DELETE FROM modulo_group.groups WHERE group_id = ${groupId}`
        ]))
    )
    const target: FenceTarget = { groupId, memberId, epoch: 7, index: 0, size: 1 }
    const notes = Effect.map(sql<{ note: string }>`SELECT note FROM ${sql(table)} ORDER BY note`, (rows) => rows.map((r) => r.note))
    const insert = (note: string) => sql`INSERT INTO ${sql(table)} (note) VALUES (${note})`
    /** Sets the member's lease to expire `ms` from now on the database clock (as if it stopped renewing). */
    const setLease = (ms: number) =>
      sql`UPDATE modulo_group.members SET lease_expires_at = clock_timestamp() + ${`${ms} milliseconds`}::interval
           WHERE member_id = ${memberId}`
    /** Rows left in modulo_group.fence_checks by this member (always none once its transactions ended). */
    const leftovers = Effect.map(
      sql<{ n: string }>`SELECT count(*) AS n FROM modulo_group.fence_checks WHERE member_id = ${memberId}`,
      (rows) => Number(rows[0]!.n)
    )
    return { sql, groupId, memberId, table, target, notes, insert, setLease, leftovers }
  })

/** `target` with some of its properties replaced (a wrapper of a client or a connection). */
export const proxy = <T extends object>(target: T, overrides: Partial<T>): T =>
  new Proxy(target, {
    get: (t, p) => (p in overrides ? (overrides as Record<PropertyKey, unknown>)[p] : Reflect.get(t, p))
  })

/**
 * The same client, except that a reserved connection waits `stall` of real time before it sends
 * `COMMIT`: the client stalls between the fence's last statement and `COMMIT`.
 */
export const stallingBeforeCommit = (sql: SqlClient.SqlClient, stall: Duration.DurationInput): SqlClient.SqlClient =>
  aroundCommit(sql, (commit) => Effect.zipRight(Effect.sleep(Duration.decode(stall)), commit))

/** The same client, except that a reserved connection's `COMMIT` runs through `around` (given the `COMMIT`). */
export const aroundCommit = (
  sql: SqlClient.SqlClient,
  around: (commit: Effect.Effect<ReadonlyArray<any>, SqlError>) => Effect.Effect<ReadonlyArray<any>, SqlError>
): SqlClient.SqlClient =>
  proxy(sql, {
    reserve: Effect.map(sql.reserve, (conn) =>
      proxy<Connection>(conn, {
        executeUnprepared: (statement, params, transformRows) =>
          statement.trim().toUpperCase() === "COMMIT"
            ? around(conn.executeUnprepared(statement, params, transformRows))
            : conn.executeUnprepared(statement, params, transformRows)
      }))
  })

/**
 * The same client, except that on a reserved connection a statement whose text contains `marker` is
 * held just before it goes to the driver (after every check above the connection has passed: a fiber
 * paused by Effect's scheduler between the check and the send): `reached` completes when it gets
 * there, and it is sent right after the next other statement on that connection is (the fence going
 * on while it was paused), or after `patience` of real time when none comes (the fence waits for it).
 * `sent` lists what went to the driver, in order (`marker` for the held one).
 */
export const holdingMarked = (sql: SqlClient.SqlClient, marker: string, patience: Duration.DurationInput = "1 second") =>
  Effect.gen(function*() {
    const reached = yield* Deferred.make<void>()
    const sent: Array<string> = []
    /** Completed by the next other statement while the marked one is held. */
    let holding: Deferred.Deferred<void> | undefined
    const around = <X, E>(statement: string, send: Effect.Effect<X, E>): Effect.Effect<X, E> =>
      Effect.suspend(() => {
        if (!statement.includes(marker)) {
          sent.push(statement)
          const held = holding
          holding = undefined
          // Sent before the held one resumes: the driver queues the held one behind it.
          return held === undefined ? send : Effect.zipRight(Deferred.succeed(held, undefined), send)
        }
        const goOn = Deferred.unsafeMake<void>(FiberId.none)
        holding = goOn
        return Deferred.succeed(reached, undefined).pipe(
          // Interruptible: the driver's call is not (internal/pg/noCancel.ts), and the timeout's race
          // waits for its loser to be interrupted.
          Effect.zipRight(Effect.timeoutOption(Effect.interruptible(Deferred.await(goOn)), patience)),
          Effect.zipRight(Effect.sync(() => {
            if (holding === goOn) holding = undefined
            sent.push(marker)
          })),
          Effect.zipRight(send)
        )
      })
    const client = proxy(sql, {
      reserve: Effect.map(sql.reserve, (conn) =>
        proxy<Connection>(conn, {
          execute: (statement, params, transformRows) => around(statement, conn.execute(statement, params, transformRows)),
          executeRaw: (statement, params) => around(statement, conn.executeRaw(statement, params)),
          executeValues: (statement, params) => around(statement, conn.executeValues(statement, params)),
          executeUnprepared: (statement, params, transformRows) =>
            around(statement, conn.executeUnprepared(statement, params, transformRows))
        }))
    })
    return { client, reached: Deferred.await(reached), sent }
  })

/**
 * The same client, except that a reserved connection waits `stall` of real time before it sends
 * `COMMIT`, and then reads, on another connection, how many ms the lease of `memberId` has left
 * (`leaseAtCommit`, one entry per COMMIT: negative when the COMMIT went after the lease's end).
 */
export const stallingThenReading = (sql: SqlClient.SqlClient, stall: Duration.DurationInput, memberId: string) => {
  const leaseAtCommit: Array<number> = []
  const client = proxy(sql, {
    reserve: Effect.map(sql.reserve, (conn) =>
      proxy<Connection>(conn, {
        executeUnprepared: (statement, params, transformRows) =>
          statement.trim().toUpperCase() === "COMMIT"
            ? Effect.sleep(Duration.decode(stall)).pipe(
              Effect.zipRight(sql<{ left_ms: number }>`
                SELECT (extract(epoch FROM lease_expires_at - clock_timestamp()) * 1000)::float8 AS left_ms
                  FROM modulo_group.members WHERE member_id = ${memberId}`),
              Effect.tap((rows) => Effect.sync(() => leaseAtCommit.push(rows[0]!.left_ms))),
              Effect.orDie,
              Effect.zipRight(conn.executeUnprepared(statement, params, transformRows))
            )
            : conn.executeUnprepared(statement, params, transformRows)
      }))
  })
  return { client, leaseAtCommit }
}

/**
 * A slots group of `n` slots with one member holding them all at generation 1 (its lease `leaseSeconds`
 * from now on the database clock), written by hand; dropped at scope end.
 */
export const slotsGroup = (n: number, prefix: string, leaseSeconds = 60) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const groupId = randomGroupId(prefix)
    const memberId = randomUUID()
    yield* Effect.acquireRelease(
      Effect.gen(function*() {
        yield* sql`INSERT INTO modulo_group.groups (group_id, epoch, size, slots) VALUES (${groupId}, 3, 1, ${n})`
        yield* sql`
          INSERT INTO modulo_group.members (member_id, group_id, idx, lease_expires_at, heartbeat_at, joined_at)
          VALUES (${memberId}, ${groupId}, 0, clock_timestamp() + ${`${leaseSeconds} seconds`}::interval, now(), now())`
        yield* sql`
          INSERT INTO modulo_group.slots (group_id, slot, owner, holder, generation, changed_at)
          SELECT ${groupId}, s, ${memberId}::uuid, ${memberId}::uuid, 1, now() FROM generate_series(0, ${n - 1}::int) s`
      }),
      () => Effect.orDie(sql`DELETE FROM modulo_group.groups WHERE group_id = ${groupId}`)
    )
    const target: FenceTarget = {
      groupId,
      memberId,
      epoch: -1,
      index: -1,
      size: 0,
      slots: Array.from({ length: n }, (_, slot) => ({ slot, generation: 1 }))
    }
    return { groupId, memberId, target }
  })

/**
 * When a fenced write commits, against the lease of `memberId` on the database clock. `beforeCommit`
 * (run just before the `COMMIT`, in the transaction or by the client) waits until `leftMs` of that
 * lease are left, then starts an observer that polls (on another connection) whether `table` holds
 * `note`. `statement_timestamp()` is taken before a statement's snapshot, so a poll that does not see
 * the write began before the write committed. `pastLeaseMs`, once the transaction is over: the latest
 * such poll's time minus the lease's end (negative: before it); undefined when the first poll saw it
 * already (it committed before that poll, `leftMs` before the lease's end).
 */
export const writeObserved = (
  sql: SqlClient.SqlClient,
  options: { readonly memberId: string; readonly table: string; readonly note: string; readonly leftMs: number }
) =>
  Effect.gen(function*() {
    const { leftMs, memberId, note, table } = options
    const unseenAt = yield* Ref.make<number | undefined>(undefined)
    const observing = yield* Ref.make<Fiber.RuntimeFiber<void> | undefined>(undefined)
    const outside = Effect.mapInputContext((ctx: Context.Context<never>) => Context.omit(SqlClient.TransactionConnection)(ctx))
    const poll = Effect.gen(function*() {
      const [row] = yield* sql<{ t: number; seen: boolean }>`
        SELECT (extract(epoch FROM statement_timestamp()) * 1000)::float8 AS t,
               EXISTS (SELECT 1 FROM ${sql(table)} WHERE note = ${note}) AS seen`
      if (!row!.seen) yield* Ref.set(unseenAt, row!.t)
      return row!.seen
    }).pipe(Effect.orDie, outside)
    const beforeCommit = Effect.gen(function*() {
      const [left] = yield* Effect.orDie(sql<{ left_ms: number }>`
        SELECT (extract(epoch FROM lease_expires_at - clock_timestamp()) * 1000)::float8 AS left_ms
          FROM modulo_group.members WHERE member_id = ${memberId}`)
      yield* Effect.sleep(Duration.millis(Math.max(0, left!.left_ms - leftMs)))
      // Interruptible: a fork inherits its caller's mask, and this runs inside the store's statement
      // (uninterruptible, noCancel.ts). An uninterruptible observer of a write that never committed (a
      // COMMIT the commit-time check failed, on a loaded machine) polled for ever, and `pastLeaseMs`'s
      // interrupt waited for it: the nested notifyAtCommit cases hung until their 60 s timeout.
      const observer = yield* Effect.forkDaemon(
        Effect.interruptible(
          Effect.repeat(Effect.zipLeft(poll, Effect.sleep("10 millis")), { until: (seen) => seen }).pipe(Effect.asVoid)
        )
      )
      yield* Ref.set(observing, observer)
    })
    const pastLeaseMs = Effect.gen(function*() {
      const observer = yield* Ref.get(observing)
      if (observer !== undefined) {
        // The transaction is over: the write is there now or never will be (then the observer stops).
        const [now] = yield* Effect.orDie(sql<{ seen: boolean }>`SELECT EXISTS (SELECT 1 FROM ${sql(table)} WHERE note = ${note}) AS seen`)
        if (now!.seen) yield* Fiber.join(observer).pipe(Effect.timeout("30 seconds"), Effect.ignore)
        yield* Fiber.interrupt(observer)
      }
      const [lease] = yield* sql<{ end_ms: number }>`
        SELECT (extract(epoch FROM lease_expires_at) * 1000)::float8 AS end_ms FROM modulo_group.members WHERE member_id = ${memberId}`
      const unseen = yield* Ref.get(unseenAt)
      return unseen === undefined ? undefined : unseen - lease!.end_ms
    }).pipe(outside)
    return { beforeCommit, pastLeaseMs }
  })

/**
 * `writeObserved` for a fenced call of its own transaction: `client` is `sql`, except that a reserved
 * connection runs `beforeCommit` before it sends `COMMIT`.
 */
export const commitObserved = (
  sql: SqlClient.SqlClient,
  options: { readonly memberId: string; readonly table: string; readonly note: string; readonly leftMs: number }
) =>
  Effect.gen(function*() {
    const { beforeCommit, pastLeaseMs } = yield* writeObserved(sql, options)
    const client = aroundCommit(sql, (commit) => Effect.zipRight(beforeCommit, commit))
    return { client, pastLeaseMs }
  })

/**
 * A poll of whether `note` is in `table` yet, and whether the lease of `memberId` had ended on the
 * database clock then: `unseenAfterEnd` keeps how long past the lease's end (ms; -1: no row) the
 * first poll was that found the lease ended and the write not visible (the criterion of the
 * slow-COMMIT tests: a write that became visible after its lease ended); `firstSeen`, the poll that
 * first saw the write. Outside the caller's transaction.
 */
export const leaseEndPoll = (
  sql: SqlClient.SqlClient,
  options: { readonly table: string; readonly note: string; readonly groupId: string; readonly memberId: string }
) =>
  Effect.gen(function*() {
    const { groupId, memberId, note, table } = options
    const unseenAfterEnd = yield* Ref.make<number | undefined>(undefined)
    const firstSeen = yield* Ref.make<{ ended: boolean; past: number | null } | undefined>(undefined)
    const poll = Effect.gen(function*() {
      const [row] = yield* sql<{ seen: boolean; ended: boolean; past: number | null }>`
        SELECT EXISTS (SELECT 1 FROM ${sql(table)} WHERE note = ${note}) AS seen,
               coalesce((SELECT lease_expires_at <= clock_timestamp() FROM modulo_group.members
                          WHERE group_id = ${groupId} AND member_id = ${memberId}::uuid), true) AS ended,
               (SELECT (extract(epoch FROM clock_timestamp() - lease_expires_at) * 1000)::float8 FROM modulo_group.members
                 WHERE group_id = ${groupId} AND member_id = ${memberId}::uuid) AS past`
      if (!row!.seen && row!.ended && (yield* Ref.get(unseenAfterEnd)) === undefined) yield* Ref.set(unseenAfterEnd, row!.past ?? -1)
      if (row!.seen && (yield* Ref.get(firstSeen)) === undefined) yield* Ref.set(firstSeen, { ended: row!.ended, past: row!.past })
      return row!.seen
    }).pipe(
      Effect.orDie,
      Effect.mapInputContext((ctx: Context.Context<never>) => Context.omit(SqlClient.TransactionConnection)(ctx))
    )
    return { poll, unseenAfterEnd, firstSeen }
  })
