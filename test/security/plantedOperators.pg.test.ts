/**
 * Operators, aggregates and functions planted in a schema of the members' search path, against the
 * statements that are not a change's (renewals, reads, slot releases, the fence's statements), which
 * run in the session's path: PostgreSQL prefers a planted object whose argument types match exactly
 * over pg_catalog's whenever pg_catalog's needs an implicit cast, is polymorphic ("any", VARIADIC,
 * anyelement), or meets a bind parameter sent untyped (node-postgres sends every parameter so; an
 * unknown operand is taken for the other operand's type). A review planted, in `public`:
 *
 * - `*(interval, interval)`: a renewal's `$leaseMs * interval '1 millisecond'` took it, and every
 *   renewal of a member alone in its process wrote an expired lease while the member worked on (G2/G3);
 *   a busy leave's `expireLease` did the same (G5);
 * - `json_agg(json)`: the slot view's `json_agg(json_build_array(...))` took it, and two members each
 *   held every slot (G1/G2 per slot);
 * - `*(numeric, integer)`: the renewal's database clock (`extract(...) * 1000`) took it (a clock 10×
 *   fast: a crashed member was never reaped, G4), and so did `status` and the store's reads;
 * - `right(text, text)`: the fence's `right(chain, $n)` took it, inside every fenced transaction;
 * - `pg_advisory_xact_lock_shared(double precision, integer)`: the fence's fair queueing took it;
 * - (by reading) `*(integer, interval)` (`rejoin_grace_ms * interval`) and `unnest(integer[])`
 *   (releases and fences in slots mode).
 *
 * Every parameter is typed now, every polymorphic function named `pg_catalog.`, every operator of
 * mixed types written `OPERATOR(pg_catalog.*)` or given operands pg_catalog matches exactly. Here
 * each planted object records that it ran, and none may.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { randomUUID } from "node:crypto"
import * as Fenced from "../../src/Fenced.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as Migrations from "../../src/Migrations.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { ownDatabase, PgLive } from "../support/Database.js"

// Each planted object logs its name, then returns what the attack needed (the review's versions).
const plant = `
  CREATE TABLE public.planted_ran (what text NOT NULL);
  GRANT INSERT ON public.planted_ran TO PUBLIC;
  CREATE FUNCTION public.mul_interval(a interval, b interval) RETURNS interval LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO public.planted_ran VALUES ('*(interval, interval)'); RETURN b; END $$;
  CREATE OPERATOR public.* (LEFTARG = interval, RIGHTARG = interval, FUNCTION = public.mul_interval);
  CREATE FUNCTION public.mul_numeric_int(a numeric, b integer) RETURNS numeric LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO public.planted_ran VALUES ('*(numeric, integer)');
          RETURN a OPERATOR(pg_catalog.*) (b OPERATOR(pg_catalog.*) 10)::numeric; END $$;
  CREATE OPERATOR public.* (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = public.mul_numeric_int);
  CREATE FUNCTION public.mul_int_interval(a integer, b interval) RETURNS interval LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO public.planted_ran VALUES ('*(integer, interval)'); RETURN interval '-1 hour'; END $$;
  CREATE OPERATOR public.* (LEFTARG = integer, RIGHTARG = interval, FUNCTION = public.mul_int_interval);
  CREATE FUNCTION public.agg_keep(s jsonb, v json) RETURNS jsonb LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO public.planted_ran VALUES ('json_agg(json)');
          RETURN coalesce(s, '[]'::jsonb) OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_array(v::jsonb); END $$;
  CREATE FUNCTION public.agg_done(s jsonb) RETURNS json LANGUAGE sql AS $$ SELECT coalesce(s, '[]'::jsonb)::json $$;
  CREATE AGGREGATE public.json_agg(json) (SFUNC = public.agg_keep, STYPE = jsonb, FINALFUNC = public.agg_done);
  CREATE FUNCTION public.right(a text, b text) RETURNS text LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO public.planted_ran VALUES ('right(text, text)'); RETURN pg_catalog.right(a, b::integer); END $$;
  CREATE FUNCTION public.pg_advisory_xact_lock_shared(a double precision, b integer) RETURNS void LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO public.planted_ran VALUES ('pg_advisory_xact_lock_shared(float8, int)'); END $$;
  CREATE FUNCTION public.unnest(a integer[]) RETURNS SETOF integer LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO public.planted_ran VALUES ('unnest(integer[])'); RETURN QUERY SELECT pg_catalog.unnest(a); END $$;
`

const info = (name: string) => ({ memberId: randomUUID(), name, host: "planted-host", pid: 4242 })
const leaseMs = 60_000

it.live("objects planted in public never run in renewals, reads, slot releases or fenced transactions; leases are written whole", () =>
  Effect.gen(function*() {
    const db = yield* ownDatabase("planted", { maxConnections: 6 })
    yield* Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const store = yield* MembershipStore
      yield* sql.unsafe(plant)
      yield* sql`CREATE TABLE public.fenced_notes (note text NOT NULL)`
      const insert = (note: string) => sql`INSERT INTO public.fenced_notes (note) VALUES (${note})`

      // Modulo mode: a member alone (its renewal is one statement of its own), another joins.
      const modulo = `planted-${randomUUID()}`
      const a = info("a")
      const joined = yield* store.join(modulo, a, leaseMs)
      expect([joined.index, joined.size]).toEqual([0, 1])
      const b = info("b")
      const bJoined = yield* store.join(modulo, b, leaseMs)
      const viewA = Option.getOrThrow(yield* store.heartbeat(modulo, a.memberId, bJoined.epoch, leaseMs))
      const viewB = Option.getOrThrow(yield* store.heartbeat(modulo, b.memberId, bJoined.epoch, leaseMs))
      expect([viewA.size, viewB.size, [viewA.index, viewB.index].sort()]).toEqual([2, 2, [0, 1]])
      // The lease written is the lease asked for (the planted *(interval, interval) wrote 1 ms).
      const leases = yield* sql<{ ms: number }>`
        SELECT (extract(epoch FROM lease_expires_at - heartbeat_at) OPERATOR(pg_catalog.*) 1000)::float8 AS ms
          FROM modulo_group.members WHERE group_id = ${modulo}`
      expect(leases.map((r) => Math.round(r.ms))).toEqual([leaseMs, leaseMs])
      // The database clock the renewal reports is the database's (a planted *(numeric, integer): 10×).
      expect(Math.abs(viewA.clock - Date.now())).toBeLessThan(60_000)
      const members = yield* store.members(modulo)
      expect(members.map((m) => m.leaseLeftMs > leaseMs - 10_000)).toEqual([true, true])
      yield* store.groups
      yield* Fenced.fencedWith(
        { groupId: modulo, memberId: a.memberId, epoch: viewA.epoch, index: viewA.index, size: viewA.size },
        insert("modulo")
      )

      // Slots mode: c holds all four, d joins and owns two; heartbeats of both at once (one batch or
      // two); c releases d's slots; fenced transactions of each on its slots.
      const slots = `planted-slots-${randomUUID()}`
      const [c, d] = [info("c"), info("d")]
      yield* store.join(slots, c, leaseMs, undefined, { slots: 4 })
      const dJoined = yield* store.join(slots, d, leaseMs, undefined, { slots: 4 })
      const [cView, dView] = yield* Effect.all([
        store.heartbeat(slots, c.memberId, dJoined.epoch, leaseMs, { slots: true }),
        store.heartbeat(slots, d.memberId, dJoined.epoch, leaseMs, { slots: true })
      ], { concurrency: "unbounded" }).pipe(Effect.map((views) => views.map(Option.getOrThrow)))
      const cHeld = cView!.slots!.held
      expect(cHeld.map((h) => h.slot)).toEqual([0, 1, 2, 3])
      expect(dView!.slots!.held).toEqual([])
      const handed = cHeld.filter((h) => !h.owned).map((h) => ({ slot: h.slot, generation: h.generation }))
      expect(handed.length).toBe(2)
      const released = yield* store.releaseSlots(slots, c.memberId, handed)
      expect([...released].sort()).toEqual(handed.map((h) => h.slot).sort())
      const [cAfter, dAfter] = [
        Option.getOrThrow(yield* store.heartbeat(slots, c.memberId, dJoined.epoch, leaseMs, { slots: true })),
        Option.getOrThrow(yield* store.heartbeat(slots, d.memberId, dJoined.epoch, leaseMs, { slots: true }))
      ]
      const heldC = cAfter.slots!.held.map((h) => h.slot)
      const heldD = dAfter.slots!.held.map((h) => h.slot)
      expect([...heldC, ...heldD].sort()).toEqual([0, 1, 2, 3])
      for (const [member, view] of [[c, cAfter], [d, dAfter]] as const) {
        yield* Fenced.fencedWith(
          {
            groupId: slots,
            memberId: member.memberId,
            epoch: -1,
            index: -1,
            size: 0,
            slots: view.slots!.held.map((h) => ({ slot: h.slot, generation: h.generation }))
          },
          insert(member.name)
        )
      }
      yield* store.leave(modulo, b.memberId)

      const ran = yield* sql<{ what: string }>`SELECT DISTINCT what FROM public.planted_ran ORDER BY what`
      expect(ran.map((r) => r.what)).toEqual([])
      const notes = yield* sql<{ note: string }>`SELECT note FROM public.fenced_notes ORDER BY note`
      expect(notes.map((r) => r.note)).toEqual(["c", "d", "modulo"])
    }).pipe(Effect.provide(PgMembershipStore.layer({ migrate: true }).pipe(Layer.provideMerge(db.layer))))
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 60_000)

// A default binds its operators when it is created: migration 0002's `incarnation` default
// (`extract(...) * 1000`, numeric * integer) took a `*(numeric, integer)` planted before `migrate`,
// and every change that created a group ran it, pinned path or not. Migrations run pinned now, and
// 0013 sets the default again for a database migrated before.
it.live("a *(numeric, integer) planted before migrate never runs in a change, also in a database migrated to 12 under it", () =>
  Effect.gen(function*() {
    const db = yield* ownDatabase("plantedmig", { maxConnections: 4 })
    yield* Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql.unsafe(`
        CREATE TABLE public.planted_ran (what text NOT NULL);
        CREATE FUNCTION public.mul_numeric_int(a numeric, b integer) RETURNS numeric LANGUAGE plpgsql AS $$
          BEGIN INSERT INTO public.planted_ran VALUES ('*(numeric, integer)'); RETURN 0; END $$;
        CREATE OPERATOR public.* (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = public.mul_numeric_int);`)
      // As an older release (or an app's own migration tool) left it: 1..12 applied in the session's path.
      for (const m of Migrations.migrations) {
        if (m.version > 12) continue
        yield* sql.unsafe(Migrations.sqlOf(m.name))
        yield* sql`INSERT INTO modulo_group.schema_migrations (version, name) VALUES (${m.version}, ${m.name})`
      }
      const bound = yield* sql<{ ops: string }>`
        SELECT pg_catalog.string_agg(d.refobjid::regoper::text, ',') AS ops
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_attrdef ad ON d.classid = 'pg_catalog.pg_attrdef'::regclass AND d.objid = ad.oid
         WHERE ad.adrelid = 'modulo_group.groups'::regclass AND d.refclassid = 'pg_catalog.pg_operator'::regclass`
      // The precondition: the old default took the planted operator.
      expect(bound[0]!.ops).toContain("public.*")
      expect(yield* Migrations.run).toEqual(["0013_pinned_defaults", "0014_member_lease", "0015_missing_rows", "0016_forget_on_rename", "0017_moves_and_held_cursors", "0018_fence_check_rows", "0019_slot_count_guard"])
      const view = yield* Effect.flatMap(MembershipStore, (store) => store.join(`planted-mig-${randomUUID()}`, info("m"), leaseMs)).pipe(
        Effect.provide(PgMembershipStore.layer({ migrate: false }))
      )
      expect(view.incarnation).toBeGreaterThan(Date.now() - 60_000)
      const ran = yield* sql<{ what: string }>`SELECT DISTINCT what FROM public.planted_ran`
      expect(ran.map((r) => r.what)).toEqual([])
    }).pipe(Effect.provide(db.layer))
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 60_000)

it.live("migrations run with the search path pinned: on a fresh database a planted *(numeric, integer) is bound into nothing", () =>
  Effect.gen(function*() {
    const db = yield* ownDatabase("plantedfresh", { maxConnections: 4 })
    yield* Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql.unsafe(`
        CREATE FUNCTION public.mul_numeric_int(a numeric, b integer) RETURNS numeric LANGUAGE sql AS 'SELECT 0::numeric';
        CREATE OPERATOR public.* (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = public.mul_numeric_int);`)
      yield* Migrations.run
      // Nothing of the schema depends on an object of another schema than pg_catalog and its own.
      const foreign = yield* sql<{ ref: string }>`
        SELECT pg_catalog.pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid) AS ref
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_attrdef ad ON d.classid = 'pg_catalog.pg_attrdef'::regclass AND d.objid = ad.oid
          JOIN pg_catalog.pg_class c ON c.oid = ad.adrelid
         WHERE c.relnamespace = 'modulo_group'::regnamespace
           AND d.refclassid IN ('pg_catalog.pg_operator'::regclass, 'pg_catalog.pg_proc'::regclass)
           AND COALESCE((SELECT oprnamespace FROM pg_catalog.pg_operator WHERE oid = d.refobjid AND d.refclassid = 'pg_catalog.pg_operator'::regclass),
                        (SELECT pronamespace FROM pg_catalog.pg_proc WHERE oid = d.refobjid AND d.refclassid = 'pg_catalog.pg_proc'::regclass))
               NOT IN ('pg_catalog'::regnamespace, 'modulo_group'::regnamespace)`
      expect(foreign.map((r) => r.ref)).toEqual([])
    }).pipe(Effect.provide(db.layer))
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 60_000)
