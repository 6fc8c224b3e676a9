/**
 * What the dashboard reads: every group with its members' health, one group with its members, and
 * the change log (migration 0004) of the last hour. Read-only, each one statement (one committed
 * state), ages and leases on the database clock.
 *
 * @since 0.1.0
 * @internal
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { createHash } from "node:crypto"
import { type MembershipError, Migrations, Slots } from "modulo-group"
import { isoOrNull, msBetween } from "../commands/shared.js"
import { holds, type RowState, snapshot, type StatusWaiter } from "../commands/status.js"
import type { ChangeRow } from "./timeline.js"

const num = (v: unknown): number => (typeof v === "number" ? v : Number(v))

/**
 * A group's notification channel: the library's (src/internal/pg/constants.ts `channelFor`), which
 * is not part of its public entry.
 *
 * @since 0.1.0
 * @internal
 */
export const channelFor = (groupId: string): string => `mg_${createHash("md5").update(groupId, "utf8").digest("hex")}`

/**
 * A member is `late` when less than half of its lease is left (it missed renewals), `expired` when
 * none is (nobody has reaped it yet), else `healthy`.
 *
 * @since 0.1.0
 * @internal
 */
export type Health = "healthy" | "late" | "expired"

/**
 * A group's mode: modulo N (every member an index) or a fixed number of slots (docs/slots.md).
 *
 * @since 0.3.0
 * @internal
 */
export type Mode = "modulo" | "slots"

/**
 * @since 0.1.0
 * @internal
 */
export interface GroupSummary {
  readonly groupId: string
  readonly epoch: number
  readonly size: number
  readonly mode: Mode
  /** Slots mode: the group's slot count S (null: modulo mode). */
  readonly slots: number | null
  /** ISO 8601; null when not a finite time (set by hand). */
  readonly changedAt: string | null
  readonly changedAgoMs: number | null
  readonly members: number
  readonly healthy: number
  readonly late: number
  readonly expired: number
}

/**
 * @since 0.1.0
 * @internal
 */
export interface MemberView {
  readonly memberId: string
  readonly index: number | null
  /** Static membership: the member's instance id ("" without one). */
  readonly instanceId: string
  readonly name: string
  readonly host: string
  readonly pid: number
  readonly ackedEpoch: number
  readonly heartbeatAgeMs: number
  readonly leaseLeftMs: number
  readonly leaseMs: number
  readonly health: Health
  readonly state: RowState
  readonly stoppingSinceMs: number | null
  /**
   * Slots mode: the slots the member holds (ascending), as ranges ("0-15, 32"), and how many it owns
   * but does not hold yet (their handoff is under way); null in modulo mode.
   */
  readonly slots: { readonly held: number; readonly ranges: string; readonly pending: number } | null
}

/**
 * @since 0.1.0
 * @internal
 */
export interface GroupDetail {
  readonly groupId: string
  readonly epoch: number
  readonly size: number
  readonly incarnation: number
  readonly mode: Mode
  /** Slots mode: the group's slot count S (null: modulo mode). */
  readonly slots: number | null
  /** ISO 8601; null when not a finite time (set by hand). */
  readonly changedAt: string | null
  readonly members: ReadonlyArray<MemberView>
  /** Processes waiting for an instance id that a live member holds (static membership). */
  readonly waiters: ReadonlyArray<WaiterView>
  /** The database clock when read (ms since the epoch). */
  readonly now: number
}

/**
 * A process waiting for an instance id (`status`'s waiter), with the name of the member row that
 * holds it (null: none).
 *
 * @since 0.1.0
 * @internal
 */
export interface WaiterView extends StatusWaiter {
  readonly heldBy: string | null
}

/** What the schema allows: nothing (not installed), the groups, or the groups and the change log. */
export type Installed = "none" | "groups" | "log"

/**
 * @since 0.1.0
 * @internal
 */
export const installed: Effect.Effect<Installed, unknown, SqlClient.SqlClient> = Effect.map(
  Migrations.installedVersion,
  (v) => (v === 0 ? "none" : v >= 4 ? "log" : "groups")
)

const health = (leaseLeftMs: number, leaseMs: number): Health =>
  leaseLeftMs <= 0 ? "expired" : leaseLeftMs < leaseMs / 2 ? "late" : "healthy"

/**
 * The groups the overview shows (at most {@link GROUPS_SHOWN}) and how many groups there are.
 *
 * @since 0.1.0
 * @internal
 */
export interface GroupList {
  readonly groups: ReadonlyArray<GroupSummary>
  /** Every group in the database; more than `groups.length` when the list was cut. */
  readonly total: number
}

/**
 * The most groups the overview lists.
 *
 * @since 0.1.0
 * @internal
 */
export const GROUPS_SHOWN = 500

/**
 * The groups with their members' health: when there are more than {@link GROUPS_SHOWN}, the groups
 * with a member whose lease has not run out come first, then the latest changes; shown by id. A
 * database that has seen many groups (old, empty ones stay) still lists the live ones.
 *
 * @since 0.1.0
 * @internal
 */
export const groups: Effect.Effect<GroupList, SqlError | MembershipError.DatabaseUnavailable, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  // The slot count exists from schema 7 on (reading it needs no grant on the slot rows).
  const version = yield* Migrations.installedVersion
  const rows = yield* sql<{
    group_id: string
    epoch: string
    size: number
    slots: number | null
    changed_ms: number
    changed_ago_ms: number
    members: string
    expired: string
    late: string
    total: string
  }>`
    SELECT * FROM (
      SELECT g.group_id, g.epoch, g.size, ${version >= 7 ? sql`g.slots` : sql`NULL::int AS slots`},
             (extract(epoch FROM g.changed_at) OPERATOR(pg_catalog.*) 1000)::float8 AS changed_ms,
             -- As float8 differences of epochs: a time set by hand to infinity is shown, not a database
             -- error for every group ("cannot subtract infinite timestamps": a review).
             ${msBetween(sql, sql`g.changed_at`, sql`statement_timestamp()`)} AS changed_ago_ms,
             pg_catalog.count(m.member_id) AS members,
             pg_catalog.count(m.member_id) FILTER (WHERE m.lease_expires_at <= statement_timestamp()) AS expired,
             pg_catalog.count(m.member_id) FILTER (WHERE m.lease_expires_at > statement_timestamp()
                                          AND ${msBetween(sql, sql`statement_timestamp()`, sql`m.lease_expires_at`)}
                                              < ${msBetween(sql, sql`m.heartbeat_at`, sql`m.lease_expires_at`)} / 2::float8) AS late,
             count(*) OVER () AS total
        FROM modulo_group.groups g
        LEFT JOIN modulo_group.members m ON m.group_id = g.group_id
       GROUP BY g.group_id
       ORDER BY pg_catalog.count(m.member_id) FILTER (WHERE m.lease_expires_at > statement_timestamp()) > 0 DESC,
                g.changed_at DESC, g.group_id
       LIMIT ${GROUPS_SHOWN}::int8) shown
     ORDER BY group_id`
  return {
    total: rows.length === 0 ? 0 : num(rows[0]!.total),
    groups: rows.map((r): GroupSummary => {
      const members = num(r.members)
      const expired = num(r.expired)
      const late = num(r.late)
      return {
        groupId: r.group_id,
        epoch: num(r.epoch),
        size: num(r.size),
        mode: r.slots === null ? "modulo" : "slots",
        slots: r.slots === null ? null : num(r.slots),
        // Milliseconds since the epoch: node-postgres parses timestamp text only in the ISO DateStyle.
        changedAt: isoOrNull(new Date(num(r.changed_ms))),
        // Not finite (a time set by hand): null in the JSON.
        changedAgoMs: Number.isFinite(num(r.changed_ago_ms)) ? num(r.changed_ago_ms) : null,
        members,
        healthy: members - expired - late,
        late,
        expired
      }
    })
  }
})

/**
 * One group, its members and its waiters, from one statement (`status`'s: `Status.snapshot`, for the
 * installed schema version); `undefined` when the group has no row.
 *
 * @since 0.1.0
 * @internal
 */
export const group = (groupId: string): Effect.Effect<GroupDetail | undefined, SqlError | MembershipError.DatabaseUnavailable, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const version = yield* Migrations.installedVersion
    const found = yield* snapshot(groupId, version)
    if (Option.isNone(found)) return undefined
    const { group: g, members, waiters } = found.value
    return {
      groupId: g.groupId,
      epoch: g.epoch,
      size: g.size,
      incarnation: g.incarnation,
      mode: g.slots == null ? "modulo" : "slots",
      slots: g.slots ?? null,
      changedAt: isoOrNull(g.changedAt),
      now: g.nowMs,
      members: members.map((m): MemberView => ({
        memberId: m.memberId,
        index: m.index,
        instanceId: m.instanceId ?? "",
        name: m.name,
        host: m.host,
        pid: m.pid,
        ackedEpoch: m.ackedEpoch,
        heartbeatAgeMs: m.heartbeatAgeMs,
        leaseLeftMs: m.leaseLeftMs,
        leaseMs: m.leaseMs,
        health: health(m.leaseLeftMs, m.leaseMs),
        state: m.state,
        stoppingSinceMs: m.stoppingSinceMs,
        slots: g.slots == null ? null : {
          held: m.heldSlots?.length ?? 0,
          ranges: Slots.toRanges(m.heldSlots ?? []),
          pending: m.pendingSlots ?? 0
        }
      })),
      waiters: waiters.map((w): WaiterView => ({
        ...w,
        heldBy: members.find((m) => holds(m, w.instanceId))?.name ?? null
      }))
    }
  })

/**
 * The change log of a group from `sinceMs` on (ms since the epoch; at most 2000 rows), preceded by
 * the last row before it (who held what when the window opened), in commit order.
 *
 * @since 0.1.0
 * @internal
 */
export const changes = (groupId: string, sinceMs: number): Effect.Effect<ReadonlyArray<ChangeRow>, SqlError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const since = new Date(sinceMs).toISOString()
    const rows = yield* sql<{
      epoch: string
      size: number
      incarnation: string
      changed_ms: string
      cause: ChangeRow["cause"]
      subject: string | null
      assignment: ChangeRow["assignment"]
    }>`
      SELECT epoch, size, incarnation, (extract(epoch FROM changed_at) OPERATOR(pg_catalog.*) 1000)::float8 AS changed_ms,
             cause, subject, assignment
        FROM ((SELECT * FROM modulo_group.change_log
                WHERE group_id = ${groupId}::text AND changed_at < ${since}::timestamptz
                ORDER BY changed_at DESC, id DESC LIMIT 1)
              UNION ALL
              (SELECT * FROM modulo_group.change_log
                WHERE group_id = ${groupId}::text AND changed_at >= ${since}::timestamptz
                ORDER BY changed_at, id LIMIT 2000)) AS c
       ORDER BY changed_at, id`
    // A row whose time is not finite (set by hand) has no place on a timeline.
    return rows.filter((r) => Number.isFinite(num(r.changed_ms))).map((r): ChangeRow => ({
      epoch: num(r.epoch),
      size: num(r.size),
      incarnation: num(r.incarnation),
      changedAt: num(r.changed_ms),
      cause: r.cause,
      subject: r.subject,
      assignment: typeof r.assignment === "string" ? JSON.parse(r.assignment) : r.assignment
    }))
  })
