/**
 * A fiber's run assignment and `Membership` across `Fiber.join` (an adversarial review of the run's
 * own membership). Effect hands a joined fiber's FiberRefs, its context among them, to the fiber that
 * joins it. `currentRunAssignment` took the joined fiber's value: a daemon of run 1 that joined a
 * fiber forked in run 2 fenced to run 2's assignment and committed run 1's old slice under epoch 2
 * (items written twice in one epoch); run 2 that joined the fiber run 1 left running was refused its
 * own slice for the rest of the run. And a daemon of group G's run that joined a fiber of group H's run
 * got H's member as its `Membership` and fenced G's old slice to H's assignment. Now a fiber keeps its
 * own run's assignment at a join, and a plain `fenced` of another membership inside a run is refused.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, Fiber, Scope } from "effect"
import * as Fenced from "../../src/Fenced.js"
import * as Membership from "../../src/Membership.js"
import type { Assignment } from "../../src/MemberState.js"
import { randomGroupId } from "../support/Database.js"
import { fast, items, secondMemberWrites, StoreLive } from "./slices.js"

it.live("a daemon of a run that joins a fiber forked outside any run is refused its old slice after a change", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("run-join")
    const t = yield* items(groupId)
    const s1 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(s1, Exit.void))
    const m1 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(s1))
    // A shared in-flight fiber, forked outside any run (e.g. a singleflight token/config loader).
    const loaded = yield* Deferred.make<string>()
    const inflight = yield* Effect.fork(Deferred.await(loaded))
    const firstRun = yield* Deferred.make<Assignment>()
    const go = yield* Deferred.make<void>()
    const late = yield* Deferred.make<Either.Either<void, unknown>>()
    let runs = 0
    yield* m1.whileAssigned((assignment) =>
      Effect.gen(function*() {
        if (runs++ > 0) return yield* Effect.never
        yield* Fenced.fenced(t.body("m1-run", assignment))
        yield* Effect.forkDaemon(
          Effect.gen(function*() {
            yield* Deferred.await(go)
            yield* Fiber.join(inflight) // the daemon waits for the shared loader
            return yield* Effect.either(Effect.asVoid(Fenced.fenced(t.body("m1-daemon", assignment))))
          }).pipe(Effect.flatMap((result) => Deferred.succeed(late, result)))
        )
        yield* Deferred.succeed(firstRun, assignment)
        return yield* Effect.never
      })
    ).pipe(Effect.provideService(Membership.Membership, m1))
    const a = yield* Deferred.await(firstRun)
    expect([a.index, a.size]).toEqual([0, 1])
    yield* secondMemberWrites(groupId, m1, t.body)
    yield* Deferred.succeed(loaded, "token")
    yield* Deferred.succeed(go, undefined)
    const result = yield* Deferred.await(late)
    const twice = yield* t.twice
    expect(Either.isLeft(result) && (result.left as { _tag?: string })._tag).toBe("StaleAssignment")
    expect(twice).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)

it.live("a daemon of run 1 that joins a fiber forked in run 2 is refused run 1's slice under run 2's epoch", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("run-join")
    const t = yield* items(groupId)
    const s1 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(s1, Exit.void))
    const m1 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(s1))
    const firstRun = yield* Deferred.make<Assignment>()
    const handoff = yield* Deferred.make<Fiber.RuntimeFiber<void>>()
    const late = yield* Deferred.make<Either.Either<void, unknown>>()
    let runs = 0
    yield* m1.whileAssigned((assignment) =>
      Effect.gen(function*() {
        const n = runs++
        if (n === 0) {
          yield* Fenced.fenced(t.body("m1-run1", assignment))
          yield* Effect.forkDaemon(
            Effect.gen(function*() {
              const f = yield* Deferred.await(handoff)
              yield* Fiber.join(f) // e.g. a result computed by the next run's worker
              return yield* Effect.either(Effect.asVoid(Fenced.fenced(t.body("m1-daemon", assignment))))
            }).pipe(Effect.flatMap((result) => Deferred.succeed(late, result)))
          )
          yield* Deferred.succeed(firstRun, assignment)
        } else if (n === 1) {
          const f = yield* Effect.forkDaemon(Effect.void)
          yield* Deferred.succeed(handoff, f)
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

it.live("a daemon of a run of group G that joins a fiber of group H's run is refused G's old slice (it does not fence H's member)", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("run-join")
    const otherGroup = randomGroupId("run-join-h")
    const t = yield* items(groupId)
    const s1 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(s1, Exit.void))
    const m1 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(s1))
    const h = yield* Membership.make({ groupId: otherGroup, ...fast }).pipe(Scope.extend(s1))
    const fromH = yield* Deferred.make<Fiber.RuntimeFiber<void>>()
    yield* h.whileAssigned(() =>
      Effect.gen(function*() {
        const f = yield* Effect.forkDaemon(Effect.void)
        yield* Deferred.succeed(fromH, f)
        return yield* Effect.never
      })
    ).pipe(Effect.provideService(Membership.Membership, h))
    const firstRun = yield* Deferred.make<Assignment>()
    const go = yield* Deferred.make<void>()
    const late = yield* Deferred.make<Either.Either<void, unknown>>()
    let runs = 0
    yield* m1.whileAssigned((assignment) =>
      Effect.gen(function*() {
        if (runs++ > 0) return yield* Effect.never
        yield* Fenced.fenced(t.body("m1-run", assignment))
        yield* Effect.forkDaemon(
          Effect.gen(function*() {
            yield* Deferred.await(go)
            yield* Fiber.join(yield* Deferred.await(fromH)) // waits for something group H's work computed
            return yield* Effect.either(Effect.asVoid(Fenced.fenced(t.body("m1-daemon", assignment))))
          }).pipe(Effect.flatMap((result) => Deferred.succeed(late, result)))
        )
        yield* Deferred.succeed(firstRun, assignment)
        return yield* Effect.never
      })
    ).pipe(Effect.provideService(Membership.Membership, m1))
    const a = yield* Deferred.await(firstRun)
    expect([a.index, a.size]).toEqual([0, 1])
    yield* secondMemberWrites(groupId, m1, t.body)
    yield* Deferred.succeed(go, undefined)
    const result = yield* Deferred.await(late)
    const twice = yield* t.twice
    expect(Either.isLeft(result) && (result.left as { _tag?: string })._tag).toBe("StaleAssignment")
    expect(twice).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)

it.live("run 2 that joins the fiber run 1 left running still fences its own slice", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("run-join")
    const s1 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(s1, Exit.void))
    const m1 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(s1))
    let previous: Fiber.RuntimeFiber<void> | undefined
    const firstRun = yield* Deferred.make<void>()
    const results = yield* Deferred.make<readonly [Assignment, Either.Either<unknown, unknown>, Either.Either<unknown, unknown>]>()
    yield* m1.whileAssigned((assignment) =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        if (previous === undefined) {
          previous = yield* Effect.forkDaemon(Effect.void) // run 1's background task
          yield* Deferred.succeed(firstRun, undefined)
          return yield* Effect.never
        }
        const before = yield* Effect.either(Fenced.fenced(sql`SELECT 1`))
        yield* Fiber.join(previous) // run 2 waits for what run 1 left running
        const after = yield* Effect.either(Fenced.fenced(sql`SELECT 1`))
        yield* Deferred.succeed(results, [assignment, before, after] as const)
        return yield* Effect.never
      })
    ).pipe(Effect.provideService(Membership.Membership, m1))
    yield* Deferred.await(firstRun)
    const s2 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(s2, Exit.void))
    yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(s2))
    const [a2, before, after] = yield* Deferred.await(results)
    expect(a2.size).toBe(2)
    expect(Either.isRight(before)).toBe(true)
    // Before: StaleAssignment, "not [0/1] in epoch 1, the assignment of the work run" (run 1's).
    expect(Either.isRight(after)).toBe(true)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)
