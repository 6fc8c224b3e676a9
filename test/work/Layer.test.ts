/**
 * `Work.layerEvery` and `Work.layerAsLeader` (issue 12): registering work as a layer. The work
 * follows the assignment while the layer is alive and stops when its scope closes, while the member
 * stays in the group.
 */
import { expect, it } from "@effect/vitest"
import { Clock, Deferred, Duration, Effect, Exit, Fiber, Layer, Logger, Scope, TestClock } from "effect"
import * as InMemoryMembershipStore from "../../src/InMemoryMembershipStore.js"
import * as Membership from "../../src/Membership.js"
import type { MembershipStore } from "../../src/MembershipStore.js"
import * as Work from "../../src/Work.js"
import { advanceUntil } from "../support/TestClock.js"
import { assignment, stubMembership } from "./stub.js"

const inMemory = <A, E>(effect: Effect.Effect<A, E, MembershipStore | Scope.Scope>) =>
  Effect.provide(Effect.scoped(effect), InMemoryMembershipStore.layer)

it.effect("layerEvery and layerAsLeader run the work while the layer lives, and stop it when its scope closes", () =>
  inMemory(Effect.gen(function*() {
    const m = yield* Membership.make({ groupId: "g" })
    const ticks: Array<number> = []
    const duties: Array<string> = []
    const works = Layer.mergeAll(
      Work.layerEvery("1 second", () => Effect.map(Clock.currentTimeMillis, (at) => void ticks.push(at))),
      Work.layerAsLeader((a) => Effect.sync(() => void duties.push(`once:${a.epoch}`))),
      // A duty that runs until it is interrupted, with a slow cleanup.
      Work.layerAsLeader(Effect.acquireRelease(
        Effect.sync(() => void duties.push("loop:start")),
        () => Effect.sleep(Duration.millis(300)).pipe(Effect.zipRight(Effect.sync(() => void duties.push("loop:stopped"))))
      ).pipe(Effect.zipRight(Effect.never)))
    )
    const scope = yield* Scope.make()
    yield* Layer.buildWithScope(works, scope).pipe(Effect.provideService(Membership.Membership, m))
    yield* advanceUntil(() => ticks.length >= 3, Duration.seconds(10))
    const epoch = (yield* m.awaitAssigned).epoch
    expect(duties).toEqual([`once:${epoch}`, "loop:start"])

    // Closing the layer's scope interrupts the running duty and waits for its cleanup.
    const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
    yield* TestClock.adjust(Duration.millis(299))
    expect(closing.unsafePoll()).toBeNull()
    yield* TestClock.adjust(Duration.millis(1))
    yield* Fiber.join(closing)
    expect(duties).toEqual([`once:${epoch}`, "loop:start", "loop:stopped"])
    const before = ticks.length
    yield* TestClock.adjust(Duration.seconds(5))
    expect(ticks.length).toBe(before)
    expect((yield* m.state)._tag).toBe("Assigned")
  })))

it.effect("layerEvery refuses an invalid interval when the layer is built", () =>
  inMemory(Effect.gen(function*() {
    const m = yield* Membership.make({ groupId: "g" })
    const error = yield* Effect.flip(
      Layer.build(Work.layerEvery(0, () => Effect.void)).pipe(Effect.provideService(Membership.Membership, m))
    )
    expect(error._tag).toBe("InvalidConfig")
    expect(error.message).toMatch(/"interval"/)
  })))

it.effect("closing the scope of work that will not stop waits stopTimeout, logs an error, and goes on", () =>
  Effect.gen(function*() {
    const errors: Array<string> = []
    const logger = Logger.make(({ logLevel, message }) => {
      if (logLevel.label === "ERROR") errors.push(String(Array.isArray(message) ? message[0] : message))
    })
    yield* Effect.gen(function*() {
      const m = yield* stubMembership([assignment(1, 0, 1)]) // stopTimeout: 5 s (the default)
      const scope = yield* Scope.make()
      let started = false
      const release = yield* Deferred.make<void>()
      yield* Layer.buildWithScope(
        Work.layerAsLeader(Effect.uninterruptible(Effect.zipRight(Effect.sync(() => (started = true)), Deferred.await(release)))),
        scope
      ).pipe(Effect.provideService(Membership.Membership, m))
      yield* advanceUntil(() => started)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust(Duration.millis(4_999))
      expect(closing.unsafePoll()).toBeNull()
      yield* TestClock.adjust(Duration.millis(1))
      yield* Fiber.join(closing)
      yield* Deferred.succeed(release, undefined) // (lets the test's own cleanup finish)
    }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)), Effect.scoped)
    expect(errors).toEqual(["modulo-group: work did not stop in time when its scope closed"])
  }))
