/**
 * G6 (an adversarial review): a fiber the body forked sent `SET CONSTRAINTS ALL IMMEDIATE` after the
 * fence's last statement and before its `COMMIT` (queued on the transaction's connection behind
 * `fenceEnd`): PostgreSQL ran the pending commit-time check there, while the lease was live, and the
 * same statement then waited past the lease; the `COMMIT`, with no check left, committed 0.5 s past
 * it. Now the body's connection refuses statements once the body has ended (`statementsWhileRunning`):
 * the fiber's statements are not sent, and the fence commits as it checked.
 *
 * Interleaving (as holdCursor.pg.test.ts "forked"): lease ends 400 ms from now; the body writes and
 * forks: poll fence_checks of this transaction until the first check ran, then one statement: SET
 * CONSTRAINTS ALL IMMEDIATE, pg_sleep(0.9), a stamp of clock_timestamp().
 */
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture } from "../fenced/support.js"

it.live("G6: a forked fiber's SET CONSTRAINTS ... IMMEDIATE after the body ended is refused: the COMMIT keeps its check", () =>
  Effect.gen(function*() {
    const t = yield* fixture("forked-immediate")
    const sql = t.sql
    const stamps = `${t.table}_stamps`
    yield* Effect.acquireRelease(
      sql.unsafe(`CREATE TABLE ${stamps} (what text, at timestamptz NOT NULL)`),
      () => Effect.orDie(sql.unsafe(`DROP TABLE IF EXISTS ${stamps}`))
    )
    yield* t.setLease(400)
    const [lease] = yield* sql<{ until: Date }>`SELECT lease_expires_at AS until FROM modulo_group.members WHERE member_id = ${t.memberId}`
    const late = Effect.gen(function*() {
      for (let i = 0; i < 500; i++) {
        const [r] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM modulo_group.fence_checks WHERE tx = txid_current()`
        if (r!.n === 0) break
      }
      yield* sql.unsafe(`DO $$ BEGIN
          SET CONSTRAINTS ALL IMMEDIATE; -- an app checking its own deferred constraints early
          PERFORM pg_sleep(0.9);
          INSERT INTO ${stamps} (what, at) VALUES ('before COMMIT', clock_timestamp());
        END $$`)
    })
    const result = yield* Effect.either(Fenced.fencedWith(
      t.target,
      Effect.zipRight(t.insert("fenced-write"), Effect.fork(Effect.orDie(late))),
      { timeout: "3 seconds" }
    ))
    const [stamp] = yield* sql<{ past_ms: number }>`
      SELECT (extract(epoch FROM at - ${lease!.until}::timestamptz) * 1000)::float8 AS past_ms FROM ${sql(stamps)}`
    const notes = yield* t.notes
    // A fenced write commits only while the lease is live at COMMIT.
    if (notes.includes("fenced-write") && stamp !== undefined) expect(stamp.past_ms).toBeLessThanOrEqual(0)
    // The forked statement was refused (never sent); the fence committed.
    expect(stamp).toBeUndefined()
    expect(result._tag).toBe("Right")
  }).pipe(Effect.scoped, Effect.provide(PgLive)))
