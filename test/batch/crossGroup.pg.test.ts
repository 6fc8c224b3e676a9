/**
 * One group's trouble does not stop an unrelated group hosted in the same process (an adversarial
 * review). A process of one statement connection (as `modulo-group join` runs, `listenPool`) hosts
 * four members of group A and one of group B. Someone holds A's member rows locked (a session's
 * `SELECT ... FOR UPDATE`; a change of another process stopped before its COMMIT does the same) for
 * longer than a lease. The batch statement skips locked rows and sends each of A's members to renew
 * alone, waiting for its row lock. Each such renewal used to wait a whole statement timeout on the
 * process's connection, every heartbeat: B's renewals queued behind them past their bound, and B,
 * whose rows nobody touched, was fenced and stopped working (every run). Now busy renewals wait in
 * turns of 200 ms, one per group at a time (the group's others wait without a connection), so the
 * process's other statements get the connection between turns.
 */
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Layer, Scope } from "effect"
import pg from "pg"
import * as Membership from "../../src/Membership.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, PgLive, randomGroupId } from "../support/Database.js"
import { makeRecorder } from "../support/Recorder.js"
import { waitFor } from "../support/Wait.js"

// The local deadline is a renewal's send time + 2.5 s; the rows are held 5 s. The store's statement
// timeout is its default, 2 s.
const timing = { heartbeat: "500 millis", lease: "3 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const
const holdMs = 5_000

it.live("group A's member rows held locked past a lease: group B's member in the same one-connection process keeps working", () =>
  Effect.gen(function*() {
    const pool = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const p = new pg.Pool({ connectionString: databaseUrl(), max: 1, idleTimeoutMillis: 0, application_name: "test-cross-group" })
        p.on("error", () => {})
        return p
      }),
      (p) => Effect.promise(() => p.end())
    )
    const groupA = randomGroupId("cross-a")
    const groupB = randomGroupId("cross-b")
    const recA = yield* makeRecorder
    const recB = yield* makeRecorder
    yield* Effect.gen(function*() {
      const store = yield* MembershipStore
      const scope = yield* Scope.make()
      const join = (groupId: string, rec: typeof recB) =>
        Membership.make({ groupId, ...timing }).pipe(
          Effect.provideService(MembershipStore, store),
          Effect.tap((m) => rec.track(m)),
          Scope.extend(scope)
        )
      for (let i = 0; i < 4; i++) yield* join(groupA, recA)
      yield* join(groupB, recB)
      yield* waitFor(() => recA.working().length === 4 && recB.working().length === 1, Duration.seconds(20), "formed")
      const locker = new pg.Client({ connectionString: databaseUrl(), application_name: "test-cross-group-locker" })
      yield* Effect.acquireRelease(Effect.promise(() => locker.connect()), () => Effect.promise(() => locker.end()))
      yield* Effect.promise(() => locker.query("BEGIN"))
      yield* Effect.promise(() => locker.query("SELECT member_id FROM modulo_group.members WHERE group_id = $1 FOR UPDATE", [groupA]))
      const marksB = recB.marks.length
      const lockedAt = Date.now()
      yield* Effect.sleep(Duration.millis(holdMs))
      // A's members could not renew (their rows were held): fenced, as they must be.
      expect(recA.working()).toEqual([])
      // B's rows were never touched: its member worked throughout.
      const stopsB = recB.marks.slice(marksB).filter((m) => m.kind === "end").map((m) => m.at - lockedAt)
      expect({ stopsOfBAfterTheLock: stopsB, bWorking: recB.working().length }).toEqual({ stopsOfBAfterTheLock: [], bWorking: 1 })
      yield* Effect.promise(() => locker.query("ROLLBACK"))
      // Once the rows are free, A works again (its members rejoin or renew).
      yield* waitFor(() => recA.working().length === 4, Duration.seconds(20), "A works again")
      expect(recA.violations).toEqual([])
      expect(recB.violations).toEqual([])
      yield* Scope.close(scope, Exit.void)
    }).pipe(
      Effect.provide(
        PgMembershipStore.layer({ listenPool: pool }).pipe(Layer.provideMerge(PgClient.layerFromPool({ acquire: Effect.succeed(pool) })))
      )
    )
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 60_000)
