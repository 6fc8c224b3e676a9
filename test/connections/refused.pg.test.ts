/**
 * A server that refuses connections for a while (issue "scale and speed": 64 processes on a server
 * with max_connections = 100): members retry with backoff, say why once each (not per retry), say
 * when they got through, and the group forms once connections are taken again.
 *
 * The refusal is real: the members' role has CONNECTION LIMIT 0 (SQLSTATE 53300, "too many
 * connections for role"), the same error class as "sorry, too many clients already".
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Layer, Logger, Scope } from "effect"
import { randomBytes } from "node:crypto"
import pg from "pg"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as Migrations from "../../src/Migrations.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, PgLive, randomGroupId } from "../support/Database.js"
import { documentedGrants, serialised } from "../support/Grants.js"
import { exactCover, makeRecorder } from "../support/Recorder.js"
import { waitFor } from "../support/Wait.js"

const lines: Array<string> = []
const capture = Logger.add(Logger.make(({ message }) => {
  lines.push(Array.isArray(message) ? message.join(" ") : String(message))
}))
const count = (re: RegExp) => lines.filter((l) => re.test(l)).length

it.live("connections refused for a while: each member says why once, retries, says when it got through, and the group forms", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* Migrations.run
    const role = `mg_refused_${randomBytes(4).toString("hex")}`
    const password = `pw-${randomBytes(8).toString("hex")}`
    yield* sql.unsafe(`CREATE ROLE "${role}" LOGIN PASSWORD '${password}' CONNECTION LIMIT 0`)
    yield* Effect.addFinalizer(() =>
      Effect.zipRight(sql.unsafe(serialised(`DROP OWNED BY "${role}"`)), sql.unsafe(`DROP ROLE IF EXISTS "${role}"`)).pipe(
        Effect.ignore
      )
    )
    const [{ db }] = (yield* sql<{ db: string }>`SELECT current_database() AS db`) as unknown as [{ db: string }]
    for (const grant of documentedGrants(role)) yield* sql.unsafe(serialised(grant.replace("CURRENT_DATABASE_NAME", `"${db}"`)))
    const url = new URL(databaseUrl())
    url.username = role
    url.password = password
    // No connection at start: the pool opens them on demand, and the server refuses every one.
    const client = PgClient.layerFromPool({
      acquire: Effect.acquireRelease(
        Effect.sync(() => {
          const pool = new pg.Pool({ connectionString: url.toString(), max: 2, idleTimeoutMillis: 0 })
          pool.on("error", () => {})
          return pool
        }),
        (pool) => Effect.promise(() => pool.end())
      )
    })

    const groupId = randomGroupId("refused")
    yield* Effect.gen(function*() {
      const rec = yield* makeRecorder
      const store = yield* MembershipStore
      const scope = yield* Scope.make()
      for (let i = 0; i < 4; i++) {
        yield* Membership.make({
          groupId,
          heartbeat: "200 millis",
          lease: "2 seconds",
          fenceMargin: "500 millis",
          statementTimeout: "1 second"
        }).pipe(
          Effect.provideService(MembershipStore, store),
          Effect.tap((m) => rec.track(m)),
          Scope.extend(scope)
        )
      }
      // Every member has been refused and has said so.
      yield* waitFor(() => count(/refuses connections/) >= 4, Duration.seconds(15), "four members refused")
      // Refused for a while longer: their joins are retried (50 ms doubling, capped at a heartbeat).
      yield* Effect.sleep(Duration.seconds(2))
      yield* sql.unsafe(`ALTER ROLE "${role}" CONNECTION LIMIT 10`)
      yield* waitFor(() => exactCover(rec.working(), 4), Duration.seconds(20), "four members working")
      expect(rec.violations).toEqual([])
      expect(count(/refuses connections/)).toBe(4)
      expect(count(/join failed|heartbeat failed/)).toBe(0)
      expect(count(/connected to the database again/)).toBe(4)
      // The notification connection (refused too) is said lost at most once, then back.
      expect(count(/notification connection lost/)).toBeLessThanOrEqual(1)
      yield* Scope.close(scope, Exit.void)
    }).pipe(
      // The store without its start-up check (which would wait for the database): the members meet
      // the refusals themselves.
      Effect.provide(
        Layer.effect(MembershipStore, PgMembershipStore.make()).pipe(
          Layer.provide(Notifier.layer),
          Layer.provideMerge(client)
        )
      )
    )
  }).pipe(Effect.scoped, Effect.provide(capture), Effect.provide(PgLive)), 60_000)
