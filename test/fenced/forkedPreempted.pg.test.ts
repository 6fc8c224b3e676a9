/**
 * G6, a review of the refusal of a fenced body's statements once the body has ended: the refusal
 * checked "the body is running" in one step and sent in a later one, and Effect's scheduler pauses a
 * fiber every 2048 operations wherever it is. A forked fiber paused between the check and the driver's
 * send resumed after the body had ended: its statement went after the fence's `SET CONSTRAINTS ALL
 * IMMEDIATE` (the first commit-time check run, the second not yet queued), and a `COMMIT` there
 * committed the body's write 0.5 s past the lease; nested in an app's transaction, after `fenceEnd`, a
 * `SET CONSTRAINTS ALL IMMEDIATE` plus 0.8 s of work left the app's `COMMIT` unchecked (0.5 s past the
 * lease). Now a statement that passed the check holds the body's one turn until it has landed, and the
 * body's end waits for the turn before the fence goes on.
 *
 * The pause is made certain, not scanned for: the client (`holdingMarked`) holds the forked fiber's
 * statement just below every check, where the scheduler's pause would have caught it, and the body
 * ends as soon as it is held. Held, it goes to the driver right after the next statement on the
 * connection (the fence going on without it), or after 1 s when nothing else is sent (the fence
 * waiting for it). Taking out the body end's wait (`close` in internal/pg/noCancel.ts) fails both.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture, holdingMarked } from "./support.js"

const marker = "/* forked, past the check */"

it.live("G6: a forked fiber's statement that passed the check just before the body ended runs before the fence goes on: no COMMIT past the lease", () =>
  Effect.gen(function*() {
    const t = yield* fixture("guard-race")
    const sql = t.sql
    const stamps = `${t.table}_stamps`
    yield* Effect.acquireRelease(
      sql.unsafe(`CREATE TABLE ${stamps} (lease_until timestamptz, at timestamptz NOT NULL)`),
      () => Effect.orDie(sql.unsafe(`DROP TABLE IF EXISTS ${stamps}`))
    )
    const held = yield* holdingMarked(sql, marker)
    yield* t.setLease(300)
    // One simple-protocol message (no parameters): sleep only when no commit-time check of this
    // transaction is pending (after the fence's first check ran), then stamp and COMMIT; otherwise abort.
    const statement = `${marker} SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM modulo_group.fence_checks WHERE tx = txid_current())
                                  THEN pg_sleep(0.8)::text ELSE (1 / (random() * 0)::int)::text END;
        INSERT INTO ${stamps} (lease_until, at)
          SELECT lease_expires_at, clock_timestamp() FROM modulo_group.members WHERE member_id = '${t.memberId}';
        COMMIT`
    let forked: Fiber.RuntimeFiber<unknown, unknown> | undefined
    yield* Effect.either(Fenced.fencedWith(
      t.target,
      Effect.gen(function*() {
        yield* t.insert("fenced-write")
        forked = yield* Effect.forkDaemon(sql.unsafe(statement))
        // The forked statement passed the check and is about to be sent: the body ends now.
        yield* held.reached
      }),
      { timeout: "3 seconds" }
    ).pipe(Effect.provideService(SqlClient.SqlClient, held.client)))
    yield* Fiber.await(forked!)
    // The window was hit: the statement was sent, not refused.
    expect(held.sent).toContain(marker)
    const late = yield* sql.unsafe<{ past_ms: number }>(
      `SELECT (extract(epoch FROM at - lease_until) * 1000)::float8 AS past_ms FROM ${stamps}`
    )
    // G6: nothing of a fenced body commits once the lease has ended on the database clock.
    expect(late).toEqual([])
    expect(yield* t.notes).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 30_000)

/**
 * The same race, nested in the app's own transaction (as `sql.withTransaction` around `fenced` makes it), and
 * without any COMMIT in the body: there is no `fenceDeferredNow`, so the fence's fiber sends `fenceEnd`
 * in the same step in which the body ends, and the held forked statement lands right after
 * `fenceEnd`, before the app's `COMMIT`. The statement is the forkedImmediate.pg.test.ts one (a DO
 * block: SET CONSTRAINTS ALL IMMEDIATE, which fencing.md calls harmless in the body, then 0.8 s of
 * work): the commit-time check of both fence_checks rows runs there while the lease is live, and the
 * app's COMMIT 0.8 s later, past the lease, has nothing left to check. fencing.md "Nesting" allows this
 * only for the app's OWN statements after the block; a statement of the body must be refused once the
 * body has ended, or land before the fence goes on.
 */
it.live("G6 nested: a forked SET CONSTRAINTS ALL IMMEDIATE paused past the check runs before fenceEnd: the app's COMMIT keeps its check", () =>
  Effect.gen(function*() {
    const t = yield* fixture("guard-race-nested")
    const sql = t.sql
    const stamps = `${t.table}_stamps`
    yield* Effect.acquireRelease(
      sql.unsafe(`CREATE TABLE ${stamps} (lease_until timestamptz, at timestamptz NOT NULL)`),
      () => Effect.orDie(sql.unsafe(`DROP TABLE IF EXISTS ${stamps}`))
    )
    const held = yield* holdingMarked(sql, marker)
    yield* t.setLease(300)
    // Runs only if both fence_checks rows are pending (after fenceEnd); otherwise it aborts.
    const statement = `${marker} DO $$ BEGIN
          IF (SELECT count(*) FROM modulo_group.fence_checks WHERE tx = txid_current()) <> 2 THEN
            PERFORM 1 / (random() * 0)::int;
          END IF;
          SET CONSTRAINTS ALL IMMEDIATE;
          PERFORM pg_sleep(0.8);
          INSERT INTO ${stamps} (lease_until, at)
            SELECT lease_expires_at, clock_timestamp() FROM modulo_group.members WHERE member_id = '${t.memberId}';
        END $$`
    let forked: Fiber.RuntimeFiber<unknown, unknown> | undefined
    // The app's transaction, as `sql.withTransaction` makes it (BEGIN; the block; COMMIT if it
    // succeeded, else ROLLBACK), on a connection of the holding client.
    yield* Effect.scoped(Effect.gen(function*() {
      const conn = yield* held.client.reserve
      yield* conn.executeUnprepared("BEGIN", [], undefined)
      const exit = yield* Effect.exit(Fenced.fencedWith(
        t.target,
        Effect.gen(function*() {
          yield* t.insert("fenced-write")
          forked = yield* Effect.forkDaemon(sql.unsafe(statement))
          yield* held.reached
        }),
        { timeout: "3 seconds" }
      ).pipe(Effect.provideService(SqlClient.TransactionConnection, [conn, 0] as const)))
      yield* Effect.exit(conn.executeUnprepared(exit._tag === "Success" ? "COMMIT" : "ROLLBACK", [], undefined))
    }))
    yield* Fiber.await(forked!)
    expect(held.sent).toContain(marker)
    const late = yield* sql.unsafe<{ past_ms: number }>(
      `SELECT (extract(epoch FROM at - lease_until) * 1000)::float8 AS past_ms FROM ${stamps}`
    )
    // G6: the block's write commits only if the lease is live at the app's COMMIT.
    expect(late).toEqual([])
    expect(yield* t.notes).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 30_000)
