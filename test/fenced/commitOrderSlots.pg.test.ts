/**
 * G6, a review of f41d2b8/63bb802: the targets recorded in `modulo_group.fenced` were queued again by
 * the outer fence's last statement AFTER its own target, one row per recorded slot, and PostgreSQL
 * runs the deferred `fence_check_at_commit` events at COMMIT one by one in the order queued. Each
 * runs `DELETE FROM fence_checks WHERE tx = NEW.tx`, an index scan over every row the transaction ever
 * inserted: a COMMIT costs O(rows²). A fenced block of member A whose body ran a nested slots-mode
 * block of a member B holding 3,000 slots: at COMMIT A's own target was checked first, then B's 3,000
 * re-queued slots, about a second: A's write committed 0.7-1.4 s past A's lease. Now a slots-mode
 * member's recorded entries are queued again once (its lease is what moves; its slot rows stay
 * locked), and the fence's own target last.
 *
 * Interleaving: A's lease ends `leaseMs` after the start; the client stalls before COMMIT until 500 ms
 * of A's lease are left, on the database clock; COMMIT; meanwhile another connection polls
 * `statement_timestamp()` and whether A's write is visible: the last poll that did not see it bounds
 * the commit's time from below.
 *
 * The same order at an app transaction's COMMIT that holds A's block and then B's 3,000-slot block
 * (each block's own rows, A's first; A's write committed 1.3-1.5 s past A's lease on schema 17) is
 * test/fenced/appTxSlotsOrder.pg.test.ts (migration 0018).
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { commitObserved, fixture, slotsGroup } from "./support.js"


/**
 * Runs A's fenced write with a nested slots-mode block of `slots` slots of B; the client stalls
 * before COMMIT until 500 ms of A's lease are left. Returns whether `fencedWith` succeeded, whether A's
 * write is there, and by how many ms the write's commit followed the end of A's lease (the latest
 * poll that still did not see it began that long after the lease's end; negative: before it).
 */
const scenario = (slots: number, note: string) =>
  Effect.gen(function*() {
    const a = yield* fixture("commit-order-outer")
    const b = yield* slotsGroup(slots, "commit-order-slots")
    const sql = a.sql
    const { client: stalling, pastLeaseMs } = yield* commitObserved(sql, { memberId: a.memberId, table: a.table, note, leftMs: 500 })
    // A's lease: long enough for the fence's statements (B's 3,000 slots: about 2 s), ending before
    // the COMMIT is over.
    yield* a.setLease(6_000)
    const result = yield* Effect.either(
      Fenced.fencedWith(
        a.target,
        Effect.zipRight(Fenced.fencedWith(b.target, Effect.void, { timeout: "10 seconds" }), a.insert(note)),
        { timeout: "10 seconds" }
      ).pipe(Effect.provideService(SqlClient.SqlClient, stalling))
    )
    const past = yield* pastLeaseMs
    const written = (yield* a.notes).includes(note)
    return {
      ok: Either.isRight(result),
      error: Either.isLeft(result) ? String(result.left) : undefined,
      written,
      committedPastLeaseMs: past
    }
  }).pipe(Effect.scoped)

it.live("G6: a fence's write does not commit after its lease ended behind the re-queued checks of a nested slots block", () =>
  Effect.gen(function*() {
    // A write seen at the observer's first poll (no time recorded) committed before that poll began,
    // 500 ms before A's lease's end.
    // Control: one slot nested. The COMMIT ends within A's lease (or fails).
    const control = yield* scenario(1, "control")
    if (control.written) expect(control.committedPastLeaseMs ?? -1).toBeLessThan(0)
    const nested = yield* scenario(3_000, "nested")
    // G6: A's write committed only while A's lease was live on the database clock (or not at all), and
    // fenced reports success only for such a write.
    if (nested.written || nested.ok) expect(nested.committedPastLeaseMs ?? -1).toBeLessThan(0)
  }).pipe(Effect.provide(PgLive)), 120_000)
