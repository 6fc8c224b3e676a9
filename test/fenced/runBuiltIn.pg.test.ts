/**
 * An effect is a value: a `fenced` built in one work run can be run on a fiber of another. A runtime
 * captured in run 2, provided in (`Effect.provide(runtime)`) or run on (`Runtime.runPromise`) by a
 * daemon of run 1: the runtime's fiber refs are patched in, not joined, and the daemon's plain `fenced`
 * of run 1's slice fenced to run 2's assignment and committed under epoch 2 (an adversarial review).
 * Now `fenced` notes the run it was built in, and refuses to run in another.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, Layer, Runtime, Scope } from "effect"
import * as Fenced from "../../src/Fenced.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import type { Assignment } from "../../src/MemberState.js"
import * as Ownership from "../../src/Ownership.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { waitForEffect } from "../support/Wait.js"

const fast = { heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const
const StoreLive = PgMembershipStore.layerUsingNotifier().pipe(Layer.provideMerge(Notifier.layer), Layer.provideMerge(PgLive))

const items = (groupId: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const table = `items_${groupId.replace(/-/g, "_")}`
    const written = `${table}_w`
    yield* Effect.acquireRelease(
      Effect.zipRight(
        sql`CREATE TABLE ${sql(table)} (id bigint PRIMARY KEY)`,
        sql`CREATE TABLE ${sql(written)} (id bigint, member text, epoch bigint, slice text)`
      ).pipe(Effect.zipRight(sql`INSERT INTO ${sql(table)} SELECT generate_series(0, 9)`)),
      () => Effect.orDie(Effect.zipRight(sql`DROP TABLE IF EXISTS ${sql(table)}`, sql`DROP TABLE IF EXISTS ${sql(written)}`))
    )
    const body = (name: string, slice: Assignment) =>
      sql`INSERT INTO ${sql(written)}
          SELECT id, ${name}, (SELECT epoch FROM modulo_group.groups WHERE group_id = ${groupId}),
                 ${`[${slice.index}/${slice.size}] of epoch ${slice.epoch}`}
            FROM ${sql(table)} WHERE ${Ownership.owned(sql, "id", slice)}`
    const twice = sql<{ id: string; epoch: string; writers: string }>`
      SELECT id, epoch, string_agg(member || ' ' || slice, ', ' ORDER BY member) AS writers
        FROM ${sql(written)} GROUP BY id, epoch HAVING count(*) > 1 ORDER BY id`
    return { sql, body, twice }
  })


it.live("a daemon of run 1 that provides a Runtime captured in run 2 is refused run 1's slice under epoch 2", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("a4-rt")
    const t = yield* items(groupId)
    const s1 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(s1, Exit.void))
    const m1 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(s1))
    const firstRun = yield* Deferred.make<Assignment>()
    const runtimeOfRun2 = yield* Deferred.make<Runtime.Runtime<never>>()
    const late = yield* Deferred.make<Either.Either<void, unknown>>()
    let runs = 0
    yield* m1.whileAssigned((assignment) =>
      Effect.gen(function*() {
        const n = runs++
        if (n === 0) {
          yield* Fenced.fenced(t.body("m1-run1", assignment))
          yield* Effect.forkDaemon(
            Effect.gen(function*() {
              const rt = yield* Deferred.await(runtimeOfRun2)
              return yield* Effect.either(Effect.asVoid(Fenced.fenced(t.body("m1-daemon", assignment)))).pipe(
                Effect.provide(rt)
              )
            }).pipe(Effect.flatMap((result) => Deferred.succeed(late, result)))
          )
          yield* Deferred.succeed(firstRun, assignment)
        } else if (n === 1) {
          yield* Deferred.succeed(runtimeOfRun2, yield* Effect.runtime<never>())
        }
        return yield* Effect.never
      })
    ).pipe(Effect.provideService(Membership.Membership, m1))
    const a = yield* Deferred.await(firstRun)
    expect([a.index, a.size]).toEqual([0, 1])
    const s2 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(s2, Exit.void))
    const m2 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(s2))
    yield* waitForEffect(
      Effect.zipWith(m1.assignment, m2.assignment, (x, y) => x._tag === "Some" && y._tag === "Some" && x.value.size === 2 && y.value.size === 2),
      "10 seconds",
      "both at size 2"
    )
    const b = yield* m2.guard
    yield* Fenced.fenced(t.body("m2", b), { assignment: b }).pipe(Effect.provideService(Membership.Membership, m2))
    const result = yield* Deferred.await(late)
    const twice = yield* t.twice
    expect(Either.isLeft(result) && (result.left as { _tag?: string })._tag).toBe("StaleAssignment")
    expect(twice).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)

it.live("a daemon of run 1 that runs (Runtime.runPromise) on a Runtime captured in run 2 is refused run 1's slice under epoch 2", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("a4-rt")
    const t = yield* items(groupId)
    const s1 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(s1, Exit.void))
    const m1 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(s1))
    const firstRun = yield* Deferred.make<Assignment>()
    const runtimeOfRun2 = yield* Deferred.make<Runtime.Runtime<never>>()
    const late = yield* Deferred.make<Either.Either<void, unknown>>()
    let runs = 0
    yield* m1.whileAssigned((assignment) =>
      Effect.gen(function*() {
        const n = runs++
        if (n === 0) {
          yield* Fenced.fenced(t.body("m1-run1", assignment))
          yield* Effect.forkDaemon(
            Effect.gen(function*() {
              const rt = yield* Deferred.await(runtimeOfRun2)
              return yield* Effect.either(Effect.asVoid(Fenced.fenced(t.body("m1-daemon", assignment)))).pipe(
                (eff) => Effect.promise(() => Runtime.runPromise(rt)(eff as Effect.Effect<Either.Either<void, unknown>>))
              )
            }).pipe(Effect.flatMap((result) => Deferred.succeed(late, result)))
          )
          yield* Deferred.succeed(firstRun, assignment)
        } else if (n === 1) {
          yield* Deferred.succeed(runtimeOfRun2, yield* Effect.runtime<never>())
        }
        return yield* Effect.never
      })
    ).pipe(Effect.provideService(Membership.Membership, m1))
    const a = yield* Deferred.await(firstRun)
    expect([a.index, a.size]).toEqual([0, 1])
    const s2 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(s2, Exit.void))
    const m2 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(s2))
    yield* waitForEffect(
      Effect.zipWith(m1.assignment, m2.assignment, (x, y) => x._tag === "Some" && y._tag === "Some" && x.value.size === 2 && y.value.size === 2),
      "10 seconds",
      "both at size 2"
    )
    const b = yield* m2.guard
    yield* Fenced.fenced(t.body("m2", b), { assignment: b }).pipe(Effect.provideService(Membership.Membership, m2))
    const result = yield* Deferred.await(late)
    const twice = yield* t.twice
    expect(Either.isLeft(result) && (result.left as { _tag?: string })._tag).toBe("StaleAssignment")
    expect(twice).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)
