/**
 * An assignment names the membership that handed it out (`owner`). A daemon of group G's run joined a
 * fiber of group H's run, which carried H's `Membership` into it (Effect hands a joined fiber's context
 * to the joiner); its plain `fenced` was refused, saying to pass `assignment`; with its own run's
 * assignment, which matched H's member's numbers (epoch 1, [0/1]), it fenced G's old slice against H's
 * member and committed after G had moved on (an adversarial review). Now refused: not this membership's.
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, Fiber, Scope } from "effect"
import * as Fenced from "../../src/Fenced.js"
import * as Membership from "../../src/Membership.js"
import type { Assignment } from "../../src/MemberState.js"
import { randomGroupId } from "../support/Database.js"
import { fast, items, secondMemberWrites, StoreLive } from "./slices.js"

it.live("G's daemon that joined H's run fiber, with { assignment } of its own run, is refused (the assignment is G's, not H's)", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("a4-g")
    const otherGroup = randomGroupId("a4-h")
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
            yield* Fiber.join(yield* Deferred.await(fromH))
            // As the refusal says: pass `assignment` (the one the slice was taken from).
            return yield* Effect.either(Effect.asVoid(Fenced.fenced(t.body("m1-daemon", assignment), { assignment })))
          }).pipe(Effect.flatMap((result) => Deferred.succeed(late, result)))
        )
        yield* Deferred.succeed(firstRun, assignment)
        return yield* Effect.never
      })
    ).pipe(Effect.provideService(Membership.Membership, m1))
    const a = yield* Deferred.await(firstRun)
    const hNow = yield* h.awaitAssigned
    // The attack's condition: H's member has the same numbers as G's run.
    expect([hNow.epoch, hNow.index, hNow.size]).toEqual([a.epoch, a.index, a.size])
    yield* secondMemberWrites(groupId, m1, t.body)
    yield* Deferred.succeed(go, undefined)
    const result = yield* Deferred.await(late)
    const twice = yield* t.twice
    expect(Either.isLeft(result) && (result.left as { _tag?: string })._tag).toBe("StaleAssignment")
    expect(twice).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)
