/**
 * G6, a review of f41d2b8/63bb802: the record of the targets fenced in a transaction
 * (`modulo_group.fenced`), from which a fence of its own transaction queues the nested blocks' checks
 * again at its end, was trusted as it stood. A body that reset it after a nested block (`RESET
 * modulo_group.fenced`, `SET LOCAL modulo_group.fenced TO DEFAULT`, `set_config('modulo_group.fenced',
 * '', true)`) left the nested block's write with no check at COMMIT: the outer fence's own SET
 * CONSTRAINTS ALL IMMEDIATE had run B's checks early, and its COMMIT, after a client stall, checked A
 * only (B's write committed past B's lease, and `fenced` reported success). Now the fence's last
 * statement also checks that its own entry (appended at its step 4) is still in the record, and fails
 * (`FenceBroken`) if not: nothing commits.
 *
 * Interleaving: A's lease 60 s, B's 1.5 s (400 ms was too short on a loaded machine: B's block
 * started after it had ended and was refused as stale, so the case was never reached). BEGIN; A's steps 1-4; body: B's block (SAVEPOINT, steps 1-4,
 * B's write, B's end: live), the reset; A's SET CONSTRAINTS ALL IMMEDIATE (B live); A's fenceEnd; the
 * client stalls 2 s before a COMMIT (B's lease ends).
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture, stallingThenReading } from "./support.js"

for (
  const [name, reset] of [
    ["RESET modulo_group.fenced", "RESET modulo_group.fenced"],
    ["SET LOCAL ... TO DEFAULT", "SET LOCAL modulo_group.fenced TO DEFAULT"],
    ["set_config(..., '', true)", "SELECT set_config('modulo_group.fenced', '', true)"]
  ] as const
) {
  it.live(`G6: a nested block's write does not commit past its lease after the body's ${name}`, () =>
    Effect.gen(function*() {
      const a = yield* fixture("record-reset-outer")
      const b = yield* fixture("record-reset-inner")
      const sql = a.sql
      const { client: stalling, leaseAtCommit } = stallingThenReading(sql, "2 seconds", b.memberId)
      yield* b.setLease(1_500)
      const result = yield* Effect.either(
        Fenced.fencedWith(
          a.target,
          Effect.gen(function*() {
            const body = yield* SqlClient.SqlClient
            yield* Fenced.fencedWith(b.target, b.insert("nested"))
            yield* body.unsafe(reset)
            yield* a.insert("outer")
          }),
          { timeout: "3 seconds" }
        ).pipe(Effect.provideService(SqlClient.SqlClient, stalling))
      )
      // A COMMIT, if one was sent, was sent after B's lease had ended on the database clock ...
      expect(leaseAtCommit.filter((ms) => ms >= 0)).toEqual([])
      // ... and nothing of either block commits: the fence is broken.
      expect(Either.isLeft(result) && result.left._tag).toBe("FenceBroken")
      expect(yield* b.notes).toEqual([])
      expect(yield* a.notes).toEqual([])
    }).pipe(Effect.scoped, Effect.provide(PgLive)), 30_000)
}
