/**
 * Changes queued behind the group lock (issue "scale and speed"): many joins at once must neither
 * time out nor fail merely because other joins are ahead of them, and a change waiting for its turn
 * holds no connection (no backend waits on a lock meanwhile).
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Layer, Logger, Redacted, Scope } from "effect"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import type { MemberInfo } from "../../src/MembershipStore.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as Migrations from "../../src/Migrations.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, ownLockWaiters, randomGroupId } from "../support/Database.js"
import { exactCover, makeRecorder } from "../support/Recorder.js"
import { slowCommitStore, warmPool } from "./support.js"
import { waitFor } from "../support/Wait.js"

const info = (name: string): MemberInfo => ({ memberId: crypto.randomUUID(), name, host: "test", pid: 1 })

/** Backends of this test's pool waiting for a lock (other files run in parallel), sampled every few ms until `stop`. */
const sampleLockWaiters = Effect.gen(function*() {
  let max = 0
  const fiber = yield* Effect.fork(
    Effect.forever(
      Effect.zipRight(
        Effect.tap(ownLockWaiters("%modulo_group%"), (n) => Effect.sync(() => (max = Math.max(max, n)))),
        Effect.sleep(Duration.millis(5))
      )
    )
  )
  return { max: () => max, stop: Fiber.interrupt(fiber) }
})

// A pool of its own, wide enough that every join can be in flight at once.
const Wide = Layer.unwrapEffect(
  Effect.sync(() =>
    PgClient.layer({ url: Redacted.make(databaseUrl()), applicationName: "modulo-group-test-queue", maxConnections: 12 })
  )
)

// Static joins (an instance id each) never ride along another join's change (riders.pg.test.ts):
// each is a change of its own, so these tests still queue 32 and 16 changes.
const statics = (i: number) => ({ instanceId: `i${i}`, rejoinGraceMs: 0 })

it.live("32 static joins at once, each change slow (100 ms under the lock), 2 s statement timeout: none fails, none waits on a lock", () =>
  Effect.gen(function*() {
    yield* Migrations.run
    const groupId = randomGroupId("queue")
    // Every join holds the group lock 100 ms before its COMMIT: 32 in a row take over 3 s, longer
    // than the statement timeout. Queued in the database (the old blocking wait), the later ones
    // time out.
    const store = yield* PgMembershipStore.make({
      statementTimeout: Duration.seconds(2),
      onStatement: (operation, step) =>
        operation === "join" && step === "commit" ? Effect.sleep(Duration.millis(100)) : Effect.void
    })
    // The pool's connections open first: their set-up is not what this test is about.
    yield* Effect.forEach(
      Array.from({ length: 12 }),
      () => Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT pg_sleep(0.05)`),
      { concurrency: "unbounded" }
    )
    const waiters = yield* sampleLockWaiters
    const results = yield* Effect.forEach(
      Array.from({ length: 32 }, (_, i) => info(`m${i}`)),
      (m, i) => Effect.either(store.join(groupId, m, 30_000, statics(i))),
      { concurrency: "unbounded" }
    )
    yield* waiters.stop
    const failures = results.filter((r) => r._tag === "Left").map((r) => r._tag === "Left" ? r.left.reason : "")
    expect(failures).toEqual([])
    const epochs = results.map((r) => (r._tag === "Right" ? r.right.epoch : 0)).sort((a, b) => a - b)
    // Every join was a change of its own, one at a time: 32 distinct epochs.
    expect(new Set(epochs).size).toBe(32)
    expect(waiters.max()).toBe(0)
    const [g] = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
      sql<{ size: number }>`SELECT size FROM modulo_group.groups WHERE group_id = ${groupId}`)
    expect(g!.size).toBe(32)
  }).pipe(Effect.scoped, Effect.provide(Notifier.layer.pipe(Layer.provideMerge(Wide)))), 60_000)

const lines: Array<string> = []
const capture = Logger.add(Logger.make(({ message }) => {
  lines.push(Array.isArray(message) ? message.join(" ") : String(message))
}))

it.live("32 members join at once over one pool: the group forms and no join failure is logged", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("queue-members")
    const rec = yield* makeRecorder
    const store = yield* MembershipStore
    const scope = yield* Scope.make()
    yield* Effect.forEach(
      Array.from({ length: 32 }),
      () =>
        Membership.make({
          groupId,
          heartbeat: "1 second",
          lease: "10 seconds",
          statementTimeout: "500 millis"
        }).pipe(
          Effect.provideService(MembershipStore, store),
          Effect.tap((m) => rec.track(m)),
          Scope.extend(scope)
        ),
      { concurrency: "unbounded", discard: true }
    )
    yield* waitFor(() => exactCover(rec.working(), 32), Duration.seconds(30), "32 members working")
    expect(rec.violations).toEqual([])
    expect(lines.filter((l) => /join failed|lock/.test(l))).toEqual([])
    yield* Scope.close(scope, Exit.void)
  }).pipe(
    Effect.scoped,
    Effect.provide(capture),
    Effect.provide(PgMembershipStore.layer().pipe(Layer.provideMerge(Wide)))
  ), 60_000)

it.live("16 static joins at once over one store: each takes one attempt at the group lock, none sleeps a backoff", () =>
  Effect.gen(function*() {
    yield* Migrations.run
    const groupId = randomGroupId("queue-local")
    const steps: Array<string> = []
    // Each join holds the group lock 30 ms before its COMMIT, so that the joins overlap: without a
    // queue of the store's own, every join but one finds the lock busy, rolls back and sleeps a
    // backoff (with the lock often free meanwhile), again and again.
    const store = yield* slowCommitStore(steps)
    yield* warmPool(12)
    const results = yield* Effect.forEach(
      Array.from({ length: 16 }, (_, i) => info(`m${i}`)),
      (m, i) => Effect.either(store.join(groupId, m, 30_000, statics(i))),
      { concurrency: "unbounded" }
    )
    expect(results.filter((r) => r._tag === "Left")).toEqual([])
    // One attempt per join: the store's own changes of a group wait for each other in the process,
    // holding no connection, and the next begins when the one before has committed.
    expect(steps.filter((s) => s === "join:busy").length).toBe(0)
    expect(steps.filter((s) => s === "join:lock").length).toBe(16)
  }).pipe(Effect.scoped, Effect.provide(Notifier.layer.pipe(Layer.provideMerge(Wide)))), 60_000)
