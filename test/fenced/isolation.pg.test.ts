/**
 * Fenced transactions behave the same under every default isolation level (issue 17, item 5; issue 11
 * break 5). A throwaway login role with `default_transaction_isolation` set to serializable or
 * repeatable read, and only the grants of docs/operations.md plus the one docs/fencing.md adds, runs
 * fenced transactions while a change commits concurrently: each commits or fails with
 * `StaleAssignment`, never with a serialization failure (40001).
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import * as Fenced from "../../src/Fenced.js"
import { databaseUrl, PgLive } from "../support/Database.js"
import { fixture } from "./support.js"
import { serialised } from "../support/Grants.js"

/** A login role whose transactions default to `level`, with the library's grants and the app table's. */
const roleWith = (level: "serializable" | "repeatable read", table: string) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const name = `mg_iso_${randomBytes(4).toString("hex")}`
      const password = `pw-${randomBytes(8).toString("hex")}`
      yield* sql.unsafe(`CREATE ROLE "${name}" LOGIN PASSWORD '${password}'`)
      yield* sql.unsafe(`ALTER ROLE "${name}" SET default_transaction_isolation = '${level}'`)
      // docs/operations.md, "Least privileges", and docs/fencing.md's addition for migration 0003.
      yield* sql.unsafe(serialised(`GRANT USAGE ON SCHEMA modulo_group TO "${name}"`))
      yield* sql.unsafe(serialised(`GRANT SELECT, INSERT, UPDATE, DELETE ON modulo_group.groups, modulo_group.members TO "${name}"`))
      yield* sql.unsafe(serialised(`GRANT SELECT ON modulo_group.schema_migrations TO "${name}"`))
      yield* sql.unsafe(serialised(`GRANT SELECT, INSERT, DELETE ON modulo_group.fence_checks TO "${name}"`))
      yield* sql.unsafe(serialised(`GRANT SELECT, INSERT ON "${table}" TO "${name}"`))
      const url = new URL(databaseUrl())
      url.username = name
      url.password = password
      const layer = PgClient.layer({ url: Redacted.make(url.toString()), applicationName: "modulo-group-isolation" })
      return { name, layer }
    }),
    ({ name }) =>
      Effect.flatMap(SqlClient.SqlClient, (sql) =>
        Effect.all([sql.unsafe(serialised(`DROP OWNED BY "${name}"`)), sql.unsafe(`DROP ROLE IF EXISTS "${name}"`)])).pipe(Effect.orDie)
  )

const sqlState = (e: unknown): string | undefined =>
  (e as SqlError | undefined)?._tag === "SqlError" ? (e as { cause?: { code?: string } }).cause?.code : undefined

/** What a fenced call ended with: "committed", an error tag, or "SqlError <SQLSTATE>". */
const outcome = <A, E>(exit: Exit.Exit<A, E>): string =>
  Exit.match(exit, {
    onSuccess: () => "committed",
    onFailure: (cause) => {
      const error = cause._tag === "Fail" ? cause.error : undefined
      const tag = (error as { _tag?: string } | undefined)?._tag ?? `defect ${String(cause)}`
      return tag === "SqlError" ? `SqlError ${sqlState(error)}` : tag
    }
  })

for (const level of ["serializable", "repeatable read"] as const) {
  it.live(`default_transaction_isolation = ${level}: a fenced transaction that waited for a change sees its result, never 40001`, () =>
    Effect.gen(function*() {
      const t = yield* fixture(`fence-iso-${level.replace(" ", "-")}`)
      const role = yield* roleWith(level, t.table)

      /**
       * While `fenced` (as the role) waits for the change's exclusive advisory lock, the change (as the
       * owner) runs `change` and commits; returns how the fenced call ended.
       */
      const race = (note: string, change: Effect.Effect<unknown, SqlError>) =>
        Effect.gen(function*() {
          const holding = yield* Deferred.make<number>()
          const release = yield* Deferred.make<void>()
          const changer = yield* Effect.fork(t.sql.withTransaction(Effect.gen(function*() {
            const [{ pid }] = (yield* t.sql<{ pid: number }>`
              SELECT pg_backend_pid() AS pid, pg_advisory_xact_lock(${Fenced.advisoryLockClass}, hashtext(${t.groupId}))`) as [
                { pid: number }
              ]
            yield* Deferred.succeed(holding, pid)
            yield* Deferred.await(release)
            yield* change
          })))
          const pid = yield* Deferred.await(holding)
          const fenced = yield* Effect.fork(
            Effect.flatMap(SqlClient.SqlClient, (sql) =>
              Effect.gen(function*() {
                // The role's own default applies outside fenced (the test's premise).
                const [iso] = yield* sql.withTransaction(sql<{ level: string }>`SELECT current_setting('transaction_isolation') AS level`)
                expect(iso!.level).toBe(level)
                return yield* Fenced.fencedWith(t.target, sql`INSERT INTO ${sql(t.table)} (note) VALUES (${note})`, {
                  timeout: "5 seconds"
                })
              })).pipe(Effect.provide(role.layer), Effect.exit)
          )
          // The fenced transaction has begun (its first statement took a snapshot) and waits for the lock.
          for (let i = 0; i < 250; i++) {
            const [{ n }] = (yield* t.sql<{ n: string }>`
              SELECT count(*) AS n FROM pg_stat_activity WHERE ${pid} = ANY(pg_blocking_pids(pid))`) as [{ n: string }]
            if (Number(n) > 0) break
            yield* Effect.sleep("20 millis")
          }
          yield* Deferred.succeed(release, undefined)
          yield* Fiber.join(changer)
          return outcome(yield* Fiber.join(fenced))
        })

      // A change that moved nothing fenced depends on (a heartbeat of the member, a touch of the group
      // row): the fenced transaction commits.
      expect(
        yield* race(
          "after-heartbeat",
          Effect.all([
            t.sql`UPDATE modulo_group.members SET lease_expires_at = lease_expires_at + interval '1 second'
                   WHERE member_id = ${t.memberId}`,
            t.sql`UPDATE modulo_group.groups SET changed_at = clock_timestamp() WHERE group_id = ${t.groupId}`
          ])
        )
      ).toBe("committed")
      // A change that bumped the epoch: the fenced transaction sees it and fails as stale.
      expect(
        yield* race(
          "after-epoch-bump",
          t.sql`UPDATE modulo_group.groups SET epoch = epoch + 1, changed_at = clock_timestamp() WHERE group_id = ${t.groupId}`
        )
      ).toBe("StaleAssignment")
      expect(yield* t.notes).toEqual(["after-heartbeat"])
    }).pipe(Effect.scoped, Effect.provide(PgLive)), 30_000)
}

it.live("default_transaction_isolation = serializable: fenced calls under a stream of concurrent heartbeats and changes commit or are stale, never 40001", () =>
  Effect.gen(function*() {
    const t = yield* fixture("fence-iso-stream")
    const role = yield* roleWith("serializable", t.table)
    const outcomes = new Map<string, number>()
    const stop = yield* Deferred.make<void>()
    // Heartbeats of the member and changes of the group (every tenth bumps the epoch; the fenced
    // calls follow the epoch they last saw), as fast as the locks allow.
    const churn = yield* Effect.fork(Effect.gen(function*() {
      let i = 0
      while (!(yield* Deferred.isDone(stop))) {
        i++
        yield* t.sql`UPDATE modulo_group.members SET lease_expires_at = clock_timestamp() + interval '1 minute'
                      WHERE member_id = ${t.memberId}`
        yield* t.sql.withTransaction(Effect.all([
          t.sql`SELECT pg_advisory_xact_lock(${Fenced.advisoryLockClass}, hashtext(${t.groupId}))`,
          t.sql`UPDATE modulo_group.groups SET epoch = epoch + ${i % 10 === 0 ? 1 : 0}, changed_at = clock_timestamp()
                 WHERE group_id = ${t.groupId}`
        ]))
        yield* Effect.sleep("5 millis")
      }
    }))
    const started = Date.now()
    yield* Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      while (Date.now() - started < 2_000) {
        const [g] = yield* sql<{ epoch: string }>`SELECT epoch FROM modulo_group.groups WHERE group_id = ${t.groupId}`
        const exit = yield* Effect.exit(Fenced.fencedWith(
          { ...t.target, epoch: Number(g!.epoch) },
          // A statement that takes a while, so that changes land between the fence's statements.
          Effect.zipRight(sql`SELECT pg_sleep(0.01)`, sql`INSERT INTO ${sql(t.table)} (note) VALUES ('x')`),
          { timeout: "5 seconds" }
        ))
        const o = outcome(exit)
        outcomes.set(o, (outcomes.get(o) ?? 0) + 1)
      }
    }).pipe(Effect.provide(role.layer), Effect.scoped)
    yield* Deferred.succeed(stop, undefined)
    yield* Fiber.join(churn)
    const summary = Object.fromEntries(outcomes)
    console.log(`[isolation] serializable role, concurrent churn: ${JSON.stringify(summary)}`)
    for (const o of outcomes.keys()) expect(["committed", "StaleAssignment"], JSON.stringify(summary)).toContain(o)
    expect(outcomes.get("committed") ?? 0).toBeGreaterThan(5)
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 30_000)
