/**
 * A task queue that outlives the runs. Run 1 enqueued a task (a plain `fenced` of run 1's slice) that
 * its consumer had not reached when the change came; run 2's consumer ran it in run 2's fiber, so it
 * fenced to run 2's assignment and committed run 1's slice under epoch 2 (an adversarial review). Now
 * `fenced` notes the run it was built in (run 1's) and refuses to run in another. The next review: a
 * work callback that builds the task without `Effect.gen` called `fenced` on the fiber that started
 * the run, which noted no run (the callback now runs on the run's fiber); and two registrations of one
 * member in one epoch, one queueing and one running, were refused a write of their common slice.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, Queue, Scope } from "effect"
import * as Fenced from "../../src/Fenced.js"
import * as Membership from "../../src/Membership.js"
import { randomGroupId } from "../support/Database.js"
import { waitForEffect } from "../support/Wait.js"
import { fast, items, StoreLive } from "./slices.js"

type Task = Effect.Effect<void, never, SqlClient.SqlClient | Membership.Membership>

/**
 * Run 1 of m1 queues a plain `fenced` of its slice (built by `produce`), which only run 2's consumer
 * runs, after m2's join; m2 writes its own slice meanwhile. The task's result, and the items written
 * twice in one epoch.
 */
const queuedAcrossAChange = (produce: (task: () => Task, tasks: Queue.Queue<Task>) => Effect.Effect<void>) =>
  Effect.gen(function*() {
    const groupId = randomGroupId("run-queued")
    const t = yield* items(groupId)
    const s1 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(s1, Exit.void))
    const m1 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(s1))
    const tasks = yield* Queue.unbounded<Task>()
    const late = yield* Deferred.make<Either.Either<void, unknown>>()
    let runs = 0
    yield* m1.whileAssigned((assignment) =>
      runs++ === 0
        ? produce(
          () =>
            Effect.either(Effect.asVoid(Fenced.fenced(t.body("m1-task", assignment)))).pipe(
              Effect.flatMap((result) => Deferred.succeed(late, result)),
              Effect.asVoid
            ),
          tasks
        ).pipe(Effect.zipRight(Effect.never))
        // each later run's consumer drains the queue
        : Effect.forever(Effect.flatten(Queue.take(tasks)))
    ).pipe(Effect.provideService(Membership.Membership, m1))
    yield* waitForEffect(Effect.map(Queue.size(tasks), (n) => n === 1), "10 seconds", "the task queued")
    const s2 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(s2, Exit.void))
    const m2 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(s2))
    const m2Wrote = yield* Deferred.make<void>()
    yield* m2.whileAssigned((b) => Effect.zipRight(Fenced.fenced(t.body("m2", b)), Deferred.succeed(m2Wrote, undefined))).pipe(
      Effect.provideService(Membership.Membership, m2)
    )
    const result = yield* Deferred.await(late)
    yield* Deferred.await(m2Wrote)
    return { result, twice: yield* t.twice }
  })

it.live("a task run 1 queued, run by run 2's consumer, is refused run 1's slice under epoch 2", () =>
  Effect.gen(function*() {
    const { result, twice } = yield* queuedAcrossAChange((task, tasks) =>
      Effect.gen(function*() {
        yield* Queue.offer(tasks, task())
      })
    )
    expect(Either.isLeft(result) && (result.left as { _tag?: string })._tag).toBe("StaleAssignment")
    expect(twice).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)

it.live("the same task built by a work callback without Effect.gen is refused too", () =>
  Effect.gen(function*() {
    // `fenced(...)` is called when the library calls the callback: it must be on the run's fiber.
    const { result, twice } = yield* queuedAcrossAChange((task, tasks) => Queue.offer(tasks, task()))
    expect(Either.isLeft(result) && (result.left as { _tag?: string })._tag).toBe("StaleAssignment")
    expect(twice).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)

it.live("two registrations of one member in one epoch, one queueing a plain fenced task and one running it: it commits", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("run-queued")
    const t = yield* items(groupId)
    const m1 = yield* Membership.make({ groupId, ...fast })
    const tasks = yield* Queue.unbounded<Task>()
    const done = yield* Deferred.make<Either.Either<void, unknown>>()
    yield* m1.whileAssigned((assignment) =>
      Effect.gen(function*() {
        yield* Queue.offer(
          tasks,
          Effect.either(Effect.asVoid(Fenced.fenced(t.body("m1-task", assignment)))).pipe(
            Effect.flatMap((result) => Deferred.succeed(done, result)),
            Effect.asVoid
          )
        )
        return yield* Effect.never
      })
    ).pipe(Effect.provideService(Membership.Membership, m1))
    yield* m1.whileAssigned(() => Effect.forever(Effect.flatten(Queue.take(tasks)))).pipe(
      Effect.provideService(Membership.Membership, m1)
    )
    const result = yield* Deferred.await(done)
    // Before: StaleAssignment, "built in a work run of member X ([0/1] in epoch 1) and runs in another
    // (member X, [0/1] in epoch 1)": the two registrations' runs were told apart by identity.
    expect(Either.isRight(result)).toBe(true)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)
