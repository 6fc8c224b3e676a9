/**
 * The SQL fragments apps embed in their own statements (`Ownership.owned`, `ownerExpression`, and
 * slots mode's `owned(sql, column, { slots, count })`) run in the app's search path. An adversarial
 * review planted, in a schema of that path (pg_catalog implicitly first), functions that PostgreSQL
 * took over pg_catalog's where those need a cast or meet an untyped literal: `mod(integer, bigint)`
 * (and smallint, numeric) for integer keys, `convert_to(text, text)` and `rtrim(varchar|char, text)`
 * for text keys. The planted function decided which rows each member owned: two members of one
 * epoch both processed (and committed, fenced) the same items, and it ran as the app's role. Every
 * function and operator of the fragments is named in pg_catalog now; here each planted one records
 * that it ran, and none may, and the database's owner agrees with `ownerOf` for every column type.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import * as Ownership from "../../src/Ownership.js"
import { clientWithOptions, PgLive } from "../support/Database.js"

/** A fresh schema for the planted objects (dropped at the end of the scope). */
const plantSchema = Effect.acquireRelease(
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const schema = `planted_${randomBytes(4).toString("hex")}`
    yield* sql.unsafe(`CREATE SCHEMA ${schema}`)
    yield* sql.unsafe(`CREATE TABLE ${schema}.planted_ran (what text NOT NULL)`)
    return schema
  }),
  (schema) => Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`DROP SCHEMA ${schema} CASCADE`)).pipe(Effect.ignore)
)

it.live("ownerExpression and owned, on integer, smallint, numeric, bigint, text, varchar, char and uuid columns, run nothing planted and agree with ownerOf", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const schema = yield* plantSchema
    const log = (what: string) => `INSERT INTO ${schema}.planted_ran VALUES ('${what}')`
    yield* sql.unsafe(`
      CREATE FUNCTION ${schema}.mod(a integer, b bigint) RETURNS bigint LANGUAGE plpgsql AS $$
        BEGIN ${log("mod(integer, bigint)")}; RETURN 0; END $$;
      CREATE FUNCTION ${schema}.mod(a smallint, b bigint) RETURNS bigint LANGUAGE plpgsql AS $$
        BEGIN ${log("mod(smallint, bigint)")}; RETURN 0; END $$;
      CREATE FUNCTION ${schema}.mod(a numeric, b bigint) RETURNS numeric LANGUAGE plpgsql AS $$
        BEGIN ${log("mod(numeric, bigint)")}; RETURN 0; END $$;
      CREATE FUNCTION ${schema}.convert_to(a text, b text) RETURNS bytea LANGUAGE plpgsql AS $$
        BEGIN ${log("convert_to(text, text)")}; RETURN '\\x00'::bytea; END $$;
      CREATE FUNCTION ${schema}.rtrim(a character varying, b text) RETURNS text LANGUAGE plpgsql AS $$
        BEGIN ${log("rtrim(varchar, text)")}; RETURN 'same'; END $$;
      CREATE FUNCTION ${schema}.rtrim(a character, b text) RETURNS text LANGUAGE plpgsql AS $$
        BEGIN ${log("rtrim(char, text)")}; RETURN 'same'; END $$;
      CREATE FUNCTION ${schema}.eq_numeric_int(a numeric, b integer) RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN ${log("=(numeric, integer)")}; RETURN true; END $$;
      CREATE OPERATOR ${schema}.= (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = ${schema}.eq_numeric_int);
      CREATE FUNCTION ${schema}.plus_numeric_int8(a numeric, b bigint) RETURNS numeric LANGUAGE plpgsql AS $$
        BEGIN ${log("+(numeric, bigint)")}; RETURN 0; END $$;
      CREATE OPERATOR ${schema}.+ (LEFTARG = numeric, RIGHTARG = bigint, FUNCTION = ${schema}.plus_numeric_int8);
      CREATE TABLE ${schema}.keys (i integer, s smallint, n numeric, b bigint, t text, v varchar(40), c char(40), u uuid);
      INSERT INTO ${schema}.keys
        SELECT g, g, g, g, 'key-' || g, 'key-' || g, 'key-' || g, pg_catalog.gen_random_uuid()
          FROM pg_catalog.generate_series(1, 12) AS g;`)
    const members = clientWithOptions(`-c search_path=${schema}`, "planted-ownership", { maxConnections: 2 })
    const size = 5
    const cases: Array<{ column: string; keyType: Ownership.KeyType }> = [
      { column: "b", keyType: "integer" }, // control: bigint, pg_catalog exact
      { column: "u", keyType: "uuid" }, // control
      { column: "i", keyType: "integer" },
      { column: "s", keyType: "integer" },
      { column: "n", keyType: "integer" },
      { column: "t", keyType: "text" },
      { column: "v", keyType: "text" },
      { column: "c", keyType: "text" }
    ]
    const disagree: Array<string> = []
    yield* Effect.gen(function*() {
      const msql = yield* SqlClient.SqlClient
      for (const { column, keyType } of cases) {
        const rows = yield* msql<{ key: string; owner: string; slotted: boolean }>`
          SELECT ${msql(column)}::text AS key, ${Ownership.ownerExpression(msql, column, size, keyType)} AS owner,
                 ${Ownership.owned(msql, column, { slots: [0, 1, 2], count: size }, keyType)} AS slotted
            FROM ${msql(schema)}.keys`
        for (const r of rows) {
          const key = keyType === "integer" ? r.key : r.key.trimEnd()
          const expected = Ownership.ownerOf(key, size, keyType)
          if (Number(r.owner) !== expected || r.slotted !== (expected <= 2)) {
            disagree.push(`${column}(${keyType}) ${key}: sql ${r.owner}, ownerOf ${expected}`)
          }
        }
      }
    }).pipe(Effect.provide(members))
    const ran = yield* sql.unsafe<{ what: string }>(`SELECT DISTINCT what FROM ${schema}.planted_ran ORDER BY what`)
    expect.soft(ran.map((r) => r.what)).toEqual([])
    expect(disagree).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 60_000)
