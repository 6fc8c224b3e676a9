/**
 * The members' search_path and functions planted in a schema on it (docs/operations.md, "The members'
 * search_path"). PostgreSQL picks a function whose argument types match exactly over one that needs a
 * cast, wherever it is on the path: keeping pg_catalog first is not enough. A review planted
 * `public.generate_series(integer, bigint)` (no pg_catalog function has that signature; the change's
 * index reassignment called it so) and it ran in every change as the member's role, its output the
 * group's indices: the only member of a group of one worked index 1 (G1; failed before). The call
 * matches pg_catalog's (bigint, bigint) exactly now. And the store says, as it starts, which schemas
 * of the search path let every role create objects (PUBLIC holds CREATE: `public` before PostgreSQL 15).
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { randomUUID } from "node:crypto"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { clientWithOptions, ownDatabase, PgLive } from "../support/Database.js"
import { collectLogs } from "../safety/support.js"

const openSchemaWarning = /schema\(s\) "public" of the members' search_path let every role CREATE objects/

it.live("a generate_series(integer, bigint) planted in public never runs in a change; a member alone holds index 0", () =>
  Effect.gen(function*() {
    const db = yield* ownDatabase("searchpath", { maxConnections: 4 })
    yield* Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE public.planted_ran (at timestamptz DEFAULT clock_timestamp())`
      yield* sql.unsafe(`
        CREATE FUNCTION public.generate_series(a integer, b bigint) RETURNS SETOF bigint LANGUAGE sql AS $$
          INSERT INTO public.planted_ran DEFAULT VALUES;
          SELECT pg_catalog.generate_series(a::bigint, b) + 1;
        $$`)
      const store = yield* MembershipStore
      const groupId = `searchpath-${randomUUID()}`
      const view = yield* store.join(groupId, { memberId: randomUUID(), name: "m0", host: "h", pid: 1 }, 60_000)
      const second = yield* store.join(groupId, { memberId: randomUUID(), name: "m1", host: "h", pid: 2 }, 60_000)
      expect([view.index, view.size]).toEqual([0, 1])
      expect([second.size]).toEqual([2])
      const rows = yield* sql<{ idx: number }>`SELECT idx FROM modulo_group.members WHERE group_id = ${groupId} ORDER BY idx`
      expect(rows.map((r) => r.idx)).toEqual([0, 1])
      const [ran] = yield* sql<{ n: string }>`SELECT count(*) AS n FROM public.planted_ran`
      expect(Number(ran!.n)).toBe(0)
    }).pipe(Effect.provide(PgMembershipStore.layer({ migrate: true }).pipe(Layer.provideMerge(db.layer))))
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 60_000)

it.live("the store warns as it starts when a schema of the search path lets every role create objects, and not otherwise", () =>
  Effect.gen(function*() {
    const db = yield* ownDatabase("openschema", { maxConnections: 4 })
    const start = Effect.gen(function*() {
      const logs = collectLogs()
      yield* Effect.scoped(Layer.build(PgMembershipStore.layer({ migrate: true }))).pipe(Effect.provide(logs.layer))
      return logs.lines.filter((l) => openSchemaWarning.test(l.message)).map((l) => l.level)
    }).pipe(Effect.provide(db.layer))
    // PostgreSQL 15 and later: PUBLIC may not create in public.
    expect(yield* start).toEqual([])
    yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql`GRANT CREATE ON SCHEMA public TO PUBLIC`).pipe(Effect.provide(db.layer))
    expect(yield* start).toEqual(["WARN"])
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 60_000)

// Defence in depth: a change's transaction resolves in pg_catalog only after its first statement, even
// with a session path that lists public before pg_catalog, where a planted function of the very same
// signature as pg_catalog's (bigint, bigint) would win (failed before).
it.live("with public before pg_catalog in the session's path, a planted generate_series(bigint, bigint) and set_config never run in a change", () =>
  Effect.gen(function*() {
    const db = yield* ownDatabase("searchpathfirst", { maxConnections: 4 })
    const publicFirst = clientWithOptions("-c search_path=public,pg_catalog", "search-path", { url: db.url, maxConnections: 4 })
    yield* Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const [path] = yield* sql<{ path: string }>`SELECT current_setting('search_path') AS path`
      expect(path!.path.replace(/ /g, "")).toBe("public,pg_catalog")
      yield* sql`CREATE TABLE public.planted_ran (what text, at timestamptz DEFAULT clock_timestamp())`
      yield* sql.unsafe(`
        CREATE FUNCTION public.generate_series(a bigint, b bigint) RETURNS SETOF bigint LANGUAGE sql AS $$
          INSERT INTO public.planted_ran (what) VALUES ('generate_series');
          SELECT pg_catalog.generate_series(a, b) + 1;
        $$`)
      // A review of the pin: a set_config of the same signature, letting everything through but the
      // search path, undid a pin written without pg_catalog (failed before).
      yield* sql.unsafe(`
        CREATE FUNCTION public.set_config(n text, v text, l boolean) RETURNS text LANGUAGE plpgsql AS $$
        BEGIN
          IF n = 'search_path' THEN
            INSERT INTO public.planted_ran (what) VALUES ('set_config');
            RETURN pg_catalog.current_setting('search_path');
          END IF;
          RETURN pg_catalog.set_config(n, v, l);
        END $$`)
      const store = yield* MembershipStore
      const groupId = `searchpath-${randomUUID()}`
      const view = yield* store.join(groupId, { memberId: randomUUID(), name: "m0", host: "h", pid: 1 }, 60_000)
      expect([view.index, view.size]).toEqual([0, 1])
      const ran = yield* sql<{ what: string }>`SELECT what FROM public.planted_ran`
      expect(ran.map((r) => r.what)).toEqual([])
    }).pipe(Effect.provide(PgMembershipStore.layer({ migrate: true }).pipe(Layer.provideMerge(publicFirst))))
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 60_000)
