/**
 * `modulo-group status <group>`: one group and its members, read-only, as of one committed state.
 *
 * @since 0.1.0
 * @internal
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type * as Statement from "@effect/sql/Statement"
import type { SqlError } from "@effect/sql/SqlError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import { MembershipConfig, type MembershipStore, Migrations, PgMembershipStore, Slots } from "modulo-group"
import { fail, knownMessage } from "../CliError.js"
import * as Database from "../Database.js"
import { formatMillis } from "../Durations.js"
import * as Shared from "./shared.js"
import { bounded, isoOrNull, NOT_INSTALLED, num, printable, printsOnce, schemaReady, table, timeText, wholeMs, writeOut } from "./shared.js"

type GroupRow = MembershipStore.GroupRow
type MemberRow = MembershipStore.MemberRow

/**
 * The group columns `status` shows.
 *
 * @since 0.1.0
 * @internal
 */
export type StatusGroup = Pick<GroupRow, "groupId" | "epoch" | "size" | "changedAt"> & {
  /** Slots mode: the group's slot count (absent or null: modulo mode). */
  readonly slots?: number | null | undefined
  /**
   * Indices of `[0, size)` that no member row holds (rows deleted or indices moved by hand): every
   * change waits until they have been missing for a lease (migration 0015). Absent or empty: none.
   */
  readonly missingIndices?: ReadonlyArray<number> | undefined
  /**
   * Slots mode: slots held by a member id that no row has (a row deleted or its member id changed by
   * hand): every change waits for them as for a missing index. Absent or empty: none.
   */
  readonly orphanSlots?: ReadonlyArray<number> | undefined
  /** How much longer the changes wait, as the first change that found them recorded it (null: none has yet). */
  readonly changesHeldMs?: number | null | undefined
}

/**
 * The member columns `status` shows.
 *
 * @since 0.1.0
 * @internal
 */
export type StatusMember = MemberSlots & Pick<
  MemberRow,
  | "memberId"
  | "name"
  | "host"
  | "pid"
  | "index"
  | "ackedEpoch"
  | "joinedAt"
  | "heartbeatAgeMs"
  | "leaseLeftMs"
  | "instanceId"
  | "releasedAt"
  | "graceLeftMs"
>

/**
 * Slots mode: the slots a member holds (it may work them), ascending, and how many it owns but does
 * not hold yet (waiting for their old holder's release).
 *
 * @since 0.3.0
 * @internal
 */
export interface MemberSlots {
  readonly heldSlots?: ReadonlyArray<number> | undefined
  readonly pendingSlots?: number | undefined
}

/**
 * A member's state as `status` derives it from its row.
 *
 * @since 0.1.0
 * @internal
 */
export type RowState = "expired" | "renegotiating" | "assigned" | "awaiting" | "released" | "held" | "waiting"

/**
 * Static membership: a row with an instance id whose lease is gone but whose rejoin grace is not is
 * kept with its index for its instance: `released` (it left gracefully) or `held` (its lease ran
 * out: a crash or a hang). Nobody works its slice until the instance is back or the grace ends.
 * Lease gone: `expired` (the next heartbeat of anyone reaps it). Epoch not acknowledged yet:
 * `renegotiating` (stopping its old work). Everyone acknowledged: `assigned`. Else `awaiting`
 * (acknowledged, waiting at the barrier for the others). No index and a live lease: `waiting` (a
 * joiner that found a member overdue and waits to be given an index by the next change; it is not
 * in the group's size).
 *
 * @since 0.1.0
 * @internal
 */
export const deriveStates = (group: StatusGroup, members: ReadonlyArray<StatusMember>): ReadonlyArray<RowState> => {
  // As the store's barrier: a member row acknowledged above the group's epoch (the rows were put back)
  // holds it; a waiting joiner's acknowledges the next epoch ahead of time, and does not.
  const allAcked = members.every((m) => m.ackedEpoch === group.epoch || (m.index === null && m.ackedEpoch > group.epoch))
  // Slots mode has no barrier: a live member works the slots it holds whatever epoch its row last
  // acknowledged (docs/slots.md); "renegotiating" (stopping its work) and "awaiting" (at a barrier) were
  // false there for up to a heartbeat after every change (an adversarial review).
  const slotsMode = group.slots != null
  return members.map((m) =>
    m.leaseLeftMs <= 0 && m.instanceId != null && (m.graceLeftMs ?? 0) > 0
      ? (m.releasedAt != null ? "released" : "held")
      : m.leaseLeftMs <= 0
      ? "expired"
      : m.index === null
      ? "waiting"
      : slotsMode
      ? "assigned"
      : m.ackedEpoch < group.epoch
      ? "renegotiating"
      : allAcked
      ? "assigned"
      : "awaiting"
  )
}

/**
 * Static membership: a process waiting for an instance id that a live member holds (its join found
 * it busy). It has no member row; its waiter row (migration 0006) is shown while it is younger than
 * the waiter's lease. Display only: the protocol never reads it, so a forged row misleads no member.
 *
 * @since 0.1.0
 * @internal
 */
export interface StatusWaiter {
  readonly instanceId: string
  readonly memberId: string
  readonly name: string
  readonly host: string
  readonly pid: number
  /** Since its first busy join, on the database clock. */
  readonly waitingMs: number
  /** Since its latest retry, on the database clock. */
  readonly seenAgoMs: number
}

/**
 * @since 0.1.0
 * @internal
 */
export interface GroupStatus {
  readonly group: StatusGroup
  /**
   * `stoppingSinceMs`: how long its work has been stopping past the stop timeout (the row's
   * `stopping_since`, on the database clock; null or absent: not stuck).
   */
  readonly members: ReadonlyArray<StatusMember & { readonly state: RowState; readonly stoppingSinceMs?: number | null | undefined }>
  /** Processes waiting for an instance id (none: absent or empty). */
  readonly waiters?: ReadonlyArray<StatusWaiter> | undefined
}

const who = (m: { readonly name: string; readonly host: string; readonly pid: number }) =>
  `${printable(m.name)} (${printable(m.host)}/${m.pid})`

/**
 * Whether member `m` holds instance id `id` as a waiter row shows it (`printable`, as decoded).
 *
 * @internal
 */
export const holds = (m: { readonly instanceId?: string | null | undefined }, id: string) =>
  m.instanceId != null && printable(m.instanceId) === id

/**
 * One line per instance id that processes wait for: its holder (the row with that instance id, if
 * any) and the waiters, e.g. `instance w1: held by w1 (host-a/12) [0/4]; waiting: w1 (host-b/40)
 * since 12.0s`.
 *
 * @since 0.1.0
 * @internal
 */
export const renderWaiters = (s: GroupStatus): ReadonlyArray<string> => {
  const waiters = s.waiters ?? []
  const ids = [...new Set(waiters.map((w) => w.instanceId))]
  return ids.map((id) => {
    const holder = s.members.find((m) => holds(m, id))
    const held = holder === undefined
      ? "no member row"
      : `held by ${who(holder)} [${holder.index ?? "-"}/${s.group.size}]${holder.state === "released" || holder.state === "held" || holder.state === "expired" ? ` (${holder.state})` : ""}`
    const waiting = waiters.filter((w) => w.instanceId === id).map((w) => `${who(w)} since ${formatMillis(w.waitingMs)}`)
    return `instance ${id}: ${held}; waiting: ${waiting.join(", ")}`
  })
}

/** How many indices `snapshot` looks at for missing rows (its SQL's bound). */
const MISSING_LOOKED_AT = 65_536

/**
 * Indices with no member row, and how long the group's changes wait for them (docs/operations.md, "A
 * member row deleted by hand"), as runs in the form a member's held slots take (`Slots.toRanges`:
 * `1-3,7,9-12`): a group whose size was set by hand to 100,000 listed 65,535 missing indices one by
 * one in a line of 400 KB.
 *
 * @since 0.4.0
 * @internal
 */
export const renderMissing = (group: StatusGroup): ReadonlyArray<string> => {
  const missing = group.missingIndices ?? []
  const orphans = group.orphanSlots ?? []
  if (missing.length === 0 && orphans.length === 0) return []
  const held = group.changesHeldMs ?? null
  const wait = held === null
    ? "the next join, leave or reap will wait the group's longest lease"
    : held > 0
    ? `no join, leave or reap for ${formatMillis(held)} more`
    : "the next join, leave or reap repairs the group"
  return [
    ...(missing.length === 0 ? [] : [
      `${missing.length === 1 ? "index" : "indices"} ${Slots.toRanges(missing)} of ${group.size}` +
      `${group.size > MISSING_LOOKED_AT ? ` (of the first ${MISSING_LOOKED_AT} looked at)` : ""} ${missing.length === 1 ? "has" : "have"} ` +
      `no member row (deleted or moved by hand?): ${wait}`
    ]),
    ...(orphans.length === 0 ? [] : [
      `${orphans.length === 1 ? "slot" : "slots"} ${Slots.toRanges(orphans)} ${orphans.length === 1 ? "is" : "are"} held by a member id ` +
      `no row has (deleted or changed by hand?): ${wait}`
    ])
  ]
}

/**
 * @since 0.1.0
 * @internal
 */
export const renderStatus = (s: GroupStatus): string => {
  const slotCount = s.group.slots ?? null
  const head = `group ${s.group.groupId}: epoch ${s.group.epoch}, size ${s.group.size}${
    slotCount === null ? "" : `, ${slotCount} slots`
  } (changed ${timeText(s.group.changedAt)})`
  const waiting = [...renderMissing(s.group), ...renderWaiters(s)]
  const tail = waiting.length === 0 ? "" : `\n${waiting.join("\n")}`
  if (s.members.length === 0) return `${head}\nno members${tail}`
  // The INSTANCE column only for groups with static members: other groups look as they always did.
  const statics = s.members.some((m) => m.instanceId != null)
  const stateText = (m: GroupStatus["members"][number]) =>
    (m.state === "released" || m.state === "held"
      ? `${m.state}: index held ${formatMillis(m.graceLeftMs ?? 0)} more`
      : m.state) +
    // Work that has not stopped past the stop timeout holds the barrier (docs/reliability.md).
    (m.stoppingSinceMs != null ? `, work stopping for ${formatMillis(Math.max(0, m.stoppingSinceMs))}` : "")
  return `${head}\n${
    table(
      [
        ...(slotCount === null ? ["INDEX"] : ["SLOTS", "RANGES"]),
        "NAME",
        ...(statics ? ["INSTANCE"] : []),
        "HOST",
        "PID",
        "ACKED",
        "HEARTBEAT",
        "LEASE LEFT",
        "STATE"
      ],
      s.members.map((m) => [
        ...(slotCount === null
          ? [m.index === null ? "-" : String(m.index)]
          : [
            `${m.heldSlots?.length ?? 0}${(m.pendingSlots ?? 0) > 0 ? ` (+${m.pendingSlots} pending)` : ""}`,
            (m.heldSlots?.length ?? 0) === 0 ? "-" : Slots.toRanges(m.heldSlots ?? [])
          ]),
        printable(m.name),
        ...(statics ? [m.instanceId == null ? "-" : printable(m.instanceId)] : []),
        printable(m.host),
        String(m.pid),
        String(m.ackedEpoch),
        `${formatMillis(m.heartbeatAgeMs)} ago`,
        m.leaseLeftMs <= 0 ? `expired ${formatMillis(-m.leaseLeftMs)} ago` : formatMillis(m.leaseLeftMs),
        stateText(m)
      ])
    )
  }${tail}`
}

/**
 * @since 0.1.0
 * @internal
 */
export const statusJson = (s: GroupStatus) => ({
  group: s.group.groupId,
  epoch: s.group.epoch,
  size: s.group.size,
  changedAt: isoOrNull(s.group.changedAt),
  ...(s.group.slots == null ? {} : { slots: s.group.slots }),
  ...((s.group.missingIndices ?? []).length === 0 && (s.group.orphanSlots ?? []).length === 0
    ? {}
    : {
      ...((s.group.missingIndices ?? []).length === 0 ? {} : { missingIndices: s.group.missingIndices }),
      ...((s.group.orphanSlots ?? []).length === 0 ? {} : { slotsHeldWithoutRow: s.group.orphanSlots }),
      changesHeldMs: wholeMs(s.group.changesHeldMs)
    }),
  members: s.members.map((m) => ({
    index: s.group.slots == null ? m.index : null,
    ...(s.group.slots == null ? {} : { slots: m.heldSlots ?? [], pendingSlots: m.pendingSlots ?? 0 }),
    name: m.name,
    host: m.host,
    pid: m.pid,
    ackedEpoch: m.ackedEpoch,
    heartbeatAgeMs: wholeMs(m.heartbeatAgeMs),
    leaseLeftMs: wholeMs(m.leaseLeftMs),
    state: m.state,
    memberId: m.memberId,
    joinedAt: isoOrNull(m.joinedAt),
    instanceId: m.instanceId ?? null,
    releasedAt: m.releasedAt == null ? null : isoOrNull(m.releasedAt),
    graceLeftMs: wholeMs(m.graceLeftMs),
    stoppingMs: wholeMs(m.stoppingSinceMs)
  })),
  waiters: (s.waiters ?? []).map((w) => ({
    instanceId: w.instanceId,
    // The member id of the row that holds the instance id, if any.
    heldBy: s.members.find((m) => holds(m, w.instanceId))?.memberId ?? null,
    memberId: w.memberId,
    name: w.name,
    host: w.host,
    pid: w.pid,
    waitingMs: w.waitingMs,
    seenAgoMs: w.seenAgoMs
  }))
})

/**
 * What `snapshot` reads beyond `status`'s columns, for the dashboard: the group's incarnation and
 * the database clock, each member's stuck-stopping time and lease length.
 *
 * @since 0.1.0
 * @internal
 */
export interface GroupSnapshot extends GroupStatus {
  readonly group: StatusGroup & { readonly incarnation: number; readonly nowMs: number }
  readonly members: ReadonlyArray<
    StatusMember & { readonly state: RowState; readonly stoppingSinceMs: number | null; readonly leaseMs: number }
  >
  readonly waiters: ReadonlyArray<StatusWaiter>
}

/**
 * One group, its members and the processes waiting for its instance ids, as of one committed state:
 * a single statement (the group row LEFT JOIN its member rows, the waiters aggregated beside), so the
 * header and the rows can never come from two states, whatever changes commit meanwhile. Ages and
 * leases on the database clock. `None` when the group has no row. `status` and the dashboard both
 * read this. `version`: the installed schema version (the columns of static membership need 5, the
 * waiters 6; older schemas read without them). Waiters are read only where the role may read their
 * table (one more statement first, `has_table_privilege`).
 *
 * @since 0.1.0
 * @internal
 */
export const snapshot = (
  groupId: string,
  version: number = Migrations.schemaVersion
): Effect.Effect<Option.Option<GroupSnapshot>, SqlError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const msBetween = (from: Statement.Fragment, to: Statement.Fragment) => Shared.msBetween(sql, from, to)
    const statics = version >= 5
      ? sql`m.instance_id, (extract(epoch FROM m.released_at) OPERATOR(pg_catalog.*) 1000)::float8 AS released_ms,
             CASE WHEN m.instance_id IS NOT NULL
                  THEN ${msBetween(sql`statement_timestamp()`, sql`m.lease_expires_at`)} OPERATOR(pg_catalog.+) m.rejoin_grace_ms::float8 END AS grace_left_ms`
      : sql`NULL::text AS instance_id, NULL::float8 AS released_ms, NULL::bigint AS grace_left_ms`
    // Waiters seen within their lease that hold no member row (one that took over and has not yet
    // deleted its waiter row is a member now); at most 100 (anyone who may write the table could
    // flood it). A viewer role without SELECT on the table (granted before migration 0006 existed)
    // sees everything else.
    const [privilege] = version >= 6
      ? yield* sql<{ ok: boolean }>`SELECT has_table_privilege('modulo_group.instance_waiters', 'SELECT') AS ok`
      : [{ ok: false }]
    const waiters = privilege?.ok === true
      ? sql`(SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                      'instanceId', w.instance_id, 'memberId', w.member_id, 'name', w.name, 'host', w.host,
                      'pid', w.pid,
                      'waitingMs', ${msBetween(sql`w.since`, sql`statement_timestamp()`)},
                      'seenAgoMs', ${msBetween(sql`w.seen_at`, sql`statement_timestamp()`)})
                    ORDER BY w.instance_id, w.since, w.member_id)
               FROM (SELECT * FROM modulo_group.instance_waiters v
                      WHERE v.group_id = g.group_id
                        AND v.seen_at + v.lease_ms::float8 * interval '1 millisecond' > statement_timestamp()
                        AND NOT EXISTS (SELECT 1 FROM modulo_group.members x WHERE x.member_id = v.member_id)
                      ORDER BY v.instance_id, v.since, v.member_id
                      LIMIT 100) w) AS waiters`
      : sql`NULL::json AS waiters`
    // Slots mode (schema 7): the group's slot count, and each member's held slots and pending count.
    // Read only where the role may read the slot rows (a viewer granted before migration 0007 sees
    // the rest, slots-mode groups as if in modulo mode).
    const [slotPrivilege] = version >= 7
      ? yield* sql<{ ok: boolean }>`SELECT has_table_privilege('modulo_group.slots', 'SELECT') AS ok`
      : [{ ok: false }]
    const slotColumns = slotPrivilege?.ok === true
      ? sql`g.slots,
             (SELECT pg_catalog.json_agg(s.slot ORDER BY s.slot) FROM modulo_group.slots s
               WHERE s.group_id = g.group_id AND s.holder = m.member_id) AS held_slots,
             (SELECT count(*) FROM modulo_group.slots s
               WHERE s.group_id = g.group_id AND s.owner = m.member_id
                 AND s.holder IS DISTINCT FROM m.member_id) AS pending_slots`
      : sql`NULL::int AS slots, NULL::json AS held_slots, NULL::bigint AS pending_slots`
    // Slots held by a member id that no row has (schema 15 waits for them as for missing indices).
    const orphanColumn = slotPrivilege?.ok === true && version >= 15
      ? sql`(SELECT pg_catalog.array_agg(s.slot ORDER BY s.slot) FROM modulo_group.slots s
               WHERE s.group_id = g.group_id AND s.holder IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM modulo_group.members x
                                  WHERE x.group_id = g.group_id AND x.member_id OPERATOR(pg_catalog.=) s.holder)) AS orphans`
      : sql`NULL::int4[] AS orphans`
    // Indices with no member row, and how much longer the changes wait for them (schema 15).
    const missingColumns = version >= 15
      ? sql`(SELECT pg_catalog.array_agg(i.i ORDER BY i.i)
               FROM pg_catalog.generate_series(0::int4, LEAST(g.size, ${MISSING_LOOKED_AT}::int4) OPERATOR(pg_catalog.-) 1::int4) AS i (i)
              WHERE NOT EXISTS (SELECT 1 FROM modulo_group.members x WHERE x.group_id = g.group_id AND x.idx = i.i)) AS missing,
             CASE WHEN pg_catalog.isfinite(g.missing_since)
                  THEN (extract(epoch FROM statement_timestamp() - g.missing_since) OPERATOR(pg_catalog.*) 1000)::float8 END AS missing_ms,
             g.missing_wait_ms, g.missing_indices AS missing_was`
      : sql`NULL::int4[] AS missing, NULL::float8 AS missing_ms, NULL::float8 AS missing_wait_ms, NULL::int4[] AS missing_was`
    const rows = yield* sql<{
      slots: number | null
      held_slots: ReadonlyArray<number> | null
      pending_slots: string | null
      group_id: string
      epoch: string
      size: number
      changed_ms: number
      incarnation: string
      now_ms: string
      member_id: string | null
      name: string | null
      host: string | null
      pid: number | null
      idx: number | null
      acked_epoch: string | null
      joined_ms: number | null
      stopping_ms: number | null
      heartbeat_age_ms: number | null
      lease_left_ms: number | null
      lease_ms: number | null
      instance_id: string | null
      released_ms: number | null
      grace_left_ms: number | null
      waiters: unknown
      missing: ReadonlyArray<number> | null
      missing_ms: number | null
      missing_wait_ms: number | null
      missing_was: ReadonlyArray<number> | null
      orphans: ReadonlyArray<number> | null
    }>`
      SELECT g.group_id, g.epoch, g.size, (extract(epoch FROM g.changed_at) OPERATOR(pg_catalog.*) 1000)::float8 AS changed_ms, g.incarnation,
             (extract(epoch FROM statement_timestamp()) OPERATOR(pg_catalog.*) 1000)::bigint AS now_ms,
             m.member_id, m.name, m.host, m.pid, m.idx, m.acked_epoch, (extract(epoch FROM m.joined_at) OPERATOR(pg_catalog.*) 1000)::float8 AS joined_ms,
             ${msBetween(sql`m.stopping_since`, sql`statement_timestamp()`)} AS stopping_ms,
             ${msBetween(sql`m.heartbeat_at`, sql`statement_timestamp()`)} AS heartbeat_age_ms,
             ${msBetween(sql`statement_timestamp()`, sql`m.lease_expires_at`)} AS lease_left_ms,
             ${msBetween(sql`m.heartbeat_at`, sql`m.lease_expires_at`)} AS lease_ms,
             ${statics}, ${waiters}, ${slotColumns}, ${missingColumns}, ${orphanColumn}
        FROM modulo_group.groups g
        LEFT JOIN modulo_group.members m ON m.group_id = g.group_id
       WHERE g.group_id = ${groupId}::text
       ORDER BY m.idx NULLS LAST, m.join_seq`
    const first = rows[0]
    if (first === undefined) return Option.none()
    const group = {
      groupId: first.group_id,
      epoch: num(first.epoch),
      size: num(first.size),
      // Times as milliseconds since the epoch: node-postgres parses timestamp text only in the ISO
      // DateStyle (a database's default of German or SQL read them as null, and status failed).
      changedAt: new Date(num(first.changed_ms)),
      incarnation: num(first.incarnation),
      nowMs: num(first.now_ms),
      slots: first.slots === null ? null : num(first.slots),
      missingIndices: (first.missing ?? []).map(num),
      orphanSlots: (first.orphans ?? []).map(num),
      // As the store reads the record (a time or wait edited by hand, or a record of other indices,
      // is none: the next change records one); slots as the store records them, -1 - slot.
      changesHeldMs: version < 15 ? null : Option.getOrNull(Option.map(
        PgMembershipStore.missingWait([...(first.missing ?? []).map(num), ...(first.orphans ?? []).map((slot) => -1 - num(slot))], {
          sinceMs: first.missing_ms,
          waitMs: first.missing_wait_ms,
          indices: first.missing_was
        }),
        Math.round
      ))
    }
    const members: Array<StatusMember & { readonly stoppingSinceMs: number | null; readonly leaseMs: number }> = []
    for (const r of rows) {
      if (r.member_id === null) continue
      members.push({
        memberId: r.member_id,
        // As the row holds them (`--json` escapes them as JSON does); the text output prints them
        // `printable` (a row written by hand may hold escape sequences).
        name: r.name ?? "",
        host: r.host ?? "",
        pid: r.pid ?? 0,
        index: r.idx,
        ackedEpoch: num(r.acked_epoch),
        joinedAt: new Date(num(r.joined_ms ?? 0)),
        heartbeatAgeMs: num(r.heartbeat_age_ms),
        leaseLeftMs: num(r.lease_left_ms),
        instanceId: r.instance_id,
        releasedAt: r.released_ms === null ? null : new Date(num(r.released_ms)),
        graceLeftMs: r.grace_left_ms === null ? null : num(r.grace_left_ms),
        stoppingSinceMs: r.stopping_ms === null ? null : num(r.stopping_ms),
        leaseMs: num(r.lease_ms),
        ...(first.slots === null ? {} : { heldSlots: (r.held_slots ?? []).map(num), pendingSlots: num(r.pending_slots ?? 0) })
      })
    }
    const states = deriveStates(group, members)
    return Option.some({
      group,
      members: members.map((m, i) => ({ ...m, state: states[i]! })),
      waiters: decodeWaiters(first.waiters)
    })
  })

/**
 * The aggregated waiters (json from `pg`, or its text). Anyone with write access to the table can put
 * rows there: only well-formed entries, their text without control characters and at most 200
 * characters, so a forged row cannot drive the terminal.
 */
const decodeWaiters = (raw: unknown): ReadonlyArray<StatusWaiter> => {
  const list: unknown = typeof raw === "string" ? JSON.parse(raw) : raw
  if (!Array.isArray(list)) return []
  // At most 200 characters (code points, as the library counts ids and names: a cut in UTF-16 units
  // split an emoji, and the waiter's instance id no longer matched its holder's; a review).
  const text = (v: unknown) => typeof v === "string" ? Array.from(printable(v)).slice(0, 200).join("") : ""
  return list.flatMap((w: Record<string, unknown>): Array<StatusWaiter> =>
    typeof w?.instanceId !== "string" || typeof w.memberId !== "string" ? [] : [{
      instanceId: text(w.instanceId),
      memberId: w.memberId,
      name: text(w.name),
      host: text(w.host),
      pid: num(w.pid),
      waitingMs: num(w.waitingMs),
      seenAgoMs: num(w.seenAgoMs)
    }]
  )
}

/**
 * @since 0.1.0
 * @internal
 */
export interface StatusOptions {
  readonly group: string
  readonly json: boolean
  readonly watch: boolean
  readonly databaseUrl: Option.Option<string>
}

/**
 * @since 0.1.0
 * @internal
 */
export const status = (options: StatusOptions) =>
  Effect.gen(function*() {
    const groupId = yield* MembershipConfig.validateGroupId(options.group)
    const database = yield* Database.resolve(options.databaseUrl)
    const body = Effect.gen(function*() {
      let installed = false
      const fetch = bounded(
        "the group",
        Effect.gen(function*() {
          installed = yield* schemaReady
          return installed ? yield* snapshot(groupId) : Option.none<GroupStatus>()
        })
      )
      const missing = () =>
        `group ${JSON.stringify(groupId)} not found: no member has joined it${installed ? "" : ` (${NOT_INSTALLED})`}`
      if (!options.watch) {
        return yield* Effect.gen(function*() {
          const found = yield* fetch
          if (Option.isNone(found)) return yield* Effect.fail(fail(missing()))
          return yield* writeOut(options.json ? JSON.stringify(statusJson(found.value)) : renderStatus(found.value))
        }).pipe(printsOnce("status"))
      }
      const tty = process.stdout.isTTY === true
      const draw = Effect.flatMap(fetch, (found) => {
        if (options.json) {
          return writeOut(JSON.stringify(Option.match(found, {
            onNone: () => ({ group: groupId, epoch: null, size: 0, changedAt: null, members: [], waiters: [] }),
            onSome: statusJson
          })))
        }
        const text = Option.match(found, { onNone: missing, onSome: renderStatus })
        return tty
          // Redraw in place: home, clear, the view, a footer.
          ? writeOut(`\x1b[H\x1b[2J${text}\n\n${new Date().toISOString()}  (every second; Ctrl-C to stop)`)
          : writeOut(`${text}\n\n`)
      })
      // A failed read is said on stderr (stdout stays the view: JSON objects only with --json), in
      // the words a single `status` would use, and retried: the view is for watching a group
      // through trouble.
      const guarded = draw.pipe(
        Effect.catchAll((e) =>
          Effect.sync(() => {
            process.stderr.write(`modulo-group: ${knownMessage(e).message}\n`)
          })
        )
      )
      return yield* Effect.repeat(guarded, Schedule.spaced(Duration.seconds(1)))
    })
    yield* body.pipe(Effect.provide(Database.layer(database.url)))
  })

