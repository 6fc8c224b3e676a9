/**
 * An effect is a value: a `fenced` built in one work run can be run on a fiber of another. A runtime
 * captured in run 2, provided in (`Effect.provide(runtime)`) or run on (`Runtime.runPromise`) by a
 * daemon of run 1: the runtime's fiber refs are patched in, not joined, and the daemon's plain `fenced`
 * of run 1's slice fenced to run 2's assignment and committed under epoch 2 (an adversarial review).
 * Now `fenced` notes the run it was built in, and refuses to run in another.
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, Runtime, Scope } from "effect"
import * as Fenced from "../../src/Fenced.js"
import * as Membership from "../../src/Membership.js"
import type { Assignment } from "../../src/MemberState.js"
import { randomGroupId } from "../support/Database.js"
import { fast, items, secondMemberWrites, StoreLive } from "./slices.js"

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
    yield* secondMemberWrites(groupId, m1, t.body)
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
    yield* secondMemberWrites(groupId, m1, t.body)
    const result = yield* Deferred.await(late)
    const twice = yield* t.twice
    expect(Either.isLeft(result) && (result.left as { _tag?: string })._tag).toBe("StaleAssignment")
    expect(twice).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)
