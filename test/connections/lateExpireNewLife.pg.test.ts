/**
 * G2, a review of de8e019: one member id, two lives.
 *
 * A busy leave's `Statements.expireLease` matches its row by member id and writer only. Its statement
 * is sent inside `Effect.uninterruptible` (`single`), and that covers the wait for a pool connection:
 * with the app's pool busy, the statement waits in pg-pool's queue with no bound (no
 * `connectionTimeoutMillis` by default), long after the leave's caller gave up (the member's final
 * leave gives up after `statementTimeout`, and `Membership` then frees the member id). A new member
 * with the same id (same process, same store, same `writer`) joins meanwhile by riding along a change
 * that already holds a connection (a join of the same store, `joinRiders`): no pool wait for it. When
 * that change commits, its connection goes to the oldest waiter, the old life's `expireLease`, whose
 * snapshot now sees the NEW life's row: it ends the new member's lease (`now - statementTimeout`) and
 * sets `renewal_seq` to the maximum, so that no renewal of the new member is ever applied again. The
 * new member's join reported a complete barrier (it works); the rest of the group reaps its row and
 * starts the next epoch while it works (G2).
 *
 * Fixed: the busy leave takes its number in the store's order of lease writes (`nextSeq`) when it
 * starts, and `expireLease` ends only a row written before it (`renewal_seq` below that number); every
 * row a later life writes is numbered later by the same counter.
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Layer, Option, Redacted } from "effect"
import * as Notifier from "../../src/internal/pg/notifier.js"
import type { MemberInfo } from "../../src/MembershipStore.js"
import * as Migrations from "../../src/Migrations.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, randomGroupId, rawSession } from "../support/Database.js"
import { poolTakenBehindFence } from "./lateExpire.js"

const info = (name: string, memberId: string = crypto.randomUUID()): MemberInfo => ({ memberId, name, host: "test", pid: 1 })
const lease = 10_000
const statementTimeoutMs = 2_000

describe("one member id, two lives: a late expireLease of the first life", () => {
  it.live("G2: does not end the lease of the second life's row (it did, 6 runs of 6, before the leave was numbered)", () =>
    Effect.gen(function*() {
      const app = `late-expire-A-${process.pid}-${Math.floor(Math.random() * 1e6)}`
      const ctxA = yield* Layer.build(
        Notifier.layer.pipe(
          Layer.provideMerge(PgClient.layer({ url: Redacted.make(databaseUrl()), applicationName: app, maxConnections: 3 }))
        )
      )
      yield* Migrations.run.pipe(Effect.provide(ctxA))
      const sqlA = yield* SqlClient.SqlClient.pipe(Effect.provide(ctxA))

      const steps: Array<string> = []
      // What the hook does when the leave reaches its expireLease (set below).
      const atExpire: { run: Effect.Effect<void> | undefined } = { run: undefined }
      const expireSent = yield* Deferred.make<void>()
      const storeA = yield* PgMembershipStore.make({
        statementTimeout: Duration.millis(statementTimeoutMs),
        onStatement: (operation, step) =>
          Effect.suspend(() => {
            steps.push(`${operation}:${step}`)
            if (operation === "leave" && step === "expire" && atExpire.run !== undefined) {
              const run = atExpire.run
              atExpire.run = undefined
              return Effect.zipRight(run, Deferred.succeed(expireSent, undefined))
            }
            return Effect.void
          })
      }).pipe(Effect.provide(ctxA))

      // Another process: raw sessions holding the group's advisory lock.
      const [other, fence, watch] = yield* Effect.all([rawSession(), rawSession(), rawSession()], { concurrency: "unbounded" })

      const groupId = randomGroupId("late-expire")
      const xId = crypto.randomUUID()
      const x1 = info("X-life1", xId)
      const z = info("Z")

      // Life 1 of X joins and works.
      const v1 = yield* storeA.join(groupId, x1, lease)
      yield* storeA.heartbeat(groupId, xId, v1.epoch, lease)
      const e = v1.epoch

      // Another process's change holds the group's lock.
      yield* Effect.promise(() => other.query("BEGIN"))
      yield* Effect.promise(() => other.query("SELECT pg_advisory_xact_lock(1297040455, hashtext($1))", [groupId]))

      // X (life 1) leaves: its work has stopped. The lock is busy: after half a statement timeout it
      // ends its own lease (busyLeave). Z joins too (same store).
      const leaving = yield* Effect.fork(storeA.leave(groupId, xId))
      yield* Effect.sleep(Duration.millis(100))
      const zJoin = yield* Effect.fork(storeA.join(groupId, z, lease))

      atExpire.run = poolTakenBehindFence({ other, fence, watch, groupId, steps, sql: sqlA, app, sleepSeconds: 6 })

      yield* Deferred.await(expireSent)
      // The expireLease statement is now queued for a pool connection. The leave's caller gives up
      // (the final leave's budget): Membership frees the member id.
      yield* Effect.sleep(Duration.millis(50))
      yield* Fiber.interrupt(leaving)

      // Life 2 of X: same id, same store. It rides along Z's change (which holds its connection).
      const x2 = info("X-life2", xId)
      const x2Join = yield* Effect.fork(storeA.join(groupId, x2, lease))
      yield* Effect.sleep(Duration.millis(50))
      // The fenced transactions end: Z's change goes on and takes X (life 2) along.
      yield* Effect.promise(() => fence.query("COMMIT"))
      const vz = yield* Fiber.join(zJoin)
      const v2 = yield* Fiber.join(x2Join)
      console.log("Z joined", vz, "X life 2 joined", v2)

      // X (life 2) was told: epoch e+1, every row acknowledged: it works.
      expect(v2.epoch).toBe(e + 1)
      expect(v2.allAcked).toBe(true)

      // Wait for the old life's expireLease to get its connection (when Z's change let go of it).
      yield* Effect.sleep(Duration.millis(300))
      const [row] = yield* sqlA<{ expired: boolean; seq: string; joined_at: string }>`
        SELECT lease_expires_at <= now() AS expired, renewal_seq::text AS seq, joined_at::text AS joined_at
          FROM modulo_group.members WHERE group_id = ${groupId} AND member_id = ${xId}`
      console.log("X row after", row)

      // Z renews: it sees X expired, and reaps it; then works a new epoch alone while X (life 2),
      // which has not been told anything, works epoch e+1.
      const zRenew = yield* storeA.heartbeat(groupId, z.memberId, e + 1, lease)
      console.log("Z renewal", zRenew)
      yield* storeA.reap(groupId)
      const [g] = yield* sqlA<{ epoch: string }>`SELECT epoch FROM modulo_group.groups WHERE group_id = ${groupId}`
      const e2 = Number(g!.epoch)
      const zNext = yield* storeA.heartbeat(groupId, z.memberId, e2, lease)
      console.log("Z after reap", zNext)
      const xNext = yield* storeA.heartbeat(groupId, xId, e + 1, lease)
      console.log("X life 2 renewal", xNext)

      // G2: once anyone works under e2 > e+1, nobody works under e+1. X (life 2) never left, was never
      // told to stop, and never acknowledged e2; its lease as it knows it runs for another ~10 s.
      const zWorksNewer = Option.isSome(zNext) && zNext.value.allAcked && zNext.value.epoch > e + 1
      expect({ zWorksNewer, xRowLeaseEndedByOldLife: row?.expired === true }).toEqual({
        zWorksNewer: false,
        xRowLeaseEndedByOldLife: false
      })
    }).pipe(Effect.scoped), 60_000)
})
