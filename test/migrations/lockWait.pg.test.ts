/**
 * A migration while members run and a transaction holds a lock on the membership tables (an app's
 * fenced transaction, a `psql` session left open). The migration's DDL waits for an ACCESS EXCLUSIVE
 * lock, and every later statement on the table queues behind it: before, the members' renewals
 * waited as long as that transaction ran (by hand: an UPDATE of a member row waited XX behind
 * `0010_renewal_order` while a session held a row lock FOR KEY SHARE, as fenced transactions take, for 8 s), longer than a lease if it ran
 * long enough. Now a statement of a migration waits at most about a second for a table lock; then the
 * migration rolls back, says whom it waited for, and tries again until the lock is free.
 *
 * On a database of its own, migrated and then taken back to version 9 (0010 adds a column).
 */
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer } from "effect"
import * as Migrations from "../../src/Migrations.js"
import { ownDatabase, PgLive } from "../support/Database.js"
import { waitFor } from "../support/Wait.js"
import { capturedLogs, connect as connectAs, query, untilWaitingForLock } from "./support.js"

const connect = (url: string) => connectAs(url, "mg-migration-lock")

it.live("a migration that cannot get its table lock rolls back and retries: members' statements do not queue behind it", () =>
  Effect.gen(function*() {
    const db = yield* ownDatabase("miglock", { maxConnections: 4, applicationName: "mg-migrator" })
    // One pool for the test (built once: a second \`Effect.provide(db.layer)\` met the first one's ended pool).
    const dbContext = yield* Layer.build(db.layer)
    yield* Migrations.run.pipe(Effect.provide(dbContext))
    const setup = yield* connect(db.url)
    // Back to version 9, with one member row (0010 and 0012 add a column each; 0011 replaces a function).
    yield* query(setup, "ALTER TABLE modulo_group.members DROP COLUMN renewal_seq, DROP COLUMN writer")
    yield* query(setup, "DELETE FROM modulo_group.schema_migrations WHERE version >= 10")
    yield* query(setup, "INSERT INTO modulo_group.groups (group_id, changed_at) VALUES ('g', now())")
    yield* query(
      setup,
      `INSERT INTO modulo_group.members (member_id, group_id, idx, acked_epoch, lease_expires_at, heartbeat_at, joined_at, host, pid, name)
       VALUES (gen_random_uuid(), 'g', 0, 0, now() + interval '1 day', now(), now(), 'h', 1, 'm')`
    )

    // A transaction that holds a lock on the members table until the test ends it.
    const holder = yield* connect(db.url)
    yield* query(holder, "BEGIN")
    yield* query(holder, "SELECT 1 FROM modulo_group.members FOR KEY SHARE")
    const holderPid = (yield* query(holder, "SELECT pg_backend_pid() AS pid")).rows[0].pid as number

    const { logs, capture } = capturedLogs()
    const migration = yield* Effect.fork(Migrations.run.pipe(Effect.provide(dbContext), Effect.provide(capture)))

    // The migration's ALTER waits for its lock.
    const watcher = yield* connect(db.url)
    yield* untilWaitingForLock(watcher, "mg-migrator", "the migration waiting for its table lock")

    // A member's renewal meanwhile: through, while the holder still holds its lock (before: it
    // queued behind the waiting ALTER until the holder ended, here its own 5 s timeout).
    const renewer = yield* connect(db.url)
    yield* query(renewer, "SET statement_timeout = 5000")
    const renewed = yield* Effect.exit(query(renewer, "UPDATE modulo_group.members SET heartbeat_at = now()"))
    expect(Exit.isSuccess(renewed)).toBe(true)

    // Said once whom it waits for; not applied while the lock is held.
    yield* waitFor(() => logs.some((l) => l.includes(`pid ${holderPid}`)), "10 seconds", "the warning naming the holder")
    const warnings = logs.filter((l) => l.includes("waited 1000 ms for a lock on the membership tables"))
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toContain(`pid ${holderPid} (members, in a transaction for `)
    expect(yield* Fiber.poll(migration)).toSatisfy((o: unknown) => (o as { _tag: string })._tag === "None")

    // The holder ends: the migration goes ahead.
    yield* query(holder, "COMMIT")
    expect(yield* Fiber.join(migration)).toEqual(["0010_renewal_order", "0011_change_log_retention", "0012_member_writer", "0013_pinned_defaults", "0014_member_lease", "0015_missing_rows", "0016_forget_on_rename", "0017_moves_and_held_cursors", "0018_fence_check_rows", "0019_slot_count_guard"])
    const column = yield* query(
      setup,
      "SELECT count(*)::int AS n FROM pg_attribute WHERE attrelid = 'modulo_group.members'::regclass AND attname = 'renewal_seq' AND NOT attisdropped"
    )
    expect(column.rows[0].n).toBe(1)
    expect(logs.some((l) => l.includes("migration applied at attempt"))).toBe(true)
  }).pipe(Effect.scoped, Effect.provide(PgLive)), { timeout: 60_000 })
