/**
 * The driver's step (`batch`) holds every set-form start until it ends, whichever path makes it: a
 * start forked before the batch (pending behind a slow-stopping run of an earlier restart), a
 * registration made during it, a retry of a refused start due during it. Before, only restarts
 * inside the batch were held, and these ran the set form under the set in between a view's stops and
 * starts (during its release's store call), then again after (a review; all three failed before).
 */
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope, TestClock } from "effect"
import type { WorkRunner } from "../../src/internal/membership/workRunner.js"
import { makeWorkRunner } from "../../src/internal/membership/workRunner.js"

const member = { groupId: "runner", memberId: "00000000-0000-4000-8000-000000000000" }
const owned = (slot: number) => ({ slot, generation: 1, count: 8 })

/** Lets the forked view end and its stops complete, then stops the runner. */
const settle = (work: WorkRunner, scope: Scope.CloseableScope, step: Fiber.Fiber<ReadonlyMap<number, Effect.Effect<void>>>) =>
  Effect.gen(function*() {
    yield* TestClock.adjust(2000)
    const stops = yield* Fiber.join(step)
    yield* Effect.all([...stops.values()], { discard: true })
    yield* TestClock.adjust(2000)
    yield* work.interrupt
    yield* Scope.close(scope, Exit.void)
  })

/** One view in the driver's step, forked: stop `stop`, release it (a store call of 1 s), start `start`. */
const view = (work: WorkRunner, stop: number, start: number) =>
  Effect.fork(work.batch(Effect.gen(function*() {
    const stops = yield* work.stopSlots([stop])
    yield* Effect.sleep(1000) // the release's round trip
    yield* work.startSlot(owned(start), Effect.succeed(true))
    return stops
  })))

it.scoped("a start pending from the previous step does not run the set form under the set in between a batch's stop and start", () =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const work = yield* makeWorkRunner(scope, member)
    const sets: Array<ReadonlyArray<number>> = []
    // A set form that records its set and takes 500 ms to stop (cleanup).
    yield* work.registerSlotSet({
      run: (o) => Effect.suspend(() => {
        sets.push(o.slots)
        return Effect.never.pipe(Effect.onInterrupt(() => Effect.uninterruptible(Effect.sleep(500))))
      })
    }, Effect.succeed(true)).pipe(Scope.extend(scope))
    yield* work.batch(Effect.forEach([0, 1, 2], (s) => work.startSlot(owned(s), Effect.succeed(true))))
    yield* TestClock.adjust(10)
    expect(sets).toEqual([[0, 1, 2]])
    // Step A (one view): stop slot 2. The old run takes 500 ms to stop; the restart is forked at the batch's end.
    const stopsA = yield* work.batch(work.stopSlots([2]))
    yield* TestClock.adjust(100)
    // Step B (the next view): stop slot 1, release it (a store call of 1 s), start slot 3.
    const stepB = yield* view(work, 1, 3)
    yield* TestClock.adjust(2000)
    const stopsB = yield* Fiber.join(stepB)
    yield* TestClock.adjust(2000)
    yield* Effect.all([...stopsA.values(), ...stopsB.values()], { discard: true })
    const after = sets.slice(1)
    yield* work.interrupt
    yield* TestClock.adjust(2000)
    yield* Scope.close(scope, Exit.void)
    // Step A's set {0,1}, never started (step B came first) is fine; then only step B's set {0,3}.
    // Before: [[0], [0, 3]]: a run under {0} (slot 1 stopped, slot 3 not yet started) mid-batch.
    expect(after).toEqual([[0, 3]]) // no run under {0}, the set in between
  }), 10_000)

it.scoped("a set form registered while a batch is between its stop and its start runs once, under the set the batch leaves", () =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const work = yield* makeWorkRunner(scope, member)
    const sets: Array<ReadonlyArray<number>> = []
    yield* work.batch(Effect.forEach([0, 1], (s) => work.startSlot(owned(s), Effect.succeed(true))))
    yield* TestClock.adjust(10)
    const step = yield* view(work, 1, 2)
    yield* TestClock.adjust(100)
    // The app registers a one-shot set form meanwhile (its own fiber).
    yield* work.registerSlotSet({ run: (o) => Effect.sync(() => void sets.push(o.slots)) }, Effect.succeed(true))
      .pipe(Scope.extend(scope))
    yield* settle(work, scope, step)
    // Before: [[0], [0, 2]].
    expect(sets).toEqual([[0, 2]])
  }), 10_000)

it.scoped("a refused set-form start's retry, due while a batch is between its stop and its start, runs it once, under the set the batch leaves", () =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const work = yield* makeWorkRunner(scope, member) // retryMs = 50
    const sets: Array<ReadonlyArray<number>> = []
    let live = false // e.g. the deadline's instant: refused, looked at again every 50 ms
    yield* work.batch(Effect.forEach([0, 1], (s) => work.startSlot(owned(s), Effect.succeed(true))))
    yield* work.registerSlotSet({ run: (o) => Effect.sync(() => void sets.push(o.slots)) }, Effect.sync(() => live))
      .pipe(Scope.extend(scope))
    yield* TestClock.adjust(10)
    expect(sets).toEqual([])
    live = true // a renewal in time moved the deadline
    const step = yield* view(work, 1, 2)
    yield* settle(work, scope, step)
    expect(sets).toEqual([[0, 2]])
  }), 10_000)
