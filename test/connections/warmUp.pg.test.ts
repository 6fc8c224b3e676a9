/**
 * A fresh connection's first change (PgMembershipStore, docs/benchmarks.md "A fresh connection's
 * first change"): the store runs a change's statements once as it starts, on a group and a member
 * that do not exist, in a transaction it rolls back, so that its first join does not spend the
 * server's cold start (catalog caches, PL/pgSQL, `log_change`'s plans) under the group's lock. What
 * it must never do: write anything, or hold a change back when it fails.
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { randomBytes, randomUUID } from "node:crypto"
import pg from "pg"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, PgLive, randomGroupId } from "../support/Database.js"

/** A pool of one connection whose statements are recorded (and may be rewritten) as they are sent. */
const recordedPool = (rewrite: (text: string) => string | undefined = () => undefined) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const sent: Array<string> = []
      const pool = new pg.Pool({
        connectionString: databaseUrl(),
        max: 1,
        idleTimeoutMillis: 0,
        application_name: `mg-warm-${randomBytes(4).toString("hex")}`
      })
      pool.on("error", () => {})
      pool.on("connect", (client) => {
        const query = client.query.bind(client) as (...args: Array<unknown>) => unknown
        ;(client as unknown as { query: (...args: Array<unknown>) => unknown }).query = (...args) => {
          const first = args[0] as string | { text: string }
          const text = typeof first === "string" ? first : first?.text ?? ""
          sent.push(text)
          const replaced = rewrite(text)
          if (replaced !== undefined) {
            args[0] = typeof first === "string" ? replaced : { ...first, text: replaced }
          }
          return query(...args)
        }
      })
      return { pool, sent }
    }),
    ({ pool }) => Effect.promise(() => pool.end())
  )

const member = () => ({ memberId: randomUUID(), name: "warm", host: "here", pid: 1 })
const index = (sent: ReadonlyArray<string>, pattern: RegExp, from = 0) => {
  const i = sent.findIndex((t, k) => k >= from && pattern.test(t))
  return i
}

/** A new store over `pool`: one member joins (its view returned) and leaves. */
const joinAndLeave = (pool: pg.Pool, groupId: string, m: ReturnType<typeof member>) =>
  Effect.gen(function*() {
    const store = yield* MembershipStore
    const view = yield* store.join(groupId, m, 30_000)
    yield* store.leave(groupId, m.memberId)
    return view
  }).pipe(
    Effect.provide(
      // A long statement timeout: the join's wait for the warm-up (at most one) never runs out here,
      // also on a loaded machine where the LISTEN self-test holds the one connection for a while.
      PgMembershipStore.layer({ listenPool: pool, statementTimeout: "10 seconds" }).pipe(
        Layer.provideMerge(PgClient.layerFromPool({ acquire: Effect.succeed(pool) }))
      )
    )
  )

it.live("a new store's first join runs on a connection that has run a change's statements in a rolled-back transaction, which leaves nothing behind", () =>
  Effect.gen(function*() {
    const observer = yield* SqlClient.SqlClient
    const { pool, sent } = yield* recordedPool()
    const groupId = randomGroupId("warm-up")
    const m = member()
    expect(yield* joinAndLeave(pool, groupId, m)).toMatchObject({ size: 1, index: 0 })
    // On the pool's one connection, in order: the warm-up's transaction (a change's statements,
    // `log_change` among them) rolled back, then the join's own change.
    const warmBegin = index(sent, /^BEGIN ISOLATION LEVEL READ COMMITTED/)
    const warmLog = index(sent, /modulo_group\.log_change/, warmBegin)
    const rollback = index(sent, /^ROLLBACK/, warmLog)
    const joinLock = index(sent, /pg_try_advisory_xact_lock\(\$\d+::int4, pg_catalog\.hashtext\(\$\d+::text\)\) AS locked/)
    expect(warmBegin).toBeGreaterThanOrEqual(0)
    expect(warmLog).toBeGreaterThan(warmBegin)
    expect(rollback).toBeGreaterThan(warmLog)
    expect(joinLock).toBeGreaterThan(rollback)
    // The warm-up takes no group's lock and wrote nothing: no group, member or change-log row of it.
    // (A group's lock is keyed on the group id's text; a renewal's try of its member's own lock, only
    // when it would cut a lease back, is not one.)
    expect(sent.slice(warmBegin, rollback).some((t) => /advisory_xact_lock(_shared)?\(\$\d+::int4, pg_catalog\.hashtext\(\$\d+::text\)\)/.test(t))).toBe(false)
    const [left] = yield* observer<{ groups: number; members: number; log: number }>`
      SELECT (SELECT count(*)::int FROM modulo_group.groups WHERE group_id LIKE 'modulo-group warm-up%') AS groups,
             (SELECT count(*)::int FROM modulo_group.members WHERE group_id LIKE 'modulo-group warm-up%') AS members,
             (SELECT count(*)::int FROM modulo_group.change_log WHERE group_id LIKE 'modulo-group warm-up%') AS log`
    expect(left).toEqual({ groups: 0, members: 0, log: 0 })
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 60_000)

it.live("a warm-up that fails holds no change back: the join runs, on the same connection, once it has rolled back", () =>
  Effect.gen(function*() {
    // The first `log_change` sent (the warm-up's) is made to fail on the server.
    let failed = false
    const { pool, sent } = yield* recordedPool((text) => {
      if (failed || !/modulo_group\.log_change/.test(text)) return undefined
      failed = true
      return "SELECT 1 / 0"
    })
    const groupId = randomGroupId("warm-up-fails")
    const m = member()
    expect(yield* joinAndLeave(pool, groupId, m)).toMatchObject({ size: 1, index: 0 })
    expect(failed).toBe(true)
    const rollback = index(sent, /^ROLLBACK/)
    const joinLock = index(sent, /pg_try_advisory_xact_lock\(\$\d+::int4, pg_catalog\.hashtext\(\$\d+::text\)\) AS locked/)
    expect(rollback).toBeGreaterThanOrEqual(0)
    expect(joinLock).toBeGreaterThan(rollback)
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 60_000)
