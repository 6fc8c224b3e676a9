/**
 * Outside any run: a listener that run 1 registered, run through a `FiberSet.makeRuntime` the app made
 * at start-up (the usual bridge from callbacks). Its fiber belongs to no run, and the effect was built
 * there (in the callback), so a plain `fenced` of run 1's slice fenced to the current assignment and
 * committed under epoch 2 (an adversarial review): the documented case "outside any run, pass the
 * assignment" (docs/fencing.md, "Which assignment"). With `assignment` it is refused.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, FiberSet, Scope } from "effect"
import { EventEmitter } from "node:events"
import * as Fenced from "../../src/Fenced.js"
import * as Membership from "../../src/Membership.js"
import type { Assignment } from "../../src/MemberState.js"
import { randomGroupId } from "../support/Database.js"
import { fast, items, secondMemberWrites, StoreLive } from "./slices.js"

it.live("a listener registered in run 1, run through an app-level FiberSet runtime, with the run's assignment, is refused run 1's slice under epoch 2", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("a4-fs")
    const t = yield* items(groupId)
    const s1 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(s1, Exit.void))
    const m1 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(s1))
    // The app's bridge for callbacks, made once at start-up (outside any run).
    const runFork = yield* FiberSet.makeRuntime<SqlClient.SqlClient | Membership.Membership>().pipe(
      Effect.provideService(Membership.Membership, m1)
    )
    const emitter = new EventEmitter()
    const firstRun = yield* Deferred.make<Assignment>()
    const late = yield* Deferred.make<Either.Either<void, unknown>>()
    let runs = 0
    yield* m1.whileAssigned((assignment) =>
      Effect.gen(function*() {
        if (runs++ > 0) return yield* Effect.never
        yield* Fenced.fenced(t.body("m1-run1", assignment))
        // e.g. a message arriving for this run's slice
        emitter.once("msg", () => {
          runFork(
            Effect.either(Effect.asVoid(Fenced.fenced(t.body("m1-listener", assignment), { assignment }))).pipe(
              Effect.flatMap((result) => Deferred.succeed(late, result))
            )
          )
        })
        yield* Deferred.succeed(firstRun, assignment)
        return yield* Effect.never
      })
    ).pipe(Effect.provideService(Membership.Membership, m1))
    const a = yield* Deferred.await(firstRun)
    expect([a.index, a.size]).toEqual([0, 1])
    yield* secondMemberWrites(groupId, m1, t.body)
    emitter.emit("msg")
    const result = yield* Deferred.await(late)
    const twice = yield* t.twice
    expect(Either.isLeft(result) && (result.left as { _tag?: string })._tag).toBe("StaleAssignment")
    expect(twice).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)
