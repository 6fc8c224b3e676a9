/**
 * A migration the server ends to break a deadlock (40P01). Migrations that lock two tables (0007 the
 * groups table, 0009 the members table) met renewals holding one and waiting for the other: an
 * adversarial review of upgrades saw the renewals chosen as victims; had the migration been chosen,
 * the start failed, where a lock wait (55P03) is retried. Here the migration is made the victim: a
 * session holds the log of versions (so the migration, having altered the members table, waits to
 * record its version) and then asks for the members table; the migration's server process, with the
 * shorter `deadlock_timeout`, finds the cycle and ends its own transaction.
 *
 * On a database of its own, migrated and then taken back to version 9 (0010 and 0012 add a column each).
 */
import { expect, it } from "@effect/vitest"
import { Effect, Fiber, Layer } from "effect"
import * as Migrations from "../../src/Migrations.js"
import { ownDatabase, PgLive } from "../support/Database.js"
import { waitFor } from "../support/Wait.js"
import { capturedLogs, connect as connectAs, query, untilWaitingForLock } from "./support.js"

const connect = (url: string) => connectAs(url, "mg-migration-deadlock")

it.live("a migration ended by the server to break a deadlock rolls back and is tried again, saying so", () =>
  Effect.gen(function*() {
    const db = yield* ownDatabase("migdead", { maxConnections: 4, applicationName: "mg-migrator" })
    yield* Migrations.run.pipe(Effect.provide(yield* Layer.build(db.layer)))
    const setup = yield* connect(db.url)
    yield* query(setup, "ALTER TABLE modulo_group.members DROP COLUMN renewal_seq, DROP COLUMN writer")
    yield* query(setup, "DELETE FROM modulo_group.schema_migrations WHERE version >= 10")
    // The migration's server process looks for a deadlock after 300 ms of waiting (before its 1 s
    // lock_timeout); the other session not for 10 s: the migration is the one to find the cycle.
    yield* query(setup, `ALTER DATABASE ${db.name} SET deadlock_timeout = '300ms'`)
    const migrator = yield* Layer.build(db.layer)

    const other = yield* connect(db.url)
    yield* query(other, "SET deadlock_timeout = '10s'")
    yield* query(other, "BEGIN")
    yield* query(other, "LOCK TABLE modulo_group.schema_migrations IN SHARE MODE")

    const { logs, capture } = capturedLogs()
    const migration = yield* Effect.fork(Migrations.run.pipe(Effect.provide(migrator), Effect.provide(capture)))

    // The migration has altered the members table and waits to record its version.
    const watcher = yield* connect(db.url)
    yield* untilWaitingForLock(watcher, "mg-migrator", "the migration waiting to record its version")
    // The other session asks for the members table, which the migration holds: a cycle.
    const read = query(other, "SELECT count(*) FROM modulo_group.members")
    yield* read
    yield* query(other, "COMMIT")

    expect(yield* Fiber.join(migration)).toEqual(["0010_renewal_order", "0011_change_log_retention", "0012_member_writer", "0013_pinned_defaults", "0014_member_lease", "0015_missing_rows", "0016_forget_on_rename", "0017_moves_and_held_cursors", "0018_fence_check_rows", "0019_slot_count_guard"])
    yield* waitFor(() => logs.some((l) => l.includes("to break a deadlock")), "5 seconds", "the warning")
    expect(logs.some((l) => l.includes("migration applied at attempt"))).toBe(true)
  }).pipe(Effect.scoped, Effect.provide(PgLive)), { timeout: 60_000 })
