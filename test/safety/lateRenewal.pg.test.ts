/**
 * G6, a review of cbfaea8: a renewal that waited for its member's row past the end of the lease
 * revived the ended lease. The renewal's check was `lease_expires_at > statement time`, and its
 * statement began before the lease's end; PostgreSQL evaluated it before the wait (and again after it
 * only when the row's holder had updated the row and committed, still against the statement's time).
 * In slots mode a change holds a member row without waiting for the member's fenced transactions (they
 * take no group lock), so: a fenced COMMIT that passed its commit-time check before the lease's end
 * and landed after it (its tail: ON COMMIT DROP of temp tables, notifications) found, when `fencedWith`
 * read the lease again after the slow COMMIT (`Statements.leasesAfterCommit`), the lease live again,
 * and reported success for a write that became visible 0.4-1.5 s after the lease had ended (the review:
 * 11 runs of 11). A renewal now locks its row first and compares the lease with the clock after it has
 * the lock (`Statements.renewLease`): a lease that ended while the renewal waited stays ended.
 *
 * Here, at the statement: a member of lease 1.5 s; a session holds its row (FOR NO KEY UPDATE, as a
 * change's `reassignIndices` does); the member's renewal is sent 100 ms before the lease's end, waits
 * for the row, and the holder lets go 100 ms after it (rolled back: PostgreSQL re-evaluates nothing;
 * or after updating the row and committing: it re-evaluates the WHERE on the new row).
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Layer, Option, Redacted } from "effect"
import { randomUUID } from "node:crypto"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, randomGroupId, rawSession } from "../support/Database.js"

const leaseMs = 1_500

const attempt = (release: "rollback" | "update and commit") =>
  Effect.gen(function*() {
    const ctx = yield* Layer.build(
      Notifier.layer.pipe(
        Layer.provideMerge(PgClient.layer({ url: Redacted.make(databaseUrl()), applicationName: "late-renewal", maxConnections: 4 }))
      )
    )
    const sql = yield* SqlClient.SqlClient.pipe(Effect.provide(ctx))
    const store = yield* PgMembershipStore.make({ statementTimeout: Duration.seconds(2) }).pipe(Effect.provide(ctx))
    const groupId = randomGroupId("late-renewal")
    const memberId = randomUUID()
    yield* Effect.addFinalizer(() => Effect.ignore(sql`DELETE FROM modulo_group.groups WHERE group_id = ${groupId}`))
    const view = yield* store.join(groupId, { memberId, name: "a", host: "h", pid: 1 }, leaseMs)
    const leftMs = Effect.map(
      sql<{ left: number }>`SELECT (extract(epoch FROM lease_expires_at - clock_timestamp()) * 1000)::float8 AS left
                              FROM modulo_group.members WHERE member_id = ${memberId}::uuid`,
      (rows) => rows[0]!.left
    )
    // The holder: a session of its own, holding the member's row as a change would.
    const holder = yield* rawSession()
    yield* Effect.promise(() => holder.query("BEGIN"))
    yield* Effect.promise(() =>
      release === "rollback"
        ? holder.query("SELECT 1 FROM modulo_group.members WHERE member_id = $1 FOR NO KEY UPDATE", [memberId])
        : holder.query("UPDATE modulo_group.members SET heartbeat_at = heartbeat_at WHERE member_id = $1", [memberId])
    )
    yield* Effect.sleep(Duration.millis(Math.max(0, (yield* leftMs) - 100)))
    const renewal = yield* Effect.fork(store.heartbeat(groupId, memberId, view.epoch, leaseMs))
    yield* Effect.sleep(Duration.millis(Math.max(0, (yield* leftMs) + 100)))
    const leftBeforeRelease = yield* leftMs
    yield* Effect.promise(() => holder.query(release === "rollback" ? "ROLLBACK" : "COMMIT"))
    const reply = yield* Fiber.join(renewal)
    return { leftBeforeRelease, renewed: Option.isSome(reply), leftAfter: yield* leftMs }
  }).pipe(Effect.scoped)

for (const release of ["rollback", "update and commit"] as const) {
  it.live(`G6: a renewal sent before the lease's end that waits for its row past it does not revive the lease (holder: ${release})`, () =>
    Effect.gen(function*() {
      const r = yield* attempt(release)
      // The lease had ended while the renewal waited (else the attempt proves nothing).
      expect(r.leftBeforeRelease).toBeLessThan(0)
      expect(r.renewed).toBe(false)
      expect(r.leftAfter).toBeLessThan(0)
    }), 30_000)
}
