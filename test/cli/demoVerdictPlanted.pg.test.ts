/**
 * The demo's verdict (`modulo-group demo`: each item processed once, no epoch's work overlapping the
 * previous one's; cli/src/demo/ledger.ts `readVerdict`) against aggregates planted in a schema of the
 * reading session's search path (pg_catalog implicitly first). An adversarial review: `count(p.item_id)`
 * is pg_catalog's `count("any")` and `lag(last) OVER ...` its `lag(anyelement)`, so a planted
 * `count(integer)` and `lag(timestamptz)` were exact matches and won: duplicates, missing items and
 * overlaps vanished from the verdict. Every function of the demo's statements is named in pg_catalog now.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import * as Ledger from "../../cli/src/demo/ledger.js"
import { clientWithOptions, PgLive } from "../support/Database.js"

it.live("the demo's verdict reports duplicates, missing items and epoch overlaps under a planted count(integer) / lag(timestamptz)", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const schema = `planted_${randomBytes(4).toString("hex")}`
    yield* Effect.acquireRelease(
      sql.unsafe(`CREATE SCHEMA ${schema}`),
      () => sql.unsafe(`DROP SCHEMA ${schema} CASCADE`).pipe(Effect.ignore)
    )
    yield* sql.unsafe(`
      CREATE TABLE ${schema}.planted_ran (what text NOT NULL);
      CREATE FUNCTION ${schema}.count_one(s bigint, v integer) RETURNS bigint LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO ${schema}.planted_ran VALUES ('count(integer)'); RETURN 1; END $$;
      CREATE AGGREGATE ${schema}.count(integer) (SFUNC = ${schema}.count_one, STYPE = bigint, INITCOND = '0');
      CREATE FUNCTION ${schema}.lag_none(s timestamptz, v timestamptz) RETURNS timestamptz LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO ${schema}.planted_ran VALUES ('lag(timestamptz)'); RETURN NULL; END $$;
      CREATE AGGREGATE ${schema}.lag(timestamptz) (SFUNC = ${schema}.lag_none, STYPE = timestamptz);`)

    // A run of 4 items, as a demo whose members went wrong left it: item 1 processed twice (by two
    // members), item 2 never, epoch 2's work starting before epoch 1's ended.
    const run = `planted-${randomBytes(4).toString("hex")}`
    yield* Ledger.createSchema
    yield* Ledger.createRun(run, 4)
    yield* Effect.addFinalizer(() => Ledger.deleteRun(run).pipe(Effect.ignore))
    yield* sql`
      INSERT INTO modulo_group_demo.processed (run_id, item_id, epoch, idx, size, member, at) VALUES
        (${run}, 1, 1, 0, 2, 'a', now() - interval '10 seconds'),
        (${run}, 3, 1, 0, 2, 'a', now() - interval '5 seconds'),
        (${run}, 1, 2, 1, 2, 'b', now() - interval '8 seconds'),
        (${run}, 4, 2, 1, 2, 'b', now() - interval '7 seconds')`

    const honest = yield* Ledger.readVerdict(run)
    const hijacked = yield* Ledger.readVerdict(run).pipe(
      Effect.provide(clientWithOptions(`-c search_path=${schema}`, "planted-demo-verdict", { maxConnections: 1 }))
    )
    const ran = yield* sql.unsafe<{ what: string }>(`SELECT DISTINCT what FROM ${schema}.planted_ran ORDER BY what`)
    const summary = (v: typeof honest) => ({
      duplicates: v.duplicates,
      missing: v.missing,
      once: v.once,
      overlaps: v.epochs.filter((e) => e.overlapsPrevious).length
    })
    // The precondition: read in a clean path, the ledger shows what happened.
    expect(summary(honest)).toEqual({ duplicates: 1, missing: 1, once: 2, overlaps: 1 })
    // The demo's members read it in their own path: the same verdict, nothing planted run.
    expect.soft(ran.map((r) => r.what)).toEqual([])
    expect(summary(hijacked)).toEqual(summary(honest))
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 60_000)
