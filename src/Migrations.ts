/**
 * Applies the schema in `migrations/` under a transaction-scoped advisory lock, so any number of
 * members may start at once. Apps with their own migration tool apply the same `.sql` files.
 *
 * @since 0.1.0
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"
import { SchemaMismatch } from "./MembershipError.js"

/**
 * The migrations this library knows, in order. Each is a file in the package's `migrations/` folder.
 *
 * @since 0.1.0
 * @category constants
 */
export const migrations = [
  { version: 1, name: "0001_init" },
  { version: 2, name: "0002_consistent_views" }
] as const

/**
 * The schema version this library needs.
 *
 * @since 0.1.0
 * @category constants
 */
export const schemaVersion = migrations[migrations.length - 1]!.version

// "modulo" in ASCII: one fixed advisory-lock key for schema changes.
const lockKey = 0x6d6f64756c6f

/**
 * Where the `.sql` files are: `migrations/` at the package root, from `src/` or `dist/src/`.
 *
 * @since 0.1.0
 * @category constants
 */
export const directory = (): string => {
  for (const rel of ["../migrations/", "../../migrations/"]) {
    const dir = fileURLToPath(new URL(rel, import.meta.url))
    if (fs.existsSync(`${dir}0001_init.sql`)) return dir
  }
  throw new Error("modulo-group: cannot find the migrations/ folder next to the package")
}

/**
 * The SQL of one migration, as shipped.
 *
 * @since 0.1.0
 * @category constants
 */
export const sqlOf = (name: string): string => fs.readFileSync(`${directory()}${name}.sql`, "utf8")

/**
 * The installed schema version (0 when none).
 *
 * @since 0.1.0
 * @category queries
 */
export const installedVersion: Effect.Effect<number, SqlError, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  // A scan of pg_tables, not to_regclass(): a backend's catalog cache can miss a table that another
  // transaction created while this one waited on the migration lock.
  const [exists] = yield* sql<{ present: boolean }>`
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables
                    WHERE schemaname = 'modulo_group' AND tablename = 'schema_migrations') AS present`
  if (!exists?.present) return 0
  const [row] = yield* sql<{ version: number | null }>`
    SELECT max(version)::int AS version FROM modulo_group.schema_migrations`
  return row?.version ?? 0
})

/**
 * Applies pending migrations; returns the names it applied (empty when up to date).
 * Fails with `SchemaMismatch` when the database is newer than this library.
 *
 * @since 0.1.0
 * @category operations
 */
export const run: Effect.Effect<ReadonlyArray<string>, SqlError | SchemaMismatch, SqlClient.SqlClient> = Effect.gen(
  function*() {
    const sql = yield* SqlClient.SqlClient
    const current = yield* installedVersion
    if (current === schemaVersion) return []
    return yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`SELECT pg_advisory_xact_lock(${lockKey})`
      // Re-read under the lock: another member may have migrated meanwhile.
      const found = yield* installedVersion
      if (found > schemaVersion) return yield* new SchemaMismatch({ found, expected: schemaVersion })
      const applied: Array<string> = []
      for (const m of migrations) {
        if (m.version <= found) continue
        yield* sql.unsafe(sqlOf(m.name))
        yield* sql`INSERT INTO modulo_group.schema_migrations (version, name) VALUES (${m.version}, ${m.name})
                   ON CONFLICT (version) DO NOTHING`
        applied.push(m.name)
      }
      return applied
    }))
  }
)

/**
 * Fails with `SchemaMismatch` unless the installed schema is exactly the one this library needs.
 *
 * @since 0.1.0
 * @category operations
 */
export const check: Effect.Effect<void, SqlError | SchemaMismatch, SqlClient.SqlClient> = Effect.flatMap(
  installedVersion,
  (found) => (found === schemaVersion ? Effect.void : Effect.fail(new SchemaMismatch({ found, expected: schemaVersion })))
)
