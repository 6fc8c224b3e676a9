/**
 * `modulo-group status`, `groups` and `migrate`: read-only views of the store, and the schema.
 *
 * @since 0.1.0
 * @internal
 */
import { SqlClient } from "@effect/sql"
import type { PgClient } from "@effect/sql-pg"
import { Duration, Effect, Option, Schedule } from "effect"
import * as MembershipConfig from "../MembershipConfig.js"
import { SchemaMismatch } from "../MembershipError.js"
import type { GroupRow, MemberRow, MembershipStoreService } from "../MembershipStore.js"
import * as Migrations from "../Migrations.js"
import * as PgMembershipStore from "../PgMembershipStore.js"
import { fail } from "./CliError.js"
import * as Database from "./Database.js"
import { formatMillis } from "./Durations.js"

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
export const deriveStates = (group: GroupRow, members: ReadonlyArray<MemberRow>): ReadonlyArray<RowState> => {
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
  readonly group: GroupRow
  readonly members: ReadonlyArray<MemberRow & { readonly state: RowState }>
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
export const renderGroups = (groups: ReadonlyArray<GroupRow>): string =>
  groups.length === 0
    ? "no groups"
    : table(
      ["GROUP", "EPOCH", "SIZE", "CHANGED"],
      groups.map((g) => [g.groupId, String(g.epoch), String(g.size), g.changedAt.toISOString()])
    )

const READ_TIMEOUT = Duration.seconds(5)

/** The store for reading, or `None` when the schema is not installed (nobody has joined yet). */
const readStore: Effect.Effect<
  Option.Option<MembershipStoreService>,
  SchemaMismatch | import("@effect/sql").SqlError.SqlError,
  SqlClient.SqlClient | PgClient.PgClient
> = Effect.gen(function*() {
  const found = yield* Migrations.installedVersion
  if (found === 0) return Option.none()
  if (found !== Migrations.schemaVersion) {
    return yield* new SchemaMismatch({ found, expected: Migrations.schemaVersion })
  }
  return Option.some(yield* PgMembershipStore.make({ statementTimeout: READ_TIMEOUT }))
})

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
      const store = yield* readStore
      const fetch = Option.match(store, {
        onNone: () => Effect.succeed(Option.none<GroupStatus>()),
        onSome: (s) =>
          Effect.gen(function*() {
            const group = yield* s.group(groupId)
            if (Option.isNone(group)) return Option.none<GroupStatus>()
            const members = yield* s.members(groupId)
            const states = deriveStates(group.value, members)
            return Option.some({ group: group.value, members: members.map((m, i) => ({ ...m, state: states[i]! })) })
          })
      })
      const missing = `group ${JSON.stringify(groupId)} not found: no member has joined it${
        Option.isNone(store) ? ` (${NOT_INSTALLED})` : ""
      }`
      if (!options.watch) {
        const found = yield* fetch
        if (Option.isNone(found)) return yield* Effect.fail(fail(missing))
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
        const text = Option.match(found, { onNone: () => missing, onSome: renderStatus })
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
      const store = yield* readStore
      const rows = Option.isNone(store) ? [] : yield* store.value.groups
      if (options.json) {
        return yield* writeOut(
          JSON.stringify(rows.map((g) => ({ group: g.groupId, epoch: g.epoch, size: g.size, changedAt: g.changedAt.toISOString() })))
        )
      }
      yield* writeOut(Option.isNone(store) ? `no groups: ${NOT_INSTALLED}` : renderGroups(rows))
    }).pipe(Effect.provide(Database.layer(database.url)))
  })

/**
 * @since 0.1.0
 * @internal
 */
export const migrate = (options: { readonly databaseUrl: Option.Option<string> }) =>
  Effect.gen(function*() {
    const database = yield* Database.resolve(options.databaseUrl)
    const where = Database.redact(database.url)
    yield* Effect.gen(function*() {
      const applied = yield* Migrations.run
      yield* writeOut(
        applied.length === 0
          ? `${where}: already at version ${Migrations.schemaVersion}, nothing to do`
          : `${where}: applied ${applied.join(", ")}; now at version ${Migrations.schemaVersion}`
      )
    }).pipe(Effect.provide(Database.layer(database.url)))
  })
