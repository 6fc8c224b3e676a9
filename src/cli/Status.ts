/**
 * `modulo-group status`, `groups` and `migrate`: read-only views of the store, and the schema.
 *
 * @since 0.1.0
 * @internal
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Cause, Duration, Effect, Exit, Option, Schedule } from "effect"
import * as MembershipConfig from "../MembershipConfig.js"
import type { DatabaseUnavailable, SchemaMismatch } from "../MembershipError.js"
import type { GroupRow, MemberRow } from "../MembershipStore.js"
import * as Migrations from "../Migrations.js"
import { Exit as CliExit, fail } from "./CliError.js"
import * as Database from "./Database.js"
import { formatMillis } from "./Durations.js"

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
  "memberId" | "name" | "host" | "pid" | "index" | "ackedEpoch" | "joinedAt" | "heartbeatAgeMs" | "leaseLeftMs"
>

/**
 * A member's state as `status` derives it from its row.
 *
 * @since 0.1.0
 * @internal
 */
export type RowState = "expired" | "renegotiating" | "assigned" | "awaiting"

/**
 * Lease gone: `expired` (the next heartbeat of anyone reaps it). Epoch not acknowledged yet:
 * `renegotiating` (stopping its old work). Everyone acknowledged: `assigned`. Else `awaiting`
 * (acknowledged, waiting at the barrier for the others).
 *
 * @since 0.1.0
 * @internal
 */
export const deriveStates = (group: StatusGroup, members: ReadonlyArray<StatusMember>): ReadonlyArray<RowState> => {
  const allAcked = members.every((m) => m.ackedEpoch >= group.epoch)
  return members.map((m) =>
    m.leaseLeftMs <= 0
      ? "expired"
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

const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")
  return [line(header), ...rows.map(line)].join("\n")
}

/**
 * @since 0.1.0
 * @internal
 */
export const renderStatus = (s: GroupStatus): string => {
  const head = `group ${s.group.groupId}: epoch ${s.group.epoch}, size ${s.group.size} (changed ${s.group.changedAt.toISOString()})`
  if (s.members.length === 0) return `${head}\nno members`
  return `${head}\n${
    table(
      ["INDEX", "NAME", "HOST", "PID", "ACKED", "HEARTBEAT", "LEASE LEFT", "STATE"],
      s.members.map((m) => [
        m.index === null ? "-" : String(m.index),
        m.name,
        m.host,
        String(m.pid),
        String(m.ackedEpoch),
        `${formatMillis(m.heartbeatAgeMs)} ago`,
        m.leaseLeftMs <= 0 ? `expired ${formatMillis(-m.leaseLeftMs)} ago` : formatMillis(m.leaseLeftMs),
        m.state
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
    joinedAt: m.joinedAt.toISOString()
  }))
})

/**
 * @since 0.1.0
 * @internal
 */
export const renderGroups = (groups: ReadonlyArray<StatusGroup>): string =>
  groups.length === 0
    ? "no groups"
    : table(
      ["GROUP", "EPOCH", "SIZE", "CHANGED"],
      groups.map((g) => [g.groupId, String(g.epoch), String(g.size), g.changedAt.toISOString()])
    )

const READ_TIMEOUT = Duration.seconds(5)

/** Every read of `status` and `groups` is bounded: a view of a stuck database says so. */
const bounded = <A, E, R>(what: string, effect: Effect.Effect<A, E, R>) =>
  Effect.timeoutFail(effect, {
    duration: READ_TIMEOUT,
    onTimeout: () => fail(`reading ${what} timed out after ${Duration.format(READ_TIMEOUT)}`)
  })

/**
 * Whether the schema can be read: `false` when it is not installed (nobody has joined yet); fails
 * with `SchemaMismatch` when it is another version or damaged (a table or column missing).
 */
const schemaReady: Effect.Effect<boolean, SchemaMismatch | DatabaseUnavailable, SqlClient.SqlClient> = Effect.gen(function*() {
  const found = yield* Migrations.installedVersion
  if (found === 0) return false
  yield* Migrations.check
  return true
})

const num = (v: unknown): number => (typeof v === "number" ? v : Number(v))

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
    }>`
      SELECT g.group_id, g.epoch, g.size, g.changed_at,
             m.member_id, m.name, m.host, m.pid, m.idx, m.acked_epoch, m.joined_at,
             (extract(epoch FROM statement_timestamp() - m.heartbeat_at) * 1000)::bigint AS heartbeat_age_ms,
             (extract(epoch FROM m.lease_expires_at - statement_timestamp()) * 1000)::bigint AS lease_left_ms
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
        leaseLeftMs: num(r.lease_left_ms)
      })
    }
    const states = deriveStates(group, members)
    return Option.some({ group, members: members.map((m, i) => ({ ...m, state: states[i]! })) })
  })

/**
 * Every group row, in one statement.
 *
 * @since 0.1.0
 * @internal
 */
export const allGroups: Effect.Effect<ReadonlyArray<StatusGroup>, SqlError, SqlClient.SqlClient> = Effect.gen(
  function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ group_id: string; epoch: string; size: number; changed_at: Date }>`
      SELECT group_id, epoch, size, changed_at FROM modulo_group.groups ORDER BY group_id`
    return rows.map((r) => ({ groupId: r.group_id, epoch: num(r.epoch), size: num(r.size), changedAt: r.changed_at }))
  }
)

const NOT_INSTALLED = "the modulo_group schema is not installed yet (any `join`, or `modulo-group migrate`, installs it)"

const writeOut = (text: string) =>
  Effect.sync(() => {
    process.stdout.write(text.endsWith("\n") ? text : `${text}\n`)
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

/**
 * @since 0.1.0
 * @internal
 */
export const groups = (options: { readonly json: boolean; readonly databaseUrl: Option.Option<string> }) =>
  Effect.gen(function*() {
    const database = yield* Database.resolve(options.databaseUrl)
    yield* Effect.gen(function*() {
      const installed = yield* bounded("the schema", schemaReady)
      const rows = installed ? yield* bounded("the groups", allGroups) : []
      if (options.json) {
        return yield* writeOut(
          JSON.stringify(rows.map((g) => ({ group: g.groupId, epoch: g.epoch, size: g.size, changedAt: g.changedAt.toISOString() })))
        )
      }
      yield* writeOut(installed ? renderGroups(rows) : `no groups: ${NOT_INSTALLED}`)
    }).pipe(Effect.provide(Database.layer(database.url)))
  })

const stderr = (line: string) =>
  Effect.sync(() => {
    process.stderr.write(`${line}\n`)
  })

/**
 * `migrate`: applies pending migrations and repairs a damaged schema (missing tables or columns:
 * every migration is re-applied, in order, under the migration lock), in one transaction.
 *
 * It exits 0 only once the schema is in place: a failure exits 1 with its message, and so does
 * SIGINT/SIGTERM before the transaction committed (it is rolled back), so `migrate && deploy`
 * never deploys onto a missing schema.
 *
 * @since 0.1.0
 * @internal
 */
export const migrate = (options: { readonly databaseUrl: Option.Option<string> }) =>
  Effect.uninterruptibleMask((restore) =>
    Effect.gen(function*() {
      let inPlace = false
      const exit = yield* Effect.exit(restore(Effect.gen(function*() {
        const database = yield* Database.resolve(options.databaseUrl)
        const where = Database.redact(database.url)
        const done = yield* Migrations.repair.pipe(Effect.provide(Database.layer(database.url)))
        inPlace = true
        const version = `now at version ${Migrations.schemaVersion}`
        yield* writeOut(
          done.missing.length > 0
            ? `${where}: repaired the damaged schema (it lacked ${done.missing.join(", ")}): re-applied ${
              done.applied.join(", ")
            }; ${version}`
            : done.applied.length > 0
            ? `${where}: applied ${done.applied.join(", ")}; ${version}`
            : `${where}: already at version ${Migrations.schemaVersion}, nothing to do`
        )
      })))
      if (Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause) && !inPlace) {
        // Interrupted (Ctrl-C, SIGTERM) before the schema was in place: that is a failure here.
        yield* stderr(
          "modulo-group: migrate was interrupted before the schema was in place (nothing was applied); run `modulo-group migrate` again"
        )
        // A defect, not a failure: an interrupted fiber's exit keeps defects but drops failures.
        return yield* Effect.die(new CliExit({ code: 1 }))
      }
      return yield* exit
    })
  )
