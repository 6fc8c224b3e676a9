/**
 * One view's stops and starts restart the set forms (`whileOwningAll`) once, under the view's set:
 * the driver ran StopSlots in the background and StartSlot at once, so the runner started the set
 * form under {.., X, Z} first, then again under {.., Z}: two starts for one change, the first under
 * a set with a slot being given up; and a view that started three slots ran it three times (a
 * review; both failed before). Now the driver's stops come first and the set forms' starts after a
 * restart are made once, after the step's other instructions.
 * A stop of slots not worked (after a fence) restarts nothing (before, a completed one-shot set
 * form ran again under the same set; failed before). A view whose release (a store call) comes
 * between its stops and its starts, in the driver's `batch`, restarts them once too (a review of the
 * deferral, which let the set forms in during the release's round trip).
 */
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope, TestClock } from "effect"
import { makeWorkRunner } from "../../src/internal/membership/workRunner.js"

const member = { groupId: "runner", memberId: "00000000-0000-4000-8000-000000000000" }
const owned = (slot: number) => ({ slot, generation: 1, count: 4 })

/** A runner with a one-shot set form (reconciles once per set), and the sets it ran under. */
const withOneShotSet = Effect.gen(function*() {
  const scope = yield* Scope.make()
  const work = yield* makeWorkRunner(scope, member)
  const sets: Array<ReadonlyArray<number>> = []
  yield* work.registerSlotSet({ run: (o) => Effect.sync(() => void sets.push(o.slots)) }, Effect.succeed(true))
    .pipe(Scope.extend(scope))
  const close = Effect.zipRight(work.interrupt, Scope.close(scope, Exit.void))
  return { work, sets, scope, close }
})

it.scoped("a view stopping slot 1 and starting slot 2 starts the one-shot set form once, never under a set with slot 1", () =>
  Effect.gen(function*() {
    const { close, scope, sets, work } = yield* withOneShotSet
    yield* work.startSlot(owned(0), Effect.succeed(true))
    yield* work.startSlot(owned(1), Effect.succeed(true))
    yield* TestClock.adjust("1 second")
    const before = sets.length
    // One view: Stop [1], then Start 2 (the stop even forked, as the driver once did).
    const stopping = yield* Effect.forkIn(work.stopSlots([1]), scope)
    yield* work.startSlot(owned(2), Effect.succeed(true))
    const stops = yield* Fiber.join(stopping)
    yield* Effect.all([...stops.values()], { discard: true })
    yield* TestClock.adjust("1 second")
    const after = sets.slice(before)
    yield* close
    expect(after).toEqual([[0, 2]])
  }))

it.scoped("one view starting slots 0, 1, 2 (three StartSlots) starts the one-shot set form once, under [0,1,2]", () =>
  Effect.gen(function*() {
    const { close, sets, work } = yield* withOneShotSet
    // The driver runs one view's StartSlot instructions one after another (driver.ts apply/execute).
    for (const slot of [0, 1, 2]) yield* work.startSlot(owned(slot), Effect.succeed(true))
    yield* TestClock.adjust("1 second")
    yield* close
    expect(sets).toEqual([[0, 1, 2]])
  }))

it.scoped("a stop of a slot not worked does not restart a completed one-shot set form under the same set", () =>
  Effect.gen(function*() {
    // After a fence's interrupt (which clears the slots worked), a view queued before the fence's
    // DeadlinePassed, with the deadline moved by a renewal in time, stops a slot not worked any more.
    const { close, sets, work } = yield* withOneShotSet
    yield* work.startSlot(owned(0), Effect.succeed(true))
    yield* TestClock.adjust("1 second")
    const before = sets.length
    yield* work.stopSlots([3])
    yield* TestClock.adjust("1 second")
    const after = sets.slice(before)
    yield* close
    expect(after).toEqual([])
  }))

it.scoped("a view that stops slot 1, releases slot 3 (a store call) and starts slot 2, in one batch, runs the one-shot set form once", () =>
  Effect.gen(function*() {
    const { close, sets, work } = yield* withOneShotSet
    yield* work.startSlot(owned(0), Effect.succeed(true))
    yield* work.startSlot(owned(1), Effect.succeed(true))
    yield* TestClock.adjust("1 second")
    const before = sets.length
    // A view's actions in the driver's order (holdings.ts): Stop, Release, Retake, Start; the
    // release is a store round trip.
    const stops = yield* work.batch(Effect.gen(function*() {
      const stops = yield* work.stopSlots([1])
      yield* Effect.promise(() => new Promise<void>((r) => setTimeout(r, 1)))
      yield* work.startSlot(owned(2), Effect.succeed(true))
      return stops
    }))
    yield* Effect.all([...stops.values()], { discard: true })
    yield* TestClock.adjust("1 second")
    const after = sets.slice(before)
    yield* close
    expect(after).toEqual([[0, 2]])
  }))
