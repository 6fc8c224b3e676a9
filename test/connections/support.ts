/**
 * The shared set-up of the concurrent-join tests (queue, formation): a store whose joins hold the
 * group lock 30 ms before their COMMIT, so that concurrent joins overlap, recording every step; and
 * a pool whose connections are all open before the joins start.
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Duration, Effect, Exit, Layer, Scope } from "effect"
import Pg from "pg"
import { databaseUrl } from "../support/Database.js"
import { exactCover, makeRecorder } from "../support/Recorder.js"
import { waitFor } from "../support/Wait.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"

/** A store whose every join holds the lock 30 ms before its COMMIT; each step goes to `steps`. */
export const slowCommitStore = (steps: Array<string>) =>
  PgMembershipStore.make({
    statementTimeout: Duration.seconds(2),
    onStatement: (operation, step) =>
      Effect.zipRight(
        Effect.sync(() => steps.push(`${operation}:${step}`)),
        operation === "join" && step === "commit" ? Effect.sleep(Duration.millis(30)) : Effect.void
      )
  })

/** Opens `n` of the pool's connections at once (each sleeps 50 ms), so no join waits for a connect. */
export const warmPool = (n: number) =>
  Effect.forEach(
    Array.from({ length: n }),
    () => Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT pg_sleep(0.05)`),
    { concurrency: "unbounded", discard: true }
  )

/**
 * A pg pool (for `PgClient.layerFromPool`) whose replies to some COMMITs reach the client `delayMs`
 * late, after the server has committed: the COMMIT of a transaction in which a statement whose text
 * includes `marker` ran, when `take()` says so (a slow network reply, a busy event loop).
 */
export const commitDelayingPool = (options: {
  readonly applicationName: string
  readonly marker: string
  readonly delayMs: number
  readonly take: () => boolean
}) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const pool = new Pg.Pool({ connectionString: databaseUrl(), max: 8, application_name: options.applicationName })
      pool.on("connect", (client: any) => {
        const original = client.query.bind(client)
        let marked = false
        client.query = (q: any, params?: any, cb?: any) => {
          const text: string = typeof q === "string" ? q : q?.text ?? ""
          if (text.includes(options.marker)) marked = true
          if (text === "COMMIT" && marked && typeof cb === "function" && options.take()) {
            marked = false
            return original(q, params, (err: any, res: any) => setTimeout(() => cb(err, res), options.delayMs))
          }
          if (text === "COMMIT" || text === "ROLLBACK" || text.startsWith("BEGIN")) marked = false
          return original(q, params, cb)
        }
      })
      return pool
    }),
    (pool) => Effect.promise(() => pool.end())
  )

/**
 * Four members of `groupId` over a pool of two connections to `url`, opened on demand (so each is
 * refused while `url` refuses), and a store without its start-up check (which would wait for the
 * database): the members meet the refusals themselves. Waits until `refused()` (each has said so), 2 s
 * longer (their joins are retried meanwhile: 50 ms doubling, capped at a heartbeat), then runs `letIn`
 * and waits until the four work on an exact cover. Returns the recorder's violations.
 */
export const formAfterRefusals = <E, R>(
  url: string,
  groupId: string,
  refused: () => boolean,
  letIn: Effect.Effect<void, E, R>
) => {
  const client = PgClient.layerFromPool({
    acquire: Effect.acquireRelease(
      Effect.sync(() => {
        const pool = new Pg.Pool({ connectionString: url, max: 2, idleTimeoutMillis: 0 })
        pool.on("error", () => {})
        return pool
      }),
      (pool) => Effect.promise(() => pool.end())
    )
  })
  return Effect.gen(function*() {
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
    yield* waitFor(refused, Duration.seconds(15), "four members refused")
    yield* Effect.sleep(Duration.seconds(2))
    yield* letIn
    yield* waitFor(() => exactCover(rec.working(), 4), Duration.seconds(20), "four members working")
    yield* Scope.close(scope, Exit.void)
    return rec.violations
  }).pipe(
    Effect.provide(
      Layer.effect(MembershipStore, PgMembershipStore.make()).pipe(Layer.provide(Notifier.layer), Layer.provideMerge(client))
    )
  )
}
