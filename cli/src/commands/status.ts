/**
 * `modulo-group status <group>`: one group and its members, read-only, as of one committed state.
 *
 * @since 0.1.0
 * @internal
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Duration, Effect, Option, Schedule } from "effect"
import { MembershipConfig, type MembershipStore } from "modulo-group"
import { fail } from "../CliError.js"
import * as Database from "../Database.js"
import { formatMillis } from "../Durations.js"
import { bounded, NOT_INSTALLED, num, schemaReady, table, writeOut } from "./shared.js"

type GroupRow = MembershipStore.GroupRow
type MemberRow = MembershipStore.MemberRow

/**
 * The group columns `status` shows.
 *
 * @since 0.1.0
 * @internal
 */
export type StatusGroup = Pick<GroupRow, "groupId" | "epoch" | "size" | "changedAt">

/**
 * The member columns `status` shows.
 *
 * @since 0.1.0
 * @internal
 */
export type StatusMember = Pick<
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
  const allAcked = members.every((m) => m.ackedEpoch >= group.epoch)
  return members.map((m) =>
    m.leaseLeftMs <= 0 && m.instanceId != null && (m.graceLeftMs ?? 0) > 0
      ? (m.releasedAt != null ? "released" : "held")
      : m.leaseLeftMs <= 0
      ? "expired"
      : m.index === null
      ? "waiting"
      : m.ackedEpoch < group.epoch
      ? "renegotiating"
      : allAcked
      ? "assigned"
      : "awaiting"
  )
}

/**
 * @since 0.1.0
 * @internal
 */
export interface GroupStatus {
  readonly group: StatusGroup
  readonly members: ReadonlyArray<StatusMember & { readonly state: RowState }>
}

/**
 * @since 0.1.0
 * @internal
 */
export const renderStatus = (s: GroupStatus): string => {
  const head = `group ${s.group.groupId}: epoch ${s.group.epoch}, size ${s.group.size} (changed ${s.group.changedAt.toISOString()})`
  if (s.members.length === 0) return `${head}\nno members`
  // The INSTANCE column only for groups with static members: other groups look as they always did.
  const statics = s.members.some((m) => m.instanceId != null)
  const stateText = (m: GroupStatus["members"][number]) =>
    m.state === "released" || m.state === "held"
      ? `${m.state}: index held ${formatMillis(m.graceLeftMs ?? 0)} more`
      : m.state
  return `${head}\n${
    table(
      ["INDEX", "NAME", ...(statics ? ["INSTANCE"] : []), "HOST", "PID", "ACKED", "HEARTBEAT", "LEASE LEFT", "STATE"],
      s.members.map((m) => [
        m.index === null ? "-" : String(m.index),
        m.name,
        ...(statics ? [m.instanceId ?? "-"] : []),
        m.host,
        String(m.pid),
        String(m.ackedEpoch),
        `${formatMillis(m.heartbeatAgeMs)} ago`,
        m.leaseLeftMs <= 0 ? `expired ${formatMillis(-m.leaseLeftMs)} ago` : formatMillis(m.leaseLeftMs),
        stateText(m)
      ])
    )
  }`
}

/**
 * @since 0.1.0
 * @internal
 */
export const statusJson = (s: GroupStatus) => ({
  group: s.group.groupId,
  epoch: s.group.epoch,
  size: s.group.size,
  changedAt: s.group.changedAt.toISOString(),
  members: s.members.map((m) => ({
    index: m.index,
    name: m.name,
    host: m.host,
    pid: m.pid,
    ackedEpoch: m.ackedEpoch,
    heartbeatAgeMs: m.heartbeatAgeMs,
    leaseLeftMs: m.leaseLeftMs,
    state: m.state,
    memberId: m.memberId,
    joinedAt: m.joinedAt.toISOString(),
    instanceId: m.instanceId ?? null,
    releasedAt: m.releasedAt == null ? null : m.releasedAt.toISOString(),
    graceLeftMs: m.graceLeftMs ?? null
  }))
})

/**
 * One group and its members as of one committed state: a single statement (the group row LEFT
 * JOIN its member rows), so the header and the rows can never come from two states, whatever
 * changes commit meanwhile. Lease ages are on the database clock. `None` when the group has no row.
 *
 * @since 0.1.0
 * @internal
 */
export const snapshot = (
  groupId: string
): Effect.Effect<Option.Option<GroupStatus>, SqlError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{
      group_id: string
      epoch: string
      size: number
      changed_at: Date
      member_id: string | null
      name: string | null
      host: string | null
      pid: number | null
      idx: number | null
      acked_epoch: string | null
      joined_at: Date | null
      heartbeat_age_ms: string | null
      lease_left_ms: string | null
      instance_id: string | null
      released_at: Date | null
      grace_left_ms: string | null
    }>`
      SELECT g.group_id, g.epoch, g.size, g.changed_at,
             m.member_id, m.name, m.host, m.pid, m.idx, m.acked_epoch, m.joined_at,
             (extract(epoch FROM statement_timestamp() - m.heartbeat_at) * 1000)::bigint AS heartbeat_age_ms,
             (extract(epoch FROM m.lease_expires_at - statement_timestamp()) * 1000)::bigint AS lease_left_ms,
             m.instance_id, m.released_at,
             CASE WHEN m.instance_id IS NOT NULL
                  THEN (extract(epoch FROM m.lease_expires_at + m.rejoin_grace_ms * interval '1 millisecond'
                                           - statement_timestamp()) * 1000)::bigint END AS grace_left_ms
        FROM modulo_group.groups g
        LEFT JOIN modulo_group.members m ON m.group_id = g.group_id
       WHERE g.group_id = ${groupId}
       ORDER BY m.idx NULLS LAST, m.join_seq`
    const first = rows[0]
    if (first === undefined) return Option.none()
    const group: StatusGroup = {
      groupId: first.group_id,
      epoch: num(first.epoch),
      size: num(first.size),
      changedAt: first.changed_at
    }
    const members: Array<StatusMember> = []
    for (const r of rows) {
      if (r.member_id === null) continue
      members.push({
        memberId: r.member_id,
        name: r.name ?? "",
        host: r.host ?? "",
        pid: r.pid ?? 0,
        index: r.idx,
        ackedEpoch: num(r.acked_epoch),
        joinedAt: r.joined_at!,
        heartbeatAgeMs: num(r.heartbeat_age_ms),
        leaseLeftMs: num(r.lease_left_ms),
        instanceId: r.instance_id,
        releasedAt: r.released_at,
        graceLeftMs: r.grace_left_ms === null ? null : num(r.grace_left_ms)
      })
    }
    const states = deriveStates(group, members)
    return Option.some({ group, members: members.map((m, i) => ({ ...m, state: states[i]! })) })
  })

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
        const found = yield* fetch
        if (Option.isNone(found)) return yield* Effect.fail(fail(missing()))
        return yield* writeOut(options.json ? JSON.stringify(statusJson(found.value)) : renderStatus(found.value))
      }
      const tty = process.stdout.isTTY === true
      const draw = Effect.flatMap(fetch, (found) => {
        if (options.json) {
          return writeOut(JSON.stringify(Option.match(found, {
            onNone: () => ({ group: groupId, epoch: null, size: 0, changedAt: null, members: [] }),
            onSome: statusJson
          })))
        }
        const text = Option.match(found, { onNone: missing, onSome: renderStatus })
        return tty
          // Redraw in place: home, clear, the view, a footer.
          ? writeOut(`\x1b[H\x1b[2J${text}\n\n${new Date().toISOString()}  (every second; Ctrl-C to stop)`)
          : writeOut(`${text}\n\n`)
      })
      // A failed read is shown and retried: the view is for watching a group through trouble.
      const guarded = draw.pipe(
        Effect.catchAll((e) => writeOut(`modulo-group: ${(e as { message?: string }).message ?? String(e)}`))
      )
      return yield* Effect.repeat(guarded, Schedule.spaced(Duration.seconds(1)))
    })
    yield* body.pipe(Effect.provide(Database.layer(database.url)))
  })

