/**
 * A fiber outside any run (an app loop) joins a shared in-flight fiber that a run happened to start. It
 * took the run's assignment at the join (a fiber of no run adopted the joined one's), and its plain
 * `fenced`, which docs/fencing.md says fences to the current assignment outside any run, was refused
 * for good once that run was stale (an adversarial review). A fiber now keeps its own run (or none) at
 * a join.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, Fiber, Layer, Scope } from "effect"
import * as Fenced from "../../src/Fenced.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { waitForEffect } from "../support/Wait.js"

const fast = { heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const
const StoreLive = PgMembershipStore.layerUsingNotifier().pipe(Layer.provideMerge(Notifier.layer), Layer.provideMerge(PgLive))

it.live("an app fiber outside any run that joins a loader a run started still fences plain to the current assignment", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const groupId = randomGroupId("a4-norun")
    const s1 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(s1, Exit.void))
    const m1 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(s1))
    // A singleflight loader: whoever asks first forks it; the others join it.
    let loader: Fiber.RuntimeFiber<string> | undefined
    const load = Effect.suspend(() => {
      if (loader !== undefined) return Fiber.join(loader)
      return Effect.flatMap(Effect.forkDaemon(Effect.as(Effect.sleep("50 millis"), "config")), (f) => {
        loader = f
        return Fiber.join(f)
      })
    })
    const started = yield* Deferred.make<void>()
    yield* m1.whileAssigned(() => Effect.zipRight(load, Effect.zipRight(Deferred.succeed(started, undefined), Effect.never)))
      .pipe(Effect.provideService(Membership.Membership, m1))
    yield* Deferred.await(started)
    const changed = yield* Deferred.make<void>()
    const loaded = yield* Deferred.make<void>()
    const provide = Effect.provideService(Membership.Membership, m1)
    // The app's loop, outside any run (e.g. an admin endpoint's worker), also reads the config.
    const loop = yield* Effect.fork(Effect.gen(function*() {
      const before = yield* Effect.either(provide(Fenced.fenced(sql`SELECT 1`)))
      if (process.env.A4_NOLOAD === undefined) yield* load
      yield* Deferred.succeed(loaded, undefined)
      yield* Deferred.await(changed)
      const after = yield* Effect.either(provide(Fenced.fenced(sql`SELECT 1`)))
      yield* Effect.sleep("1 second")
      const later = yield* Effect.either(provide(Fenced.fenced(sql`SELECT 1`)))
      return { before, after, later }
    }))
    // m2 joins only once the loop has fenced while m1 was alone and joined the loader (under load, a
    // join made meanwhile put m1 at the barrier, and the plain fence before it had no assignment).
    yield* Deferred.await(loaded)
    const s2 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(s2, Exit.void))
    const m2 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(s2))
    yield* waitForEffect(
      Effect.zipWith(m1.assignment, m2.assignment, (x, y) => x._tag === "Some" && y._tag === "Some" && x.value.size === 2 && y.value.size === 2),
      "10 seconds",
      "both at size 2"
    )
    yield* Deferred.succeed(changed, undefined)
    const { after, before, later } = yield* Fiber.join(loop)
    expect(Either.isRight(before)).toBe(true)
    expect(Either.isRight(after)).toBe(true)
    expect(Either.isRight(later)).toBe(true)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)
