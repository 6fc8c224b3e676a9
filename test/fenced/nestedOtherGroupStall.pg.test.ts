/**
 * G6 (an adversarial review): a fenced block of group B nested in a fenced body of group A (a helper
 * that fences a write to a second group, test/fenced/fencedInFenced.pg.test.ts) committed after B's
 * lease had ended. The outer fence runs `SET CONSTRAINTS ALL IMMEDIATE` itself after its body
 * (`fenceDeferredNow`): that fired B's two queued checks there and then, and at COMMIT only A's second
 * check was left. A client stalled before COMMIT (a GC pause, a blocked event loop) committed B's write
 * ~400 ms past B's lease, and `fenced` reported success. Now the outer fence queues the checks of every
 * block nested in its body that ended well again at its end (`Statements.fenceEnd`), after its own
 * `SET CONSTRAINTS ALL IMMEDIATE`.
 *
 * Interleaving: A's lease 60 s, B's 400 ms. BEGIN; A's steps 1-4; body: SAVEPOINT, B's steps 1-4, B's
 * write, B's fenceEnd (B live); A's SET CONSTRAINTS ALL IMMEDIATE (B's checks and A's first run now:
 * all live); A's fenceEnd; the client stalls 700 ms (B's lease ends); just before COMMIT is sent,
 * another connection reads B's lease: expired; COMMIT.
 *
 * Control (last part): the same block nested in a plain app transaction, with the app waiting 700 ms
 * before its COMMIT, fails at COMMIT (MGF01), as fencing.md "Nesting" says.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture, stallingThenReading } from "./support.js"


it.live("G6: a fenced block nested in another group's fenced body does not commit after its lease ended (client stall before COMMIT)", () =>
  Effect.gen(function*() {
    const a = yield* fixture("nest-outer")
    const b = yield* fixture("nest-inner")
    const sql = a.sql

    // B's block nested in a fenced block of group A; the client stalls 700 ms before
    // COMMIT, and B's lease is read on another connection just before COMMIT is sent.
    const { client: stalling, leaseAtCommit } = stallingThenReading(sql, "700 millis", b.memberId)
    yield* b.setLease(400)
    const result = yield* Effect.either(
      Fenced.fencedWith(
        a.target,
        Effect.zipRight(Fenced.fencedWith(b.target, b.insert("in fenced body")), a.insert("outer")),
        { timeout: "3 seconds" }
      ).pipe(Effect.provideService(SqlClient.SqlClient, stalling))
    )
    // The COMMIT was sent after B's lease had ended on the database clock...
    expect(leaseAtCommit.length).toBe(1)
    expect(leaseAtCommit[0]!).toBeLessThan(0)
    const nestedNotes = yield* b.notes

    // Control, as documented for the same block nested in a plain app transaction that waits 700 ms
    // before its COMMIT: the app's COMMIT fails (MGF01, a defect from withTransaction), nothing committed.
    yield* b.setLease(400)
    const control = yield* Effect.exit(
      sql.withTransaction(Effect.zipRight(Fenced.fencedWith(b.target, b.insert("in app transaction")), Effect.sleep("700 millis")))
    )
    expect(control._tag).toBe("Failure")
    expect((yield* b.notes).filter((n) => n === "in app transaction")).toEqual([])

    // ... so, G6/G3: nothing of B's block commits, and fenced does not report success.
    expect(nestedNotes).toEqual([])
    expect(Either.isLeft(result)).toBe(true)
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 30_000)
