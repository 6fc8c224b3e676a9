/**
 * Applies the schema in `migrations/` under a transaction-scoped advisory lock, so any number of
 * members may start at once. Apps with their own migration tool apply the same `.sql` files.
 *
 * @since 0.1.0
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import * as fs from "node:fs"
import * as MigrationsDirectory from "./internal/migrationsDirectory.js"
import { deadlockDetected, lockNotAvailable, sqlState, unavailable } from "./internal/pg/errors.js"
import * as Statements from "./internal/pg/statements.js"
import { readCommitted } from "./internal/pg/transaction.js"
import type { DatabaseUnavailable } from "./MembershipError.js"
import { SchemaMismatch } from "./MembershipError.js"

/** SQLSTATE 42501: the role may not (enable a system trigger: a superuser's only). */
const insufficientPrivilege = "42501"

/**
 * The app's client without its name transforms (`transformResultNames`, `transformQueryNames`): the
 * migrations read catalog rows by their own column names (an adversarial review: under
 * `snakeToCamel` every table read as missing, a false `SchemaMismatch`).
 */
const plainClient: Effect.Effect<SqlClient.SqlClient, never, SqlClient.SqlClient> = Effect.map(
  SqlClient.SqlClient,
  (sql) => sql.withoutTransforms()
)

/** Every database error of a public operation here is `DatabaseUnavailable` (its `cause` is the `SqlError`). */
const orUnavailable = <A, E, R>(effect: Effect.Effect<A, E | SqlError, R>) =>
  Effect.catchTag(effect as Effect.Effect<A, SqlError, R>, "SqlError", (e) => Effect.fail(unavailable(e))) as Effect.Effect<
    A,
    Exclude<E, SqlError> | DatabaseUnavailable,
    R
  >

/**
 * The migrations this library knows, in order. Each is a file in the package's `migrations/` folder.
 *
 * @since 0.1.0
 * @category constants
 */
export const migrations = [
  { version: 1, name: "0001_init" },
  { version: 2, name: "0002_consistent_views" },
  { version: 3, name: "0003_fence_commit_check" },
  { version: 4, name: "0004_change_log" },
  { version: 5, name: "0005_static_membership" },
  { version: 6, name: "0006_instance_waiters" },
  { version: 7, name: "0007_slots" },
  { version: 8, name: "0008_slot_guard" },
  { version: 9, name: "0009_hot_renewals" },
  { version: 10, name: "0010_renewal_order" },
  { version: 11, name: "0011_change_log_retention" },
  { version: 12, name: "0012_member_writer" },
  { version: 13, name: "0013_pinned_defaults" },
  { version: 14, name: "0014_member_lease" },
  { version: 15, name: "0015_missing_rows" },
  { version: 16, name: "0016_forget_on_rename" },
  { version: 17, name: "0017_moves_and_held_cursors" },
  { version: 18, name: "0018_fence_check_rows" },
  { version: 19, name: "0019_slot_count_guard" }
] as const

/**
 * The tables and columns each migration must leave behind, checked against `pg_catalog` by `check`
 * and `run` (even when the recorded version is current) and restored by `repair`. A migration that
 * adds a table or a column adds an entry here with its version, e.g.
 * `{ version: 3, table: "fence_checks", columns: ["group_id", ...] }`.
 *
 * @since 0.1.0
 * @category constants
 */
export const requiredObjects: ReadonlyArray<{
  readonly version: number
  readonly table: string
  readonly columns: ReadonlyArray<string>
  /**
   * Triggers on the table that must exist and be enabled (`tgenabled` origin or always): the
   * commit-time fence check and the guards that G2 and G6 rest on. A trigger disabled by hand
   * (`ALTER TABLE ... DISABLE TRIGGER`) let fenced writes commit without their commit-time check, and
   * nothing said so (a review); `migrate` re-creates them.
   */
  readonly triggers?: ReadonlyArray<string>
  /**
   * Whether those triggers must fire in every session (`ENABLE ALWAYS`), also under
   * `session_replication_role = replica` (a restore, a superuser's session, logical replication's
   * apply), where a trigger at plain `ENABLE` does not: the guards of hand edits and restores. A
   * review left the start accepting one set back to plain `ENABLE` by its owner; `migrate` re-creates
   * it `ALWAYS`.
   */
  readonly always?: boolean
}> = [
  { version: 1, table: "schema_migrations", columns: ["version", "name", "applied_at"] },
  { version: 1, table: "groups", columns: ["group_id", "epoch", "size", "changed_at"] },
  {
    version: 1,
    table: "members",
    columns: [
      "member_id",
      "group_id",
      "idx",
      "acked_epoch",
      "lease_expires_at",
      "heartbeat_at",
      "joined_at",
      "join_seq",
      "host",
      "pid",
      "name"
    ]
  },
  { version: 2, table: "groups", columns: ["incarnation"] },
  { version: 2, table: "members", columns: ["assigned_epoch", "assigned_size", "stopping_since"] },
  { version: 3, table: "fence_checks", columns: ["member_id", "group_id", "epoch", "idx", "tx"] },
  {
    version: 4,
    table: "change_log",
    columns: ["id", "group_id", "epoch", "size", "incarnation", "changed_at", "cause", "subject", "assignment"]
  },
  { version: 5, table: "members", columns: ["instance_id", "released_at", "rejoin_grace_ms"] },
  {
    version: 6,
    table: "instance_waiters",
    columns: ["member_id", "group_id", "instance_id", "host", "pid", "name", "since", "seen_at", "lease_ms"]
  },
  { version: 7, table: "groups", columns: ["slots"] },
  { version: 7, table: "slots", columns: ["group_id", "slot", "owner", "holder", "generation", "changed_at"] },
  { version: 3, table: "fence_checks", columns: [], triggers: ["fence_check_at_commit", "fence_check_defer"] },
  { version: 7, table: "fence_checks", columns: ["slot", "generation"] },
  { version: 8, table: "slots", columns: [], triggers: ["slot_token_guard"] },
  { version: 10, table: "members", columns: ["renewal_seq"] },
  { version: 12, table: "members", columns: ["writer"] },
  { version: 14, table: "members", columns: ["lease_ms"] },
  { version: 15, table: "groups", columns: ["lease_ms", "missing_since", "missing_wait_ms", "missing_indices"] },
  { version: 15, table: "members", columns: [], triggers: ["forget_missing_insert", "forget_missing_index"], always: true },
  { version: 16, table: "members", columns: [], triggers: ["forget_missing_member"], always: true },
  { version: 18, table: "fence_checks", columns: ["slots", "generations", "id"] },
  { version: 19, table: "groups", columns: [], triggers: ["slot_count_guard"], always: true }
]

/**
 * The schema version this library needs.
 *
 * @since 0.1.0
 * @category constants
 */
export const schemaVersion = migrations[migrations.length - 1]!.version

/** `directory`'s answer, once found. */
let foundDirectory: string | undefined = undefined

/**
 * Where the `.sql` files are: `migrations/` at the package root, from `src/` or `dist/src/`; or, for
 * the command's bundle (cli/dist/modulo-group.cjs, which inlines this module), the copy it ships
 * beside itself, from the same build (cli/bundle.mjs). Only a folder whose `0001_init.sql` is the
 * library's and that holds every migration of this build (not an app's own `migrations/`, nor a copy
 * of an older release's, where an app bundles the library).
 *
 * @since 0.1.0
 * @category constants
 */
export const directory = (): string => {
  // Found once per process: `sqlOf` asks for every migration it reads, and each look opens
  // 0001_init.sql and checks every file of each candidate folder.
  if (foundDirectory !== undefined) return foundDirectory
  const dir = MigrationsDirectory.find(import.meta.url, migrations.map((m) => m.name))
  if (dir === undefined) {
    throw new Error(
      `modulo-group: cannot find the library's migrations (0001_init.sql .. ${migrations[migrations.length - 1]!.name}.sql, ` +
        `the first line of 0001_init.sql "-- modulo-group schema") in any of ${
          MigrationsDirectory.candidates(import.meta.url).join(", ")
        }`
    )
  }
  foundDirectory = dir
  return dir
}

/**
 * The SQL of one migration, as shipped.
 *
 * @since 0.1.0
 * @category constants
 */
export const sqlOf = (name: string): string => fs.readFileSync(`${directory()}${name}.sql`, "utf8")

/**
 * The recorded schema version is there but tables or columns it needs are not (dropped by hand, a
 * restore of part of the schema, ...). A `SchemaMismatch` (same tag, so every handler of a schema
 * problem sees it) whose message names what is missing; `modulo-group migrate` repairs it.
 *
 * @since 0.1.0
 * @category errors
 */
export class SchemaIncomplete extends SchemaMismatch {
  /** What is missing, e.g. `table modulo_group.members`, `column modulo_group.groups.incarnation`. */
  declare readonly missing: ReadonlyArray<string>
  /** What the repair needs that it could not do itself (e.g. a superuser), said instead of "run migrate". */
  declare readonly needs: string | undefined
  constructor(args: { readonly found: number; readonly expected: number; readonly missing: ReadonlyArray<string>; readonly needs?: string }) {
    super(args)
  }
  override get message() {
    return `The modulo_group schema (version ${this.found}) is damaged: missing ${
      this.missing.join(", ")
    }: ${this.needs ?? "run `modulo-group migrate` to repair it"}`
  }
}

/** How an enabled trigger appears among its table's columns in `readPresent` (no column has a space). */
const triggerEntry = (name: string) => `trigger ${name}`

/** How a trigger enabled `ALWAYS` appears among its table's columns too. */
const alwaysEntry = (name: string) => `always ${name}`

/** How a constraint whose internal trigger is disabled appears among its table's columns. */
const disabledConstraintPrefix = "disabled constraint "

/** How `missingFrom` names such a constraint; `repair` enables the triggers when one is named. */
const disabledCheck = "the check of constraint "

// The schema's tables and their columns, from one scan of `pg_catalog` (`Statements.selectSchemaColumns`),
// the enabled triggers among the columns as `triggerEntry`.
type Present = ReadonlyMap<string, ReadonlySet<string>>
const readPresent: Effect.Effect<Present, SqlError, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* plainClient
  const rows = yield* Statements.selectSchemaColumns(sql)
  const present = new Map<string, Set<string>>()
  for (const r of rows) {
    const columns = present.get(r.table_name) ?? new Set<string>()
    if (r.column_name !== null) columns.add(r.column_name)
    if (r.trigger_name !== null) columns.add(triggerEntry(r.trigger_name))
    if (r.trigger_name !== null && r.trigger_always) columns.add(alwaysEntry(r.trigger_name))
    if (r.disabled_constraint !== null) columns.add(`${disabledConstraintPrefix}${r.disabled_constraint}`)
    present.set(r.table_name, columns)
  }
  return present
})

// What `present` lacks of the objects that migrations up to `version` create.
const missingFrom = (present: Present, version: number): ReadonlyArray<string> => {
  const missing: Array<string> = []
  for (const o of requiredObjects) {
    if (o.version > version) continue
    const columns = present.get(o.table)
    if (columns === undefined) {
      const entry = `table modulo_group.${o.table}`
      if (!missing.includes(entry)) missing.push(entry)
      continue
    }
    for (const c of o.columns) if (!columns.has(c)) missing.push(`column modulo_group.${o.table}.${c}`)
    for (const t of o.triggers ?? []) {
      if (!columns.has(triggerEntry(t))) missing.push(`trigger ${t} on modulo_group.${o.table} (dropped or disabled)`)
      else if (o.always === true && !columns.has(alwaysEntry(t))) {
        missing.push(`trigger ${t} on modulo_group.${o.table} (enabled for ordinary sessions only, not ALWAYS)`)
      }
    }
  }
  // Constraints whose triggers are disabled, once per table of the installed version.
  for (const table of new Set(requiredObjects.filter((o) => o.version <= version).map((o) => o.table))) {
    for (const entry of present.get(table) ?? []) {
      if (entry.startsWith(disabledConstraintPrefix)) {
        missing.push(`${disabledCheck}${entry.slice(disabledConstraintPrefix.length)} on modulo_group.${table} (its trigger disabled)`)
      }
    }
  }
  return missing
}

const readMissingObjects = (version: number): Effect.Effect<ReadonlyArray<string>, SqlError, SqlClient.SqlClient> =>
  Effect.map(readPresent, (present) => missingFrom(present, version))

// The installed version (0 without the migrations table) and what it lacks, in two statements: the
// catalog scan, which also says whether the migrations table exists, then its version (a scan of
// pg_tables for the table first, then the version, then the catalog scan took three; every start
// checks this).
const readSchema: Effect.Effect<{ readonly version: number; readonly missing: ReadonlyArray<string> }, SqlError, SqlClient.SqlClient> =
  Effect.gen(function*() {
    const sql = yield* plainClient
    const present = yield* readPresent
    if (!present.has("schema_migrations")) return { version: 0, missing: [] }
    const [row] = yield* Statements.selectInstalledVersion(sql)
    const version = row?.version ?? 0
    return { version, missing: missingFrom(present, version) }
  })

/**
 * The installed schema version (0 when none).
 *
 * @since 0.1.0
 * @category queries
 */
export const installedVersion: Effect.Effect<number, DatabaseUnavailable, SqlClient.SqlClient> = orUnavailable(
  Effect.map(readSchema, (schema) => schema.version)
)

/**
 * What the schema lacks of the objects that migrations up to `version` create (empty when
 * complete): `table modulo_group.<t>` or `column modulo_group.<t>.<c>`. One scan of `pg_catalog`,
 * which every role can read (`information_schema` hides tables a role has no privilege on).
 *
 * @since 0.1.0
 * @category queries
 */
export const missingObjects = (
  version: number = schemaVersion
): Effect.Effect<ReadonlyArray<string>, DatabaseUnavailable, SqlClient.SqlClient> =>
  orUnavailable(readMissingObjects(version))

/**
 * What `repair` did: the migrations it applied (each at most once, in order) and what was missing
 * before (non-empty when it re-applied every migration to restore a damaged schema).
 *
 * @since 0.1.0
 * @category models
 */
export interface Repaired {
  readonly applied: ReadonlyArray<string>
  readonly missing: ReadonlyArray<string>
}

/**
 * How long a statement of a migration may wait for a table lock (after the migration lock itself,
 * which it waits for as long as it takes). A migration's DDL waits for an ACCESS EXCLUSIVE lock, and
 * every later statement on the table queues behind it: without a bound, the members' renewals waited
 * as long as the oldest transaction on the table ran (an app's fenced transaction, a `psql` session
 * left open), longer than a lease. Past the bound the migration rolls back and tries again after
 * `lockRetryMs` (jittered by half), holding nothing meanwhile.
 */
const lockWaitMs = 1_000
const lockRetryMs = 1_000

// Whom a migration that did not get its table lock waited for, for the warning.
const lockHolders = (sql: SqlClient.SqlClient) =>
  Statements.selectSchemaLockHolders(sql).pipe(
    Effect.map((rows) =>
      rows.length === 0
        ? "another transaction (gone by now)"
        : rows.map((r) =>
          `pid ${r.pid} (${r.tables}${r.xact_ms === null ? "" : `, in a transaction for ${(Number(r.xact_ms) / 1000).toFixed(1)} s`})`
        ).join(", ")
    ),
    Effect.orElseSucceed(() => "another transaction")
  )

// `migrateLocked`, again after a backoff for as long as a table lock it needs is busy (`lockWaitMs`),
// or the server chose it as a deadlock's victim (40P01: a migration that locks two tables, 0007 then
// 0009, met renewals that held one and waited for the other; an adversarial review of upgrades, where
// the start failed). A warning the first time and every 30th, naming the oldest holders; nothing is
// left half-applied.
const migrateLockedPatiently = (repair: boolean): Effect.Effect<Repaired, SqlError | SchemaMismatch, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* plainClient
    for (let attempt = 1;; attempt++) {
      const result = yield* Effect.either(migrateLocked(repair))
      if (result._tag === "Right") {
        if (attempt > 1) yield* Effect.logInfo(`modulo-group: migration applied at attempt ${attempt}, the table lock it needed free`)
        return result.right
      }
      const state = sqlState(result.left)
      if (state !== lockNotAvailable && state !== deadlockDetected) return yield* Effect.fail(result.left)
      if (attempt === 1 || attempt % 30 === 0) {
        const why = state === deadlockDetected
          ? `a migration was ended by the server to break a deadlock on the membership tables (with ` +
            `${yield* lockHolders(sql)})`
          : `a migration waited ${lockWaitMs} ms for a lock on the membership tables, held by ${yield* lockHolders(sql)}`
        yield* Effect.logWarning(
          `modulo-group: ${why}; rolled back (attempt ${attempt}) and trying again about every ` +
            `${lockRetryMs} ms, so that members' statements do not queue behind it. It goes ahead once that ` +
            `transaction ends.`
        )
      }
      yield* Effect.sleep(yield* Random.nextIntBetween(lockRetryMs / 2, (lockRetryMs * 3) / 2))
    }
  })

// Under the migration lock: applies what is pending (or, with `repair`, everything when objects are
// missing), then checks that the schema is complete. One transaction: all of it or nothing (a failed
// COMMIT is an error, not a defect: see internal/pg/transaction.ts).
const migrateLocked = (repair: boolean): Effect.Effect<Repaired, SqlError | SchemaMismatch, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* plainClient
    return yield* readCommitted(sql, Effect.gen(function*() {
      yield* Statements.lockMigrations(sql)
      // From here on, no statement waits for a table lock for long (`lockWaitMs`).
      yield* Statements.boundMigrationLockWaits(sql, lockWaitMs)
      // Re-read under the lock: another member may have migrated meanwhile.
      const { missing, version: found } = yield* readSchema
      if (found > schemaVersion) return yield* new SchemaMismatch({ found, expected: schemaVersion })
      if (missing.length > 0 && !repair) return yield* new SchemaIncomplete({ found, expected: schemaVersion, missing })
      const from = missing.length > 0 ? 0 : found
      const applied: Array<string> = []
      for (const m of migrations) {
        if (m.version <= from) continue
        yield* Statements.applyMigration(sql, sqlOf(m.name))
        yield* Statements.recordMigration(sql, m.version, m.name)
        applied.push(m.name)
      }
      // Constraints' triggers disabled by hand (`DISABLE TRIGGER ALL`): no migration re-creates them
      // (a review: the repair said it repaired, and duplicate indices committed after it).
      // Only a superuser may enable them (as only one could disable them): any other role is told so
      // (a review: the owner's repair failed as "Database unavailable: permission denied").
      if (missing.some((m) => m.startsWith(disabledCheck))) {
        yield* Statements.enableConstraintTriggers(sql).pipe(
          Effect.catchIf((e) => sqlState(e) === insufficientPrivilege, () =>
            Effect.fail(
              new SchemaIncomplete({
                found,
                expected: schemaVersion,
                missing,
                needs: "enabling a constraint's trigger needs a superuser: run `modulo-group migrate` as one, or have one run " +
                  "`ALTER TABLE modulo_group.<table> ENABLE TRIGGER ALL` on the tables named, then `modulo-group migrate`"
              })
            ))
        )
      }
      const left = applied.length === 0 ? missing : yield* readMissingObjects(schemaVersion)
      if (left.length > 0) return yield* new SchemaIncomplete({ found: schemaVersion, expected: schemaVersion, missing: left })
      return { applied, missing }
    }))
  })

/**
 * Applies pending migrations; returns the names it applied (empty when up to date).
 * Fails with `SchemaMismatch` when the database is newer than this library, and with
 * `SchemaIncomplete` (a `SchemaMismatch`) when tables or columns of the installed version are
 * missing: it does not recreate them (run `repair`, i.e. `modulo-group migrate`).
 *
 * @since 0.1.0
 * @category operations
 */
export const run: Effect.Effect<ReadonlyArray<string>, DatabaseUnavailable | SchemaMismatch, SqlClient.SqlClient> =
  orUnavailable(Effect.gen(function*() {
    const current = yield* readSchema
    // The common case, without the lock: current and complete. Anything else is decided under it.
    if (current.version === schemaVersion && current.missing.length === 0) return []
    return (yield* migrateLockedPatiently(false)).applied
  }))

/**
 * Like `run`, and repairs a damaged schema: when tables or columns of the installed version are
 * missing, re-applies every migration in order (they are idempotent) under the same lock.
 *
 * @since 0.1.0
 * @category operations
 */
export const repair: Effect.Effect<Repaired, DatabaseUnavailable | SchemaMismatch, SqlClient.SqlClient> = orUnavailable(
  Effect.gen(function*() {
    const current = yield* readSchema
    if (current.version === schemaVersion && current.missing.length === 0) return { applied: [], missing: [] }
    return yield* migrateLockedPatiently(true)
  })
)

/**
 * Fails with `SchemaMismatch` unless the installed schema is exactly the one this library needs,
 * and with `SchemaIncomplete` when it is but tables or columns are missing.
 *
 * @since 0.1.0
 * @category operations
 */
export const check: Effect.Effect<void, DatabaseUnavailable | SchemaMismatch, SqlClient.SqlClient> = orUnavailable(
  Effect.gen(function*() {
    const { missing, version: found } = yield* readSchema
    if (found !== schemaVersion) return yield* new SchemaMismatch({ found, expected: schemaVersion })
    if (missing.length > 0) return yield* new SchemaIncomplete({ found, expected: schemaVersion, missing })
  })
)
