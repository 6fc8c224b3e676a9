/**
 * The shared set-up of the concurrent-join tests (queue, formation): a store whose joins hold the
 * group lock 30 ms before their COMMIT, so that concurrent joins overlap, recording every step; and
 * a pool whose connections are all open before the joins start.
 */
import { SqlClient } from "@effect/sql"
import { Duration, Effect } from "effect"
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
