/**
 * One connection per process: a store over a one-connection pool, given that pool (`listenPool`),
 * LISTENs on it instead of opening a connection of its own. Members form, hear each other's joins
 * through notifications (their heartbeat is far too slow to explain how fast they converge), and the
 * process never holds more than that one connection.
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Layer, Scope } from "effect"
import { randomBytes } from "node:crypto"
import pg from "pg"
import * as Membership from "../../src/Membership.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, PgLive, randomGroupId } from "../support/Database.js"
import { exactCover, makeRecorder } from "../support/Recorder.js"
import { waitFor } from "../support/Wait.js"

it.live("a store over a one-connection pool LISTENs on that connection: one connection, and joins converge by notification", () =>
  Effect.gen(function*() {
    const observer = yield* SqlClient.SqlClient
    const application = `mg-one-${randomBytes(4).toString("hex")}`
    const pool = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const pool = new pg.Pool({
          connectionString: databaseUrl(),
          max: 1,
          idleTimeoutMillis: 0,
          application_name: application
        })
        pool.on("error", () => {})
        return pool
      }),
      (pool) => Effect.promise(() => pool.end())
    )
    const backends = Effect.map(
      observer<{ n: string }>`SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = ${application}`,
      ([r]) => Number(r!.n)
    )
    let most = 0
    const sample = Effect.tap(backends, (n) => Effect.sync(() => (most = Math.max(most, n))))
    const groupId = randomGroupId("one-connection")
    // A heartbeat of 10 s: a member that learns of a join within a few seconds heard a notification.
    const config = { groupId, heartbeat: "10 seconds", lease: "30 seconds" } as const
    yield* Effect.gen(function*() {
      const rec = yield* makeRecorder
      const store = yield* MembershipStore
      const scope = yield* Scope.make()
      const join = Membership.make(config).pipe(
        Effect.provideService(MembershipStore, store),
        Effect.tap((m) => rec.track(m)),
        Scope.extend(scope)
      )
      yield* join
      yield* join
      yield* waitFor(() => exactCover(rec.working(), 2), Duration.seconds(20), "two members")
      yield* sample
      const t0 = Date.now()
      yield* join
      yield* waitFor(() => exactCover(rec.working(), 3), Duration.seconds(20), "three members")
      const took = Date.now() - t0
      yield* sample
      // The LISTEN is on the pool's one connection (a notifier's own connection would have it).
      const pooled = yield* SqlClient.SqlClient
      const [listening] = yield* pooled<{ n: number }>`SELECT count(*)::int AS n FROM pg_listening_channels()`
      expect(listening!.n).toBe(1)
      expect(took).toBeLessThan(5_000)
      expect(most).toBe(1)
      expect(rec.violations).toEqual([])
      yield* Scope.close(scope, Exit.void)
    }).pipe(
      Effect.provide(
        PgMembershipStore.layer({ listenPool: pool }).pipe(
          Layer.provideMerge(PgClient.layerFromPool({ acquire: Effect.succeed(pool) }))
        )
      )
    )
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 60_000)
