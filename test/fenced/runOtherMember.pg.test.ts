/**
 * Two members of one group in one process; m2's work is registered (`m2.whileAssigned`) from a fiber
 * whose context holds m1 as `Membership` (an app with a default membership layer and a second member
 * made with `Membership.make`). The work's context is the registering fiber's. An adversarial review:
 * plain `fenced` in m2's run, and in a daemon the run forked, fenced to m1's current assignment (the
 * run's own was ignored as another member's): after m3's join the daemon's write of m2's old slice
 * committed under the new epoch, beside its new holders. A run now has its own membership as
 * `Membership`; and a plain `fenced` of another member of the run's group, re-provided inside the
 * run, is refused (which slice the body writes is unknown).
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, Scope } from "effect"
import * as Fenced from "../../src/Fenced.js"
import * as Membership from "../../src/Membership.js"
import type { Assignment } from "../../src/MemberState.js"
import { randomGroupId } from "../support/Database.js"
import { waitForEffect } from "../support/Wait.js"
import { fast, items, StoreLive } from "./slices.js"


it.live("a run of m2 registered where m1 was the Membership fences to m2's run; its daemon's old slice is refused after a change", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("run-other-member")
    const sql = yield* SqlClient.SqlClient
    const t = yield* items(groupId)
    const { body } = t
    const scope = (yield* Scope.make())
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const m1 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(scope))
    yield* m1.awaitAssigned
    const m2 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(scope))
    const firstRun = yield* Deferred.make<Assignment>()
    const go = yield* Deferred.make<void>()
    const late = yield* Deferred.make<Either.Either<void, unknown>>()
    let runs = 0
    // Registered from a fiber whose Membership is m1 (as an app with a default membership layer would).
    yield* m2.whileAssigned((assignment) =>
      Effect.gen(function*() {
        if (runs++ > 0) return yield* Effect.never
        yield* Fenced.fenced(body("m2-run", assignment))
        yield* Effect.forkDaemon(
          Effect.zipRight(Deferred.await(go), Effect.either(Effect.asVoid(Fenced.fenced(body("m2-daemon", assignment))))).pipe(
            Effect.flatMap((result) => Deferred.succeed(late, result))
          )
        )
        yield* Deferred.succeed(firstRun, assignment)
        return yield* Effect.never
      })
    ).pipe(Effect.provideService(Membership.Membership, m1), Scope.extend(scope))
    const a = yield* Deferred.await(firstRun)
    expect(a.size).toBe(2)
    // m3 joins: everyone moves to size 3.
    const m3 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(scope))
    yield* waitForEffect(
      Effect.map(Effect.all([m1.assignment, m2.assignment, m3.assignment]), (xs) => xs.every((x) => x._tag === "Some" && x.value.size === 3)),
      "10 seconds",
      "all at size 3"
    )
    for (const [name, m] of [["m1", m1], ["m2", m2], ["m3", m3]] as const) {
      const b = yield* m.guard
      yield* Fenced.fenced(body(name, b), { assignment: b }).pipe(Effect.provideService(Membership.Membership, m))
    }
    yield* Deferred.succeed(go, undefined)
    const result = yield* Deferred.await(late)
    // Before: Right (fenced to m1's current assignment), items 1, 3, 5, 7, 9 written twice in epoch 3.
    expect(Either.isLeft(result) && (result.left as { _tag?: string })._tag).toBe("StaleAssignment")
    const twice = yield* t.twice
    expect(twice).toEqual([])
    // m2's run wrote m2's slice of epoch 2 (fenced to its own run), not m1's.
    const runRows = yield* sql<{ slice: string }>`SELECT DISTINCT slice FROM ${sql(t.written)} WHERE member = 'm2-run'`
    expect(runRows.map((r) => r.slice)).toEqual([`[${a.index}/2] of epoch ${a.epoch}`])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 40_000)

it.live("inside m2's run, a plain fenced under m1 (same group, re-provided) is refused while nothing has moved", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("run-other-member")
    const sql = yield* SqlClient.SqlClient
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const m1 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(scope))
    yield* m1.awaitAssigned
    const m2 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(scope))
    const results = yield* Deferred.make<readonly [Either.Either<unknown, unknown>, Either.Either<unknown, unknown>]>()
    yield* m2.whileAssigned(() =>
      Effect.gen(function*() {
        const underM1 = yield* Effect.either(Fenced.fenced(sql`SELECT 1`).pipe(Effect.provideService(Membership.Membership, m1)))
        const own = yield* Effect.either(Fenced.fenced(sql`SELECT 1`))
        yield* Deferred.succeed(results, [underM1, own] as const)
        return yield* Effect.never
      })
    ).pipe(Effect.provideService(Membership.Membership, m1), Scope.extend(scope))
    const [underM1, own] = yield* Deferred.await(results)
    expect(Either.isLeft(underM1) && (underM1.left as { _tag?: string })._tag).toBe("StaleAssignment")
    expect(Either.isLeft(underM1) && String((underM1.left as { reason?: string }).reason)).toMatch(/work run of member .* but fences member .*pass `assignment`/)
    expect(Either.isRight(own)).toBe(true)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 40_000)

it.live("inside m2's run, a plain fenced under a membership that has left is refused for being another's, not for its state", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("run-other-member")
    const sql = yield* SqlClient.SqlClient
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    // Another group's member, gone before the run calls `fenced` under it: its own state would refuse
    // the call too, but the reason a caller can act on is that it is not the run's membership (CI once
    // reported "the member is awaiting epoch 1" for a member mid-join instead).
    const gone = yield* Scope.make()
    const m0 = yield* Membership.make({ groupId: randomGroupId("run-other-gone"), ...fast }).pipe(Scope.extend(gone))
    yield* m0.awaitAssigned
    yield* Scope.close(gone, Exit.void)
    const m2 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(scope))
    const results = yield* Deferred.make<Either.Either<unknown, unknown>>()
    yield* m2.whileAssigned(() =>
      Effect.gen(function*() {
        const underM0 = yield* Effect.either(Fenced.fenced(sql`SELECT 1`).pipe(Effect.provideService(Membership.Membership, m0)))
        yield* Deferred.succeed(results, underM0)
        return yield* Effect.never
      })
    ).pipe(Scope.extend(scope))
    const underM0 = yield* Deferred.await(results)
    expect(Either.isLeft(underM0) && (underM0.left as { _tag?: string })._tag).toBe("StaleAssignment")
    expect(Either.isLeft(underM0) && String((underM0.left as { reason?: string }).reason)).toMatch(/work run of member .* but fences member .*pass `assignment`/)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 40_000)
