/**
 * An app's own (unfenced) statement in a work run, interrupted by a change (an adversarial review).
 * The runner counts a run as stopped when its fiber has ended. `@effect/sql-pg` ends an interrupted
 * statement's fiber after a best-effort cancel (`pg_cancel_backend` on another pooled connection,
 * waited for at most 5 s): behind PgBouncer the pid is the pooler's and the cancel reaches nothing,
 * and with the app's pool exhausted the cancel never goes out. The statement then ran on after the
 * member had acknowledged, and an epoch-1 write committed 1.1-1.6 s after epoch 2's work had started.
 * The library cannot reach into the app's pool; what docs/work.md says to do, and what this file
 * tests: a statement made `Effect.uninterruptible` (bounded on the server) is waited for by the stop,
 * so no write of the old epoch commits after the new epoch's work started. (Through `fenced`, G6
 * holds as its own tests show.)
 *
 * Set-up: member A alone (epoch 1, [0/1]); its run records its start (direct pool, database clock),
 * then sends through the app's own pool one statement that works (pg_sleep: 1.5 s behind PgBouncer,
 * 6 s with the pool exhausted, past the 5 s the cancel is waited for) and then writes
 * (epoch, 'write', clock_timestamp()). Member B joins 300 ms later: epoch 2. Every run records its
 * start. G2: no write of epoch 1 commits after any run of epoch 2 started.
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Redacted, Scope } from "effect"
import * as Membership from "../../src/Membership.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, PgLive, randomGroupId } from "../support/Database.js"
import * as Bouncer from "../pgbouncer/pgbouncer.js"

const installed = Bouncer.pgbouncerBinary() !== undefined
if (!installed) console.log("test/work/plainStatement: the PgBouncer case skips: apt-get install -y pgbouncer to run it")
let bouncer: Bouncer.PgBouncer | undefined

describe("G2: an app's plain statement in a run interrupted by a change, made uninterruptible", () => {
  beforeAll(async () => {
    if (installed) bouncer = await Bouncer.start(databaseUrl(), { poolMode: "transaction", poolSize: 4 })
  })
  afterAll(async () => {
    await bouncer?.stop()
  })

  const scenario = (appUrl: () => string, poolSize: number, sleepS: number) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient // direct: the membership's store and the test's records
      const groupId = randomGroupId("plain-statement")
      const table = `plain_${groupId.replace(/-/g, "_")}`
      const fn = `${table}_slow`
      yield* Effect.acquireRelease(
        Effect.all([
          sql.unsafe(`CREATE TABLE ${table} (epoch bigint NOT NULL, member text NOT NULL, what text NOT NULL, at timestamptz NOT NULL)`),
          sql.unsafe(`CREATE FUNCTION ${fn}(e bigint, m text) RETURNS int LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_sleep(${sleepS}); INSERT INTO ${table} VALUES (e, m, 'write', clock_timestamp()); RETURN 1; END $$`)
        ]),
        () => Effect.orDie(Effect.all([sql.unsafe(`DROP FUNCTION IF EXISTS ${fn}(bigint, text)`), sql.unsafe(`DROP TABLE IF EXISTS ${table}`)]))
      )
      // The app's own pool for its work.
      const appPool = yield* Layer.build(PgClient.layer({ url: Redacted.make(appUrl()), maxConnections: poolSize }))
      const app = Context.get(appPool, SqlClient.SqlClient)
      const work = (label: string) => (a: { readonly epoch: number; readonly index: number; readonly size: number }) =>
        Effect.gen(function*() {
          yield* sql.unsafe(`INSERT INTO ${table} VALUES (${a.epoch}, '${label}', 'start [${a.index}/${a.size}]', clock_timestamp())`)
          // The slice's work, one statement through the app's pool, waited for to its end when the
          // run is interrupted.
          yield* Effect.uninterruptible(app.unsafe(`SELECT ${fn}(${a.epoch}, '${label}')`))
          yield* Effect.never
        }).pipe(Effect.orDie)
      const member = (label: string) =>
        Effect.gen(function*() {
          const scope = yield* Scope.make()
          yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
          const m = yield* Membership.make({ groupId, heartbeat: "100 millis", lease: "4 seconds", statementTimeout: "1 second" })
            .pipe(Scope.extend(scope))
          yield* m.whileAssigned(work(label)).pipe(Scope.extend(scope))
          return m
        })
      const a = yield* member("A")
      yield* a.awaitAssigned
      yield* Effect.sleep("300 millis")
      const b = yield* member("B")
      yield* b.awaitAssigned
      yield* Effect.sleep(`${sleepS * 1000 + 1000} millis`) // A's statement of epoch 1 ends meanwhile
      const rows = yield* sql<{ epoch: string; member: string; what: string; at: Date }>`
        SELECT epoch, member, what, at FROM ${sql(table)} ORDER BY at`
      const laterStarts = rows.filter((r) => Number(r.epoch) > 1 && r.what.startsWith("start")).map((r) => new Date(r.at).getTime())
      const oldWrites = rows.filter((r) => Number(r.epoch) === 1 && r.what === "write").map((r) => new Date(r.at).getTime())
      expect(laterStarts.length).toBeGreaterThan(0)
      // The old statement ran to its end (it was not cancelled), before the next epoch's first start.
      expect(oldWrites.length).toBe(1)
      expect(oldWrites.filter((t) => t > Math.min(...laterStarts))).toEqual([])
    }).pipe(
      Effect.scoped,
      Effect.provide(Layer.unwrapEffect(Effect.sync(() =>
        PgMembershipStore.layer({ statementTimeout: "1 second" }).pipe(Layer.provideMerge(PgLive))
      )))
    )

  it.live("direct connection, the app's pool of one connection busy with it: the stop waits for the statement", () =>
    // 6 s: longer than @effect/sql-pg waits for its cancel (5 s), which cannot get a connection.
    scenario(() => databaseUrl(), 1, 6), { timeout: 30_000 })

  it.live.skipIf(!installed)("behind PgBouncer (transaction mode): the stop waits for the statement", () =>
    scenario(() => bouncer!.url, 4, 1.5), { timeout: 30_000 })
})
