/**
 * A cursor `WITH HOLD` declared in a fenced body (an adversarial review of the fence's deferred-checks
 * fix). At `COMMIT` PostgreSQL fires the deferred triggers (the fence's commit-time check among them),
 * then runs each holdable cursor's query to the end, then writes the commit record: a query that took
 * long (a function that waited, a large sort) held the `COMMIT` open past the lease, and the body's
 * writes committed after it (0.5 s past the lease, 6 of 6 runs; in slots mode too). `SET CONSTRAINTS`
 * does not touch cursors. Now the fence's last statement counts the holdable cursors declared in its
 * transaction (`pg_cursors`) and refuses (`FenceBroken`, nothing committed); one closed in the body,
 * and a cursor without HOLD, are fine.
 */
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture } from "./support.js"

const outcome = <A, E extends { readonly _tag: string }, R>(e: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.either(e), (r) => (r._tag === "Left" ? r.left._tag : "committed"))

/** A table of stamps and a function that waits 0.9 s, then stamps `clock_timestamp()` into it (both dropped at scope end). */
const lateFunction = (t: Effect.Effect.Success<ReturnType<typeof fixture>>) =>
  Effect.gen(function*() {
    const sql = t.sql
    const stamps = `${t.table}_stamps`
    const fn = `${t.table}_late_fn`
    yield* Effect.acquireRelease(
      Effect.all([
        sql.unsafe(`CREATE TABLE ${stamps} (at timestamptz NOT NULL)`),
        sql.unsafe(`CREATE FUNCTION ${fn}() RETURNS int LANGUAGE plpgsql AS $$
          BEGIN PERFORM pg_sleep(0.9); INSERT INTO ${stamps} (at) VALUES (clock_timestamp()); RETURN 1; END $$`)
      ]),
      () => Effect.orDie(Effect.all([sql.unsafe(`DROP FUNCTION IF EXISTS ${fn}()`), sql.unsafe(`DROP TABLE IF EXISTS ${stamps}`)]))
    )
    return { stamps, fn }
  })

it.live("a cursor WITH HOLD whose query runs past the lease at COMMIT: refused, nothing committed", () =>
  Effect.gen(function*() {
    const t = yield* fixture("fenced-hold-cursor")
    const sql = t.sql
    const { fn, stamps } = yield* lateFunction(t)
    yield* t.setLease(400)
    const result = yield* outcome(Fenced.fencedWith(
      t.target,
      Effect.zipRight(t.insert("fenced-write"), sql.unsafe(`DECLARE late_cursor CURSOR WITH HOLD FOR SELECT ${fn}()`))
    ))
    expect(result).toBe("FenceBroken")
    expect(yield* t.notes).toEqual([])
    expect(yield* sql`SELECT at FROM ${sql(stamps)}`).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive)))

it.live("a cursor WITH HOLD over a large sort: refused as well; closed in the body, or without HOLD: committed", () =>
  Effect.gen(function*() {
    const t = yield* fixture("fenced-hold-cursor-read")
    const sql = t.sql
    const report = `DECLARE report CURSOR WITH HOLD FOR SELECT g, md5(g::text) FROM generate_series(1, 1000) g ORDER BY 2`
    expect(yield* outcome(Fenced.fencedWith(t.target, Effect.zipRight(t.insert("held"), sql.unsafe(report)), { timeout: "5 seconds" })))
      .toBe("FenceBroken")
    expect(
      yield* outcome(Fenced.fencedWith(
        t.target,
        Effect.zipRight(t.insert("closed"), Effect.zipRight(sql.unsafe(report), sql.unsafe(`CLOSE report`)))
      ))
    ).toBe("committed")
    expect(
      yield* outcome(Fenced.fencedWith(
        t.target,
        Effect.zipRight(t.insert("no-hold"), sql.unsafe(`DECLARE plain CURSOR FOR SELECT 1`))
      ))
    ).toBe("committed")
    expect(yield* t.notes).toEqual(["closed", "no-hold"])
  }).pipe(Effect.scoped, Effect.provide(PgLive)))

/*
 * A cursor WITH HOLD declared after the fence's last statement (G6; a review of the fix of
 * test/fenced/holdCursor.pg.test.ts). The holdable-cursor count was taken once, in `fenceEnd`; the COMMIT
 * comes after it on the same connection. A fiber the body forked (an audit write, a report left
 * running: Effect.fork, not joined) shares the transaction's connection (it inherits the
 * TransactionConnection) and its statements queue on it in order: one sent while `fenceEnd` is in
 * flight runs after the count, before the fence's COMMIT. A cursor WITH HOLD declared there runs its
 * query at COMMIT after the commit-time check, as before the fix.
 *
 * Interleaving: lease ends 400 ms from now. Body: a fenced write; Effect.fork(poll fence_checks of this
 * transaction until the first check has run (SET CONSTRAINTS ALL IMMEDIATE deletes its row), then
 * DECLARE ... WITH HOLD FOR SELECT <0.9 s function that stamps clock_timestamp()>). Queue on the
 * connection: SET CONSTRAINTS, poll (0 rows), fenceEnd (held_cursors = 0, lease live), DECLARE, COMMIT
 * (commit-time check passes, then the cursor's query runs 0.9 s, then the commit record).
 * Before the fix (migration 0017 counts them in the commit-time check itself, SQLSTATE MGF03 ->
 * FenceBroken): fencedWith succeeded, the fenced write is committed, and the stamp taken inside the COMMIT
 * is past lease_expires_at.
 */
it.live("G6: a cursor WITH HOLD declared by a fiber the body forked, after the fence's last statement: refused at COMMIT, nothing committed", () =>
  Effect.gen(function*() {
    const t = yield* fixture("hold-after-end")
    const sql = t.sql
    const { fn, stamps } = yield* lateFunction(t)
    yield* t.setLease(400)
    const [lease] = yield* sql<{ until: Date }>`SELECT lease_expires_at AS until FROM modulo_group.members WHERE member_id = ${t.memberId}`
    const late = Effect.gen(function*() {
      for (let i = 0; i < 200; i++) {
        const [r] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM modulo_group.fence_checks WHERE tx = txid_current()`
        if (r!.n === 0) break
      }
      yield* sql.unsafe(`DECLARE late_cursor CURSOR WITH HOLD FOR SELECT ${fn}()`)
    })
    const result = yield* Effect.either(Fenced.fencedWith(
      t.target,
      Effect.zipRight(t.insert("fenced-write"), Effect.fork(Effect.orDie(late)))
    ))
    const [stamp] = yield* sql<{ past_ms: number }>`
      SELECT (extract(epoch FROM at - ${lease!.until}::timestamptz) * 1000)::float8 AS past_ms FROM ${sql(stamps)}`
    const notes = yield* t.notes
    console.log(`outcome ${result._tag === "Left" ? `${result.left._tag} ${String((result.left as any).reason ?? "")}` : "committed"}; notes ${JSON.stringify(notes)}; cursor query at COMMIT ended ${stamp?.past_ms} ms past the lease`)
    // A fenced write commits only while the lease is live.
    if (notes.length > 0) expect(stamp?.past_ms ?? -1).toBeLessThanOrEqual(0)
    // No transaction that committed ran the cursor's query at its COMMIT: refused (the commit-time check,
    // or the fence's last statement when the DECLARE came before it).
    expect({ committed: notes.length > 0, cursorRanAtCommit: stamp !== undefined }).not.toEqual({ committed: true, cursorRanAtCommit: true })
    if (result._tag === "Left") expect(result.left._tag).toBe("FenceBroken")
  }).pipe(Effect.scoped, Effect.provide(PgLive)))
