/**
 * G6, a review of migration 0018's first form: a slots-mode row's commit-time check read the lease
 * first, then joined every named slot with the session's planner settings, which a fenced body (the
 * app's SQL) may change with `SET LOCAL`: with index scans and hash and merge joins off, the join of
 * 16,384 slots was a nested loop of seconds after the lease read. Nested in an app's transaction (the
 * body also ran `SET CONSTRAINTS ALL IMMEDIATE`, so the block's first row was checked early), the
 * app's COMMIT landed 3.0-5.1 s past the lease; without it (both rows at COMMIT), 1.9-2.3 s. Now the
 * check reads the leases last (test/fenced/slowLaterCheck.pg.test.ts shows that alone) and runs with
 * the planner's scan and join methods on and JIT off, whatever the session set: the COMMIT is as quick
 * as without the settings.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture, slotsGroup, writeObserved } from "./support.js"

const scenario = (slots: number, note: string, leaseMs: number, leftAtCommitMs: number, hostile: boolean, immediate = true) =>
  Effect.gen(function*() {
    const a = yield* fixture("planner-settings-planner") // only for its app table
    const b = yield* slotsGroup(slots, "planner-settings-planner-b")
    const sql = a.sql
    const observed = yield* writeObserved(sql, { memberId: b.memberId, table: a.table, note, leftMs: leftAtCommitMs })
    yield* sql`UPDATE modulo_group.members SET lease_expires_at = clock_timestamp() + ${`${leaseMs} milliseconds`}::interval
                WHERE member_id = ${b.memberId}`
    let commitStarted = 0
    const result = yield* Effect.exit(sql.withTransaction(Effect.gen(function*() {
      yield* Fenced.fencedWith(
        b.target,
        Effect.gen(function*() {
          yield* a.insert(note)
          if (hostile) {
            if (immediate) yield* sql`SET CONSTRAINTS ALL IMMEDIATE`
            yield* sql`SET LOCAL plan_cache_mode = force_custom_plan`
            yield* sql`SET LOCAL enable_indexscan = off`
            yield* sql`SET LOCAL enable_bitmapscan = off`
            yield* sql`SET LOCAL enable_hashjoin = off`
            yield* sql`SET LOCAL enable_mergejoin = off`
          }
        }),
        { timeout: "10 seconds" }
      )
      commitStarted = performance.now()
      yield* observed.beforeCommit
    })))
    const commitMs = performance.now() - commitStarted
    const past = yield* observed.pastLeaseMs
    const [left] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM modulo_group.fence_checks WHERE member_id = ${b.memberId}`
    return {
      ok: Exit.isSuccess(result),
      error: Exit.isFailure(result) ? Cause.pretty(result.cause).slice(0, 300) : undefined,
      written: (yield* a.notes).includes(note),
      committedPastLeaseMs: past,
      commitMs: Math.round(commitMs),
      leftovers: left!.n
    }
  }).pipe(Effect.scoped)

it.live("G6: planner settings set in a nested slots-mode body do not make the COMMIT land past the lease", () =>
  Effect.gen(function*() {
    // Control: same timing, no hostile settings: commits within the lease.
    const control = yield* scenario(16_384, "control", 3_000, 400, false)
    expect(control.error).toBeUndefined()
    expect(control.written).toBe(true)
    expect(control.committedPastLeaseMs ?? -1).toBeLessThan(0)
    const attack = yield* scenario(16_384, "attack", 3_000, 400, true)
    // G6: a fenced write commits only while the lease is live on the database clock.
    if (attack.written) expect(attack.committedPastLeaseMs ?? -1).toBeLessThan(0)
  }).pipe(Effect.provide(PgLive)), 120_000)

/** How long one hostile slots-mode check of `slots` slots takes at COMMIT (a row inserted by hand, fresh plan). */
const oneCheckMs = (slots: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const b = yield* slotsGroup(slots, "planner-settings-calibrate")
    const t0 = performance.now()
    yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`SET LOCAL plan_cache_mode = force_custom_plan`
      yield* sql`SET LOCAL enable_indexscan = off`
      yield* sql`SET LOCAL enable_bitmapscan = off`
      yield* sql`SET LOCAL enable_hashjoin = off`
      yield* sql`SET LOCAL enable_mergejoin = off`
      yield* sql`INSERT INTO modulo_group.fence_checks (member_id, group_id, slots, generations)
                 SELECT ${b.memberId}::uuid, ${b.groupId}, array_agg(s), array_agg(1::int8) FROM generate_series(0, ${slots - 1}::int) s`
    }))
    return performance.now() - t0
  }).pipe(Effect.scoped)

it.live("G6: the same without SET CONSTRAINTS in the body (both of the block's rows checked at COMMIT)", () =>
  Effect.gen(function*() {
    const j = yield* oneCheckMs(16_384)
    // The lease ends after the first row's check, before the second row's join ends: its lease read passes.
    const attack = yield* scenario(16_384, "attack-2", Math.round(1.5 * j) + 3_000, Math.round(1.5 * j), true, false)
    // The lease is timed to end about when the COMMIT runs, so the write may land a little past it:
    // nested in the app's transaction the COMMIT is the app's, and what lies between the check's
    // read of the clock and the commit record is PostgreSQL's own commit path (docs/fencing.md, "The
    // commit-time check"; a clean-clone CI run saw 0.29 ms). What this test catches is the join of
    // the slots after the lease read: 1.9-2.3 s past it.
    if (attack.written) expect(attack.committedPastLeaseMs ?? -1).toBeLessThan(100)
  }).pipe(Effect.provide(PgLive)), 120_000)
