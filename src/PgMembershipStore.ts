/**
 * The PostgreSQL store. Leases are judged on the database clock (`statement_timestamp()`), unless
 * the store is built with `clock: "effect"`: then the time is passed in as a parameter, so tests
 * drive the real SQL with the `TestClock`.
 *
 * @since 0.1.0
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { PgClient } from "@effect/sql-pg"
import { Clock, Duration, Effect, Layer, Option, Schedule } from "effect"
import { channelFor, observedEpoch, wakeups } from "./internal/listener.js"
import { DatabaseUnavailable, SchemaMismatch, StoreError } from "./MembershipError.js"
import type { GroupRow, GroupView, MemberRow, MembershipStoreService } from "./MembershipStore.js"
import { MembershipStore } from "./MembershipStore.js"
import * as Migrations from "./Migrations.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** `"database"` (production): leases on the database clock. `"effect"`: the Effect `Clock`, for tests. */
  readonly clock?: "database" | "effect" | undefined
  /** Apply pending migrations when the store starts (default true); otherwise a missing schema fails. */
  readonly migrate?: boolean | undefined
  /** How long to retry an unreachable database before failing (default 10 seconds). */
  readonly startupTimeout?: Duration.DurationInput | undefined
  /** Timeout of each database call (default 2 seconds); also bounds how long a change holds the group lock. */
  readonly statementTimeout?: Duration.DurationInput | undefined
}

const num = (v: unknown): number => (typeof v === "number" ? v : Number(v))

// SQLSTATE classes that retrying cannot fix: bad password or role, missing database, bad config.
const permanentCodes = new Set(["28000", "28P01", "3D000", "42501", "0A000"])

const describe = (cause: unknown): string => {
  const inner = (cause as { cause?: unknown })?.cause ?? cause
  const e = inner as { message?: unknown; code?: unknown }
  const message = typeof e?.message === "string" && e.message.length > 0 ? e.message : String(inner)
  return typeof e?.code === "string" ? `${message} (${e.code})` : message
}

const sqlState = (error: SqlError): string | undefined => {
  const code = (error.cause as { code?: unknown } | undefined)?.code
  return typeof code === "string" ? code : undefined
}

/**
 * Readies the schema: migrates (default) or checks it, retrying an unreachable database for a
 * bounded time with a log line per attempt.
 *
 * @since 0.1.0
 * @category constructors
 */
export const prepare = (options: Options = {}) =>
  Effect.gen(function*() {
    const startupTimeout = Duration.decode(options.startupTimeout ?? Duration.seconds(10))
    const attempt = (options.migrate ?? true) ? Effect.asVoid(Migrations.run) : Migrations.check
    yield* attempt.pipe(
      Effect.tapError((e) =>
        e._tag === "SqlError" ? Effect.logWarning(`modulo-group: database not ready: ${describe(e)}; retrying`) : Effect.void
      ),
      Effect.retry({
        schedule: Schedule.exponential(Duration.millis(100)).pipe(
          Schedule.union(Schedule.spaced(Duration.seconds(2))),
          Schedule.upTo(startupTimeout)
        ),
        while: (e) => e._tag === "SqlError" && !permanentCodes.has(sqlState(e) ?? "")
      }),
      Effect.catchTag("SqlError", (e) => Effect.fail(new DatabaseUnavailable({ reason: describe(e), cause: e })))
    )
  })

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const pg = yield* PgClient.PgClient
    const statementTimeoutMs = Duration.toMillis(Duration.decode(options.statementTimeout ?? Duration.seconds(2)))
    const useEffectClock = options.clock === "effect"

    // The time every statement judges leases by: the database's, or one passed in.
    const nowParam: Effect.Effect<string | null> = useEffectClock
      ? Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms).toISOString())
      : Effect.succeed(null)
    const nowSql = (now: string | null) => sql`COALESCE(${now}::timestamptz, statement_timestamp())`

    const wrap = <A>(operation: string, effect: Effect.Effect<A, SqlError>) =>
      effect.pipe(
        Effect.mapError((cause) => new StoreError({ operation, reason: describe(cause), cause })),
        // withTransaction turns a failed COMMIT (e.g. a killed backend) into a defect: it is a store error.
        Effect.catchAllDefect((cause) => Effect.fail(new StoreError({ operation, reason: describe(cause), cause }))),
        // On timeout or interruption, return at once: the driver's query cancel and a transaction's
        // ROLLBACK on a connection that no longer answers finish (or fail) in the background.
        Effect.disconnect,
        Effect.timeoutFail({
          duration: statementTimeoutMs,
          onTimeout: () => new StoreError({ operation, reason: `timed out after ${statementTimeoutMs} ms` })
        }),
        Effect.withSpan(`modulo-group.${operation}`, { kind: "client", attributes: { "db.system": "postgresql" } })
      )

    // Inside a change transaction holding the group lock: reassign indices (keep index < N, fill
    // holes in join order), bump the epoch, notify. Mirrors internal/reassign.ts.
    const rebalance = (groupId: string, now: string | null, epoch: number) =>
      Effect.gen(function*() {
        yield* sql`
          WITH live AS (
            SELECT member_id, idx, join_seq, count(*) OVER () AS n
              FROM modulo_group.members WHERE group_id = ${groupId}
          ), kept AS (
            SELECT idx FROM live WHERE idx IS NOT NULL AND idx < n
          ), holes AS (
            SELECT i, row_number() OVER (ORDER BY i) AS r
              FROM generate_series(0, (SELECT coalesce(max(n), 0) FROM live) - 1) AS i
             WHERE i NOT IN (SELECT idx FROM kept)
          ), movers AS (
            SELECT member_id, row_number() OVER (ORDER BY join_seq) AS r
              FROM live WHERE idx IS NULL OR idx >= n
          )
          UPDATE modulo_group.members m SET idx = holes.i
            FROM movers JOIN holes USING (r)
           WHERE m.member_id = movers.member_id`
        const [g] = yield* sql<{ epoch: string; size: number }>`
          UPDATE modulo_group.groups
             SET epoch = ${epoch + 1},
                 size = (SELECT count(*) FROM modulo_group.members WHERE group_id = ${groupId}),
                 changed_at = ${nowSql(now)}
           WHERE group_id = ${groupId}
          RETURNING epoch, size, pg_notify(${channelFor(groupId)}, (epoch)::text) AS notified`
        return { epoch: num(g!.epoch), size: num(g!.size) }
      })

    // Every membership change: one transaction that first takes the group row lock (the arbiter).
    const change = <A, E, R>(groupId: string, now: string | null, body: (epoch: number) => Effect.Effect<A, E, R>) =>
      sql.withTransaction(Effect.gen(function*() {
        // Server-side bounds first (lock_timeout applies to the waits below, statement_timeout to the
        // later statements), then the advisory lock that fenced transactions take shared
        // (Fenced.advisoryLockClass): it queues fairly, where their row share locks alone would let
        // overlapping ones starve the FOR UPDATE.
        yield* sql`
          INSERT INTO modulo_group.groups (group_id, changed_at)
          SELECT ${groupId}, ${nowSql(now)}
            FROM (SELECT set_config('lock_timeout', ${String(statementTimeoutMs)}, true),
                         set_config('statement_timeout', ${String(statementTimeoutMs)}, true),
                         set_config('idle_in_transaction_session_timeout', ${String(statementTimeoutMs)}, true),
                         pg_advisory_xact_lock(1297040455, hashtext(${groupId}))) AS fair
          ON CONFLICT (group_id) DO NOTHING`
        // The arbiter: the group row lock.
        // Never below an epoch a member has acknowledged (an epoch moved back by hand, a restored backup).
        const [g] = yield* sql<{ epoch: string }>`
          SELECT GREATEST(g.epoch, coalesce((SELECT max(m.acked_epoch) FROM modulo_group.members m
                                              WHERE m.group_id = g.group_id), 0)) AS epoch
            FROM modulo_group.groups g WHERE g.group_id = ${groupId} FOR UPDATE`
        return yield* body(num(g!.epoch))
      }))

    const deleteExpired = (groupId: string, now: string | null) =>
      sql<{ member_id: string }>`
        DELETE FROM modulo_group.members
         WHERE group_id = ${groupId} AND lease_expires_at <= ${nowSql(now)}
        RETURNING member_id`

    // Rows that no longer add up to the group's size were edited by hand. A surplus is repaired at
    // once (a new row must acknowledge before anyone starts). A missing row is repaired only after it
    // has been missing for a lease: its member, if alive, may still be working; by then it has seen
    // its row gone and stopped (or rejoined, which repairs it), or its lease would have run out.
    const missingSince = new Map<string, number>()
    const rowsOff = (groupId: string, rows: number, size: number, leaseMs: number) =>
      Effect.map(Clock.currentTimeMillis, (nowMs) => {
        if (rows >= size) {
          missingSince.delete(groupId)
          return rows > size
        }
        const since = missingSince.get(groupId) ?? nowMs
        missingSince.set(groupId, since)
        return nowMs - since >= leaseMs
      })

    const store: MembershipStoreService = {
      join: (groupId, member, leaseMs) =>
        wrap(
          "join",
          Effect.flatMap(nowParam, (now) =>
            change(groupId, now, (epoch) =>
              Effect.gen(function*() {
                // Reap expired members, and this member's own earlier row if any.
                yield* sql`
                  DELETE FROM modulo_group.members
                   WHERE (group_id = ${groupId} AND lease_expires_at <= ${nowSql(now)})
                      OR member_id = ${member.memberId}`
                yield* sql`
                  INSERT INTO modulo_group.members
                    (member_id, group_id, idx, acked_epoch, lease_expires_at, heartbeat_at, joined_at, host, pid, name)
                  VALUES (${member.memberId}, ${groupId}, NULL, ${epoch + 1},
                          ${nowSql(now)} + ${leaseMs} * interval '1 millisecond',
                          ${nowSql(now)}, ${nowSql(now)}, ${member.host}, ${member.pid}, ${member.name})`
                const g = yield* rebalance(groupId, now, epoch)
                const [me] = yield* sql<{ idx: number; unacked: string }>`
                  SELECT m.idx,
                         (SELECT count(*) FROM modulo_group.members o
                           WHERE o.group_id = ${groupId} AND o.acked_epoch < ${g.epoch}) AS unacked
                    FROM modulo_group.members m WHERE m.member_id = ${member.memberId}`
                return {
                  epoch: g.epoch,
                  size: g.size,
                  index: me!.idx,
                  acked: g.epoch,
                  barrier: num(me!.unacked) === 0,
                  expired: false
                } satisfies GroupView
              })))
        ),

      heartbeat: (groupId, memberId, ack, leaseMs, announce = false) =>
        wrap(
          "heartbeat",
          Effect.flatMap(nowParam, (now) =>
            Effect.flatMap(
              sql<{ idx: number; acked: string; epoch: string; size: number; unacked: string; expired: string; rows: string }>`
                WITH prev AS (
                  SELECT acked_epoch FROM modulo_group.members WHERE member_id = ${memberId}
                ), me AS (
                  UPDATE modulo_group.members
                     SET lease_expires_at = ${nowSql(now)} + ${leaseMs} * interval '1 millisecond',
                         heartbeat_at = ${nowSql(now)},
                         acked_epoch = GREATEST(acked_epoch, ${ack})
                   WHERE member_id = ${memberId} AND group_id = ${groupId}
                     AND lease_expires_at > ${nowSql(now)}
                  RETURNING idx, acked_epoch
                ), g AS (
                  SELECT epoch, size FROM modulo_group.groups WHERE group_id = ${groupId}
                ), others AS (
                  SELECT count(*) AS n,
                         count(*) FILTER (WHERE o.acked_epoch < g.epoch) AS unacked,
                         count(*) FILTER (WHERE o.lease_expires_at <= ${nowSql(now)}) AS expired
                    FROM modulo_group.members o, g
                   WHERE o.group_id = ${groupId} AND o.member_id <> ${memberId}
                )
                SELECT me.idx, me.acked_epoch AS acked, g.epoch, g.size, others.unacked,
                       others.expired, others.n + 1 AS rows,
                       -- The acknowledgement that completes the barrier wakes the others.
                       CASE WHEN others.unacked = 0 AND me.acked_epoch >= g.epoch
                                 AND ((SELECT acked_epoch FROM prev) < g.epoch OR ${announce})
                            THEN pg_notify(${channelFor(groupId)}, g.epoch::text || ':ready') END AS notified
                  FROM me, g, others
                 -- An index that is not one of 0..N-1 (set by hand): rejoin, which reassigns.
                 WHERE me.idx IS NOT NULL AND me.idx < g.size`,
              ([r]) =>
                r === undefined
                  ? Effect.succeed(Option.none<GroupView>())
                  : Effect.map(rowsOff(groupId, num(r.rows), num(r.size), leaseMs), (off): Option.Option<GroupView> => {
                    // Lets the LISTEN connection check itself when this epoch was never notified.
                    observedEpoch(pg, groupId, num(r.epoch))
                    return Option.some({
                      epoch: num(r.epoch),
                      size: num(r.size),
                      index: num(r.idx),
                      acked: num(r.acked),
                      barrier: num(r.unacked) === 0 && num(r.acked) >= num(r.epoch),
                      expired: num(r.expired) > 0 || off
                    })
                  })
            ))
        ),

      reap: (groupId) =>
        wrap(
          "reap",
          Effect.flatMap(nowParam, (now) =>
            change(groupId, now, (epoch) =>
              Effect.gen(function*() {
                const gone = yield* deleteExpired(groupId, now)
                // Also when the rows no longer match the group's size (a row deleted or added by hand).
                const [c] = yield* sql<{ off: boolean }>`
                  SELECT (SELECT count(*) FROM modulo_group.members WHERE group_id = ${groupId}) <> size AS off
                    FROM modulo_group.groups WHERE group_id = ${groupId}`
                if (gone.length > 0 || c?.off === true) yield* rebalance(groupId, now, epoch)
                return gone.length
              })))
        ),

      leave: (groupId, memberId) =>
        wrap(
          "leave",
          Effect.flatMap(nowParam, (now) =>
            change(groupId, now, (epoch) =>
              Effect.gen(function*() {
                const mine = yield* sql`
                  DELETE FROM modulo_group.members WHERE member_id = ${memberId} AND group_id = ${groupId}
                  RETURNING member_id`
                const gone = yield* deleteExpired(groupId, now)
                if (mine.length + gone.length > 0) yield* rebalance(groupId, now, epoch)
                return mine.length > 0
              })))
        ),

      wakeups: (groupId) => wakeups(pg, groupId),

      group: (groupId) =>
        wrap(
          "group",
          Effect.map(
            sql<{ group_id: string; epoch: string; size: number; changed_at: Date }>`
              SELECT group_id, epoch, size, changed_at FROM modulo_group.groups WHERE group_id = ${groupId}`,
            (rows) => Option.map(Option.fromNullable(rows[0]), toGroupRow)
          )
        ),

      members: (groupId) =>
        wrap(
          "members",
          Effect.flatMap(nowParam, (now) =>
            Effect.map(
              sql<{
                member_id: string
                name: string
                host: string
                pid: number
                idx: number | null
                acked_epoch: string
                joined_at: Date
                heartbeat_age_ms: string
                lease_left_ms: string
              }>`
                SELECT member_id, name, host, pid, idx, acked_epoch, joined_at,
                       (extract(epoch FROM ${nowSql(now)} - heartbeat_at) * 1000)::bigint AS heartbeat_age_ms,
                       (extract(epoch FROM lease_expires_at - ${nowSql(now)}) * 1000)::bigint AS lease_left_ms
                  FROM modulo_group.members WHERE group_id = ${groupId}
                 ORDER BY idx NULLS LAST, join_seq`,
              (rows) =>
                rows.map((r): MemberRow => ({
                  memberId: r.member_id,
                  name: r.name,
                  host: r.host,
                  pid: r.pid,
                  index: r.idx,
                  ackedEpoch: num(r.acked_epoch),
                  joinedAt: r.joined_at,
                  heartbeatAgeMs: num(r.heartbeat_age_ms),
                  leaseLeftMs: num(r.lease_left_ms)
                }))
            ))
        ),

      groups: wrap(
        "groups",
        Effect.map(
          sql<{ group_id: string; epoch: string; size: number; changed_at: Date }>`
            SELECT group_id, epoch, size, changed_at FROM modulo_group.groups ORDER BY group_id`,
          (rows) => rows.map(toGroupRow)
        )
      )
    }
    return store
  })

const toGroupRow = (r: { group_id: string; epoch: string; size: number; changed_at: Date }): GroupRow => ({
  groupId: r.group_id,
  epoch: num(r.epoch),
  size: num(r.size),
  changedAt: r.changed_at
})

/**
 * The store over the app's `PgClient`, schema readied first.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<MembershipStore, DatabaseUnavailable | SchemaMismatch, PgClient.PgClient | SqlClient.SqlClient> =>
  Layer.effect(MembershipStore, Effect.zipRight(prepare(options), make(options)))
