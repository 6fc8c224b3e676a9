/**
 * G6, a review of 4d7cd0e ("a slots member's entries are re-queued once and the fence's own target
 * last"): a fence of its own transaction in slots mode still queued its own target as one row per slot,
 * after the re-queued nested targets. At COMMIT a nested block of another group (member B) was checked
 * first, then the outer member's N slot rows, each check scanning every row the transaction inserted:
 * with 3,000 slots, B's write committed 0.9-1.0 s past B's lease, and `fencedWith` reported success.
 * Now a fence of its own transaction queues every recorded target once, a slots-mode one by one of its
 * slots (the lease is what moves; every slot it named stays locked until the transaction ends), its
 * own last.
 *
 * Interleaving: A (slots mode, N slots at generation 1, lease 60 s) fences its own transaction; its body
 * runs B's fenced block (lease 8 s) with B's write; the client stalls before COMMIT until 300 ms of B's
 * lease are left on the database clock; COMMIT. An observer polls B's table: the last poll that did
 * not see the write bounds the commit's time from below.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { commitObserved, fixture, slotsGroup } from "./support.js"

const scenario = (slots: number, note: string) =>
  Effect.gen(function*() {
    const a = yield* slotsGroup(slots, "own-slots-last")
    const b = yield* fixture("own-slots-last-nested")
    const sql = b.sql
    const { client: stalling, pastLeaseMs } = yield* commitObserved(sql, { memberId: b.memberId, table: b.table, note, leftMs: 300 })
    // B's lease: long enough for A's statements (N slots: a few seconds), ending during A's COMMIT.
    yield* b.setLease(8_000)
    const result = yield* Effect.either(
      Fenced.fencedWith(
        a.target,
        Fenced.fencedWith(b.target, b.insert(note), { timeout: "9 seconds" }),
        { timeout: "10 seconds" }
      ).pipe(Effect.provideService(SqlClient.SqlClient, stalling))
    )
    const past = yield* pastLeaseMs
    const written = (yield* b.notes).includes(note)
    return {
      ok: Either.isRight(result),
      error: Either.isLeft(result) ? String(result.left) : undefined,
      written,
      committedPastLeaseMs: past
    }
  }).pipe(Effect.scoped)

it.live("G6: a nested block's write does not commit past its lease behind a slots-mode fence's own slot checks", () =>
  Effect.gen(function*() {
    // The write seen at the observer's first poll (no time recorded) committed before that poll began,
    // 300 ms before B's lease's end.
    const control = yield* scenario(1, "control")
    if (control.written) expect(control.committedPastLeaseMs ?? -1).toBeLessThan(0)
    const big = yield* scenario(3_000, "big")
    // G6: B's write committed only while B's lease was live on the database clock (or not at all).
    if (big.written) expect(big.committedPastLeaseMs ?? -1).toBeLessThan(0)
  }).pipe(Effect.provide(PgLive)), 120_000)
