/**
 * G2, a review of de8e019: one member id, two lives, with real members and the recorder.
 *
 * The store-level interleaving is in lateExpireNewLife.pg.test.ts. Here:
 * - member X (life 1) closes its scope while another process's change holds the group's lock: its
 *   final leave takes the busy path and, after half a statement timeout, sends `expireLease`;
 * - the app's own statements hold the rest of the pool (another member's join, Z, holds the last
 *   connection, waiting in lockGroup behind a fenced transaction of the group): the statement waits
 *   for a connection, uninterruptibly;
 * - the final leave gives up after its budget (statementTimeout), the scope closes, the member id
 *   is free; the app starts a new member with the same id (life 2), whose join rides along Z's change;
 * - Z's change commits (X life 2 and Z work epoch e+1, every row acknowledged), and its connection
 *   goes to the old life's expireLease, which ends the new life's lease and stops its renewals;
 * - Z leaves, Y (another process) joins: the new epoch reaps X's row and Y works it alone, while X
 *   (life 2, no notifications: G7) works e+1 until its next renewal.
 *
 * Fixed: the busy leave takes its number in the store's order of lease writes (`nextSeq`) when it
 * starts, and `expireLease` ends only a row written before it (`renewal_seq` below that number); every
 * row a later life writes is numbered later by the same counter.
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Layer, Redacted, Scope } from "effect"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import * as MembershipConfig from "../../src/MembershipConfig.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as Migrations from "../../src/Migrations.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, randomGroupId, rawSession } from "../support/Database.js"
import { poolTakenBehindFence } from "./lateExpire.js"
import { waitFor } from "../support/Wait.js"
import { makeRecorder } from "../support/Recorder.js"

const config = { heartbeat: "3 seconds", lease: "20 seconds", fenceMargin: "2 seconds", statementTimeout: "2 seconds" } as const

describe("one member id, two lives (members, recorder)", () => {
  it.live("G2: the first life's late busy leave does not end the second life's lease, and nobody starts its index while it works (before: 2.4-2.6 s of overlap, 9 runs of 9)", () =>
    Effect.gen(function*() {
      const app = `late-expire-M-${process.pid}-${Math.floor(Math.random() * 1e6)}`
      const ctxA = yield* Layer.build(
        Notifier.layer.pipe(
          Layer.provideMerge(PgClient.layer({ url: Redacted.make(databaseUrl()), applicationName: app, maxConnections: 3 }))
        )
      )
      const ctxB = yield* Layer.build(
        Notifier.layer.pipe(Layer.provideMerge(PgClient.layer({ url: Redacted.make(databaseUrl()), applicationName: `${app}-B` })))
      )
      yield* Migrations.run.pipe(Effect.provide(ctxA))
      const sqlA = yield* SqlClient.SqlClient.pipe(Effect.provide(ctxA))

      const steps: Array<string> = []
      const atExpire: { run: Effect.Effect<void> | undefined } = { run: undefined }
      const expireSent = yield* Deferred.make<void>()
      const storeA = yield* PgMembershipStore.make({
        statementTimeout: Duration.decode(config.statementTimeout),
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
      const storeB = yield* PgMembershipStore.make({ statementTimeout: Duration.decode(config.statementTimeout) }).pipe(
        Effect.provide(ctxB)
      )

      const [other, fence, watch] = yield* Effect.all([rawSession(), rawSession(), rawSession()], { concurrency: "unbounded" })

      const rec = yield* makeRecorder
      const groupId = randomGroupId("late-expire-members")
      const xId = crypto.randomUUID()
      const sameId = { host: "test", pid: 1, newMemberId: Effect.succeed(xId) }
      const member = (store: typeof storeA, label: string, identity?: typeof sameId) =>
        Effect.gen(function*() {
          const scope = yield* Scope.make()
          let make = Membership.make({ groupId, ...config, notifications: false, name: label }).pipe(
            Effect.provideService(MembershipStore, store)
          )
          if (identity !== undefined) make = make.pipe(Effect.provideService(MembershipConfig.MemberIdentity, identity))
          const m = yield* make.pipe(Scope.extend(scope))
          yield* rec.track(m, label).pipe(Scope.extend(scope))
          const close = Scope.close(scope, Exit.void)
          yield* Effect.addFinalizer(() => close)
          return { m, close }
        })
      const working = (label: string) => rec.working().some((w) => w.member === label)

      // X (life 1) works alone.
      const x1 = yield* member(storeA, "X-life1", sameId)
      yield* waitFor(() => working("X-life1"), Duration.seconds(10), "X life 1 works")

      // Another process's change holds the group's lock; X (life 1) is shut down meanwhile.
      yield* Effect.promise(() => other.query("BEGIN"))
      yield* Effect.promise(() => other.query("SELECT pg_advisory_xact_lock(1297040455, hashtext($1))", [groupId]))
      atExpire.run = poolTakenBehindFence({ other, fence, watch, groupId, steps, sql: sqlA, app, sleepSeconds: 8 })
      const closing = yield* Effect.fork(x1.close)
      yield* Effect.sleep(Duration.millis(100))
      const z = yield* member(storeA, "Z")

      yield* Deferred.await(expireSent)
      // The final leave gives up after its budget; the scope closes; the id is free again.
      yield* closing.await
      // Life 2 of X: same id, same process, same store. Its join rides along Z's change.
      const x2 = yield* member(storeA, "X-life2", sameId)
      yield* Effect.sleep(Duration.millis(100))
      yield* Effect.promise(() => fence.query("COMMIT"))
      yield* waitFor(() => working("X-life2") && working("Z"), Duration.seconds(10), "X life 2 and Z work")
      const e1 = rec.working().find((w) => w.member === "X-life2")!.epoch

      // The old life's expireLease has had its connection by now.
      yield* Effect.sleep(Duration.millis(200))
      const [row] = yield* sqlA<{ expired: boolean; seq: string }>`
        SELECT lease_expires_at <= now() AS expired, renewal_seq::text AS seq
          FROM modulo_group.members WHERE group_id = ${groupId} AND member_id = ${xId}`
      console.log("X's row (life 2) after Z's commit:", row)

      // Ordinary churn: Z leaves, Y (another process) joins.
      yield* z.close
      yield* member(storeB, "Y")
      yield* waitFor(() => working("Y"), Duration.seconds(10), "Y works")
      // Until X (life 2) has stopped its epoch (or works beside Y in Y's epoch: as it should).
      const yStart = rec.marks.find((m) => m.member === "Y" && m.kind === "start")!
      yield* waitFor(
        () => rec.working().find((w) => w.member === "X-life2")?.epoch !== e1,
        Duration.seconds(10),
        "X life 2 leaves epoch e1"
      )
      const xEnd = rec.marks.filter((m) => m.member === "X-life2" && m.kind === "end" && m.epoch === e1).at(-1)
      if (xEnd !== undefined && xEnd.at > yStart.at) {
        console.log(`X life 2 worked epoch ${e1} for ${xEnd.at - yStart.at} ms after Y started epoch ${yStart.epoch}`)
      }
      console.log("violations:", rec.violations)
      yield* x2.close
      expect(rec.violations).toEqual([])
    }).pipe(Effect.scoped), 90_000)
})
