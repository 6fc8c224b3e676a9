/**
 * An app that shares its `@effect/sql-pg` pool with the library, and interrupts one of its own
 * queries, can cancel a statement of the library's (found while chasing a rare failure of
 * test/hostile/notifications.pg.test.ts, whose own check queries ran inside work that a change
 * interrupts). The pool cancels an interrupted query with `SELECT pg_cancel_backend(pid)` sent on
 * another of its connections, but hands the query's own connection back the moment its reply comes
 * in: when that reply beats the cancel (the cancel waits for a free connection, or is merely slower),
 * the cancel lands on whatever statement the connection's next user sent. Here that is a fenced
 * transaction's body: it fails with 57014 and commits nothing, its check rows gone; it does not
 * commit half, nor hang.
 *
 * The order is made certain without sleeps: the app's query and a second one that fills the pool
 * wait on advisory locks the test holds, and the pool's queue is read before each step.
 */
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Layer } from "effect"
import { randomBytes } from "node:crypto"
import pg from "pg"
import * as Fenced from "../../src/Fenced.js"
import { databaseUrl } from "../support/Database.js"
import { waitFor, waitForEffect } from "../support/Wait.js"
import { fixture } from "./support.js"

it.live("an app's interrupted query on the shared pool cancels a fenced body's statement: the block fails, nothing commits", () =>
  Effect.gen(function*() {
    const application = `mg-shared-cancel-${randomBytes(4).toString("hex")}`
    const pool = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const pool = new pg.Pool({ connectionString: databaseUrl(), max: 2, idleTimeoutMillis: 0, application_name: application })
        pool.on("error", () => {})
        return pool
      }),
      (pool) => Effect.promise(() => pool.end())
    )
    // The test's own session: holds the advisory locks that order the steps.
    const observer = yield* Effect.acquireRelease(
      Effect.promise(async () => {
        const client = new pg.Client({ connectionString: databaseUrl() })
        client.on("error", () => {})
        await client.connect()
        return client
      }),
      (client) => Effect.promise(() => client.end().catch(() => undefined))
    )
    const keys = [1, 2, 3].map(() => randomBytes(4).readInt32BE(0))
    const [appKey, holdKey, bodyKey] = keys as [number, number, number]
    const query = (text: string, values: Array<unknown> = []) => Effect.promise(() => observer.query(text, values))
    for (const k of keys) yield* query("SELECT pg_advisory_lock($1)", [k])
    /** Backends of the pool waiting on the advisory lock `key`. */
    const waitingOn = (key: number) =>
      Effect.map(
        query(
          `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a USING (pid)
            WHERE a.application_name = $1 AND l.locktype = 'advisory' AND NOT l.granted AND l.objid = ($2::bigint & 4294967295)::oid`,
          [application, key]
        ),
        (r) => (r.rows[0] as { n: number }).n
      )

    yield* Effect.gen(function*() {
      const t = yield* fixture("shared-cancel")
      const sql = t.sql
      // The app's query (connection 1), and one that keeps the pool full (connection 2).
      const app = yield* Effect.fork(sql`SELECT pg_advisory_xact_lock(${appKey})`)
      const hold = yield* Effect.fork(sql`SELECT pg_advisory_xact_lock(${holdKey})`)
      yield* waitForEffect(Effect.map(Effect.zip(waitingOn(appKey), waitingOn(holdKey)), ([a, h]) => a === 1 && h === 1), Duration.seconds(10), "both app queries running")
      // A fenced block asks for a connection: first in the pool's queue.
      const block = yield* Effect.fork(Effect.either(
        Fenced.fencedWith(t.target, Effect.zipRight(t.insert("fenced"), sql`SELECT pg_advisory_xact_lock(${bodyKey})`), { timeout: "20 seconds" })
      ))
      yield* waitFor(() => pool.waitingCount === 1, Duration.seconds(10), "the block queued for a connection")
      // The app gives up on its query: the pool's cancel queues behind the block.
      const interrupted = yield* Effect.fork(Fiber.interrupt(app))
      yield* waitFor(() => pool.waitingCount === 2, Duration.seconds(10), "the cancel queued for a connection")
      // The app's query ends on its own: its connection goes to the block, whose body then waits.
      yield* query("SELECT pg_advisory_unlock($1)", [appKey])
      yield* waitForEffect(Effect.map(waitingOn(bodyKey), (n) => n === 1), Duration.seconds(10), "the block's body running")
      // A connection frees up: the cancel goes out, with the pid of the connection the block now has.
      yield* query("SELECT pg_advisory_unlock($1)", [holdKey])
      yield* Fiber.join(hold)
      yield* Fiber.join(interrupted)
      const result = yield* Fiber.join(block)
      yield* query("SELECT pg_advisory_unlock($1)", [bodyKey])
      // The body's statement was cancelled: the block fails with the app's own SqlError.
      expect(result._tag).toBe("Left")
      expect(String(result._tag === "Left" ? (result.left as { cause?: unknown }).cause : undefined))
        .toContain("canceling statement due to user request")
      // Nothing of the block committed, and it left no check rows.
      expect(yield* t.notes).toEqual([])
      expect(yield* t.leftovers).toBe(0)
    }).pipe(Effect.provide(PgClient.layerFromPool({ acquire: Effect.succeed(pool) }).pipe(Layer.orDie)))
  }).pipe(Effect.scoped), 60_000)
