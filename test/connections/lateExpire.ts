/**
 * What the two "one member id, two lives" tests share (lateExpireNewLife*.pg.test.ts): the moment a
 * busy leave reaches its `expireLease`: the other process's change that held the group's lock
 * commits, another session holds the lock shared (as a fenced transaction of the group does), a join
 * of the same store waits for it in lockGroup holding its connection, and the app's own statements
 * take the rest of the pool, so that the leave's statement waits for a connection.
 */
import type { SqlClient } from "@effect/sql"
import { Duration, Effect } from "effect"
import type pg from "pg"
import { waitFor } from "../support/Wait.js"

/**
 * `other` holds the group's lock (a change of another process, in its transaction): it commits, and
 * `fence` takes the lock shared; once the store's join waits for it (`steps` has "join:wait"), two
 * statements of the app (`pg_sleep(sleepSeconds)` on `sql`, application name `app`) take the rest of
 * the pool (watched on `watch` until both run).
 */
export const poolTakenBehindFence = (options: {
  readonly other: pg.Client
  readonly fence: pg.Client
  readonly watch: pg.Client
  readonly groupId: string
  readonly steps: ReadonlyArray<string>
  readonly sql: SqlClient.SqlClient
  readonly app: string
  readonly sleepSeconds: number
}) =>
  Effect.gen(function*() {
    const { app, fence, groupId, other, sleepSeconds, sql, steps, watch } = options
    yield* Effect.promise(async () => {
      const p = fence.query("BEGIN").then(() =>
        fence.query("SELECT pg_advisory_xact_lock_shared(1297040455, hashtext($1))", [groupId])
      )
      await new Promise((r) => setTimeout(r, 20))
      await other.query("COMMIT")
      await p
    })
    yield* waitFor(() => steps.includes("join:wait"), Duration.seconds(10), "the join waits in lockGroup")
    for (let i = 0; i < 2; i++) yield* Effect.forkDaemon(Effect.ignore(sql.unsafe(`SELECT pg_sleep(${sleepSeconds})`)))
    yield* Effect.promise(async () => {
      for (let i = 0; i < 200; i++) {
        const r = await watch.query(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND query LIKE $2 AND state = 'active'",
          [app, `%pg_sleep(${sleepSeconds})%`]
        )
        if (r.rows[0].n >= 2) return
        await new Promise((res) => setTimeout(res, 10))
      }
      throw new Error("the app's statements did not start")
    })
  })
