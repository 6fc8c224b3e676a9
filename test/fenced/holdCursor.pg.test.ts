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

it.live("a cursor WITH HOLD whose query runs past the lease at COMMIT: refused, nothing committed", () =>
  Effect.gen(function*() {
    const t = yield* fixture("fenced-hold-cursor")
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
