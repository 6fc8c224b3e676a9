/**
 * G6, a review of the refusal of a fenced body's statements once the body has ended: the refusal
 * checked "the body is running" in one step and sent in a later one, and Effect's scheduler pauses a
 * fiber every 2048 operations wherever it is. A forked fiber paused between the check and the driver's
 * send resumed after the body had ended: its statement went after the fence's `SET CONSTRAINTS ALL
 * IMMEDIATE` (the first commit-time check run, the second not yet queued), and a `COMMIT` there
 * committed the body's write 0.5 s past the lease; nested in an app's transaction, after `fenceEnd`, a
 * `SET CONSTRAINTS ALL IMMEDIATE` plus 0.8 s of work left the app's `COMMIT` unchecked (0.5 s past the
 * lease). Now a statement that passed the check is counted in the same step, and the body's end waits
 * for every counted statement before the fence goes on.
 *
 * Each test scans the number of operations the forked fiber runs before its statement (1500-2300), so
 * that the scheduler's pause lands between the check and the send in one of the attempts (2006 here
 * before the fix; a statement outside the window is refused, or aborts itself, harmlessly).
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture } from "./support.js"

it.live("G6: a forked fiber's statement that passed the check just before the body ended runs before the fence goes on: no COMMIT past the lease", () =>
  Effect.gen(function*() {
    const t = yield* fixture("guard-race")
    const sql = t.sql
    const stamps = `${t.table}_stamps`
    yield* Effect.acquireRelease(
      sql.unsafe(`CREATE TABLE ${stamps} (pad int, lease_until timestamptz, at timestamptz NOT NULL)`),
      () => Effect.orDie(sql.unsafe(`DROP TABLE IF EXISTS ${stamps}`))
    )
    const outcomes: Array<string> = []
    for (let pad = 1500; pad < 2300; pad++) {
      yield* t.setLease(300)
      const d = yield* Deferred.make<void>()
      // One simple-protocol message (no parameters): sleep only when no commit-time check is pending
      // (the window), then stamp and COMMIT.
      const statement = `SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM modulo_group.fence_checks WHERE tx = txid_current())
                                  THEN pg_sleep(0.8)::text ELSE (1 / (random() * 0)::int)::text END;
        INSERT INTO ${stamps} (pad, lease_until, at)
          SELECT ${pad}, lease_expires_at, clock_timestamp() FROM modulo_group.members WHERE member_id = '${t.memberId}';
        COMMIT`
      const forked = Effect.gen(function*() {
        yield* Deferred.succeed(d, undefined)
        for (let i = 0; i < pad; i++) yield* Effect.sync(() => i)
        yield* sql.unsafe(statement)
      })
      let f: Fiber.RuntimeFiber<unknown, unknown> | undefined
      const result = yield* Effect.either(Fenced.fencedWith(
        t.target,
        Effect.gen(function*() {
          yield* t.insert(`fenced-write ${pad}`)
          f = yield* Effect.forkDaemon(forked)
          yield* Deferred.await(d)
        }),
        { timeout: "3 seconds" }
      ))
      yield* Fiber.await(f!)
      const hit = yield* sql.unsafe<{ n: number }>(`SELECT count(*)::int AS n FROM ${stamps} WHERE pad = ${pad}`)
      if (hit[0]!.n > 0) {
        outcomes.push(`pad ${pad}: ${result._tag === "Left" ? result.left._tag : "committed"}`)
        break
      }
    }
    const late = yield* sql.unsafe<{ pad: number; past_ms: number }>(
      `SELECT pad, (extract(epoch FROM at - lease_until) * 1000)::float8 AS past_ms FROM ${stamps}`
    )
    const notes = yield* t.notes
    // G6: nothing of a fenced body commits once the lease has ended on the database clock.
    expect(late.filter((r) => r.past_ms > 0)).toEqual([])
    expect(notes.filter((n) => late.some((r) => n === `fenced-write ${r.pad}`))).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 120_000)

/**
 * The same race, nested in the app's own transaction (`sql.withTransaction` around `fenced`), and
 * without any COMMIT in the body: there is no `fenceDeferredNow`, so the fence's fiber sends `fenceEnd`
 * in the same step in which the body ends, and the preempted forked statement lands right after
 * `fenceEnd`, before the app's `COMMIT`. The statement is the forkedImmediate.pg.test.ts one (a DO
 * block: SET CONSTRAINTS ALL IMMEDIATE, which fencing.md calls harmless in the body, then 0.8 s of
 * work): the commit-time check of both fence_checks rows runs there while the lease is live, and the
 * app's COMMIT 0.8 s later, past the lease, has nothing left to check. fencing.md "Nesting" allows this
 * only for the app's OWN statements after the block; a statement of the body must be refused once the
 * body has ended.
 *
 * Interleaving: app BEGIN; SAVEPOINT; fence steps 1-4 (lease 300 ms); body: insert, forkDaemon(F),
 * Deferred.await; F: Deferred.succeed, pad ops, guard passes, preempted; fence fiber: body ends,
 * fenceEnd queued; F: DO block queued (runs only if both fence_checks rows are pending, i.e. after
 * fenceEnd; otherwise 1/0 aborts the attempt); app: COMMIT (after the DO block) -> commits ~0.5 s past
 * the lease.
 */
it.live("G6 nested: a forked SET CONSTRAINTS ALL IMMEDIATE paused past the check runs before fenceEnd: the app's COMMIT keeps its check", () =>
  Effect.gen(function*() {
    const t = yield* fixture("guard-race-nested")
    const sql = t.sql
    const stamps = `${t.table}_stamps`
    yield* Effect.acquireRelease(
      sql.unsafe(`CREATE TABLE ${stamps} (pad int, lease_until timestamptz, at timestamptz NOT NULL)`),
      () => Effect.orDie(sql.unsafe(`DROP TABLE IF EXISTS ${stamps}`))
    )
    let hitPad: number | undefined
    for (let pad = 1500; pad < 2300 && hitPad === undefined; pad++) {
      yield* t.setLease(300)
      const d = yield* Deferred.make<void>()
      const statement = `DO $$ BEGIN
          IF (SELECT count(*) FROM modulo_group.fence_checks WHERE tx = txid_current()) <> 2 THEN
            PERFORM 1 / (random() * 0)::int;
          END IF;
          SET CONSTRAINTS ALL IMMEDIATE;
          PERFORM pg_sleep(0.8);
          INSERT INTO ${stamps} (pad, lease_until, at)
            SELECT ${pad}, lease_expires_at, clock_timestamp() FROM modulo_group.members WHERE member_id = '${t.memberId}';
        END $$`
      const forked = Effect.gen(function*() {
        yield* Deferred.succeed(d, undefined)
        for (let i = 0; i < pad; i++) yield* Effect.sync(() => i)
        yield* sql.unsafe(statement)
      })
      let f: Fiber.RuntimeFiber<unknown, unknown> | undefined
      yield* Effect.exit(sql.withTransaction(Fenced.fencedWith(
        t.target,
        Effect.gen(function*() {
          yield* t.insert(`fenced-write ${pad}`)
          f = yield* Effect.forkDaemon(forked)
          yield* Deferred.await(d)
        }),
        { timeout: "3 seconds" }
      )))
      yield* Fiber.await(f!)
      const hit = yield* sql.unsafe<{ n: number }>(`SELECT count(*)::int AS n FROM ${stamps} WHERE pad = ${pad}`)
      if (hit[0]!.n > 0) {
        hitPad = pad
      }
    }
    const late = yield* sql.unsafe<{ pad: number; past_ms: number }>(
      `SELECT pad, (extract(epoch FROM at - lease_until) * 1000)::float8 AS past_ms FROM ${stamps}`
    )
    // G6: the block's write commits only if the lease is live at the app's COMMIT.
    expect(late.filter((r) => r.past_ms > 0)).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 120_000)
