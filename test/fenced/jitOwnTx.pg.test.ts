/**
 * G6, a review of migration 0018's first form, a fence of its own transaction in slots mode: at COMMIT
 * the fence's own row (one slot) was checked lease first, then the slot's row. The body set (`SET
 * LOCAL`) index scans off and JIT thresholds between the cost of the lease query and that of the slot
 * query's scan: the slot query alone was JIT-compiled, at COMMIT, after the lease read. With the lease
 * ending 30 ms after COMMIT was sent, 8 of 8 writes committed 8-66 ms past it. Now the check reads the
 * lease last and runs with JIT off.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { commitObserved, fixture, slotsGroup } from "./support.js"

const attempt = (note: string, hostile: boolean, leftMs: number) =>
  Effect.gen(function*() {
    const a = yield* fixture("jit-jit") // for its app table
    const b = yield* slotsGroup(16_384, "jit-jit-b")
    const sql = a.sql
    const observed = yield* commitObserved(sql, { memberId: b.memberId, table: a.table, note, leftMs })
    yield* sql`UPDATE modulo_group.members SET lease_expires_at = clock_timestamp() + interval '3 seconds' WHERE member_id = ${b.memberId}`
    const result = yield* Effect.either(
      Fenced.fencedWith({ ...b.target, slots: [{ slot: 5, generation: 1 }] }, Effect.gen(function*() {
        yield* a.insert(note)
        if (hostile) {
          yield* sql`SET LOCAL plan_cache_mode = force_custom_plan`
          yield* sql`SET LOCAL enable_indexscan = off`
          yield* sql`SET LOCAL enable_bitmapscan = off`
          yield* sql`SET LOCAL jit = on`
          yield* sql`SET LOCAL jit_above_cost = 1000`
          yield* sql`SET LOCAL jit_inline_above_cost = 1000`
          yield* sql`SET LOCAL jit_optimize_above_cost = 1000`
        }
      }), { timeout: "5 seconds" }).pipe(Effect.provideService(SqlClient.SqlClient, observed.client))
    )
    const past = yield* observed.pastLeaseMs
    return {
      ok: Either.isRight(result),
      error: Either.isLeft(result) ? String(result.left) : undefined,
      written: (yield* a.notes).includes(note),
      committedPastLeaseMs: past
    }
  }).pipe(Effect.scoped)

it.live("G6: JIT settings of the body do not make an own-transaction slots fence commit past its lease", () =>
  Effect.gen(function*() {
    const control = yield* attempt("control", false, 30)
    const results = []
    for (let i = 0; i < 2; i++) {
      const r = yield* attempt(`attack-${i}`, true, 30)
      results.push(r)
    }
    // fencedWith reports success only for a commit within the lease. (With 30 ms left at COMMIT, the
    // commit path after the check, a WAL flush on a busy machine, can itself end past the lease: the
    // fence then says the transaction committed, FenceBroken; docs/fencing.md.)
    for (const r of [control, ...results]) {
      if (r.ok) expect(r.committedPastLeaseMs ?? -1).toBeLessThan(0)
      else if (r.written) expect(r.error).toMatch(/the transaction COMMITTED/)
    }
  }).pipe(Effect.provide(PgLive)), 120_000)
