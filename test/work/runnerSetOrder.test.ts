/**
 * One view's stops and starts restart the set forms (`whileOwningAll`) once, under the view's set:
 * the driver ran StopSlots in the background and StartSlot at once, so the runner started the set
 * form under {.., X, Z} first, then again under {.., Z}: two starts for one change, the first under
 * a set with a slot being given up; and a view that started three slots ran it three times (a
 * review; both failed before). Now the driver's stops come first and the set forms' starts after a
 * restart are made once, after the step's other instructions.
 */
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope, TestClock } from "effect"
import { makeWorkRunner } from "../../src/internal/membership/workRunner.js"

const member = { groupId: "runner", memberId: "00000000-0000-4000-8000-000000000000" }

it.scoped("a view stopping slot 1 and starting slot 2 starts the one-shot set form once, never under a set with slot 1", () =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const work = yield* makeWorkRunner(scope, member)
    const sets: Array<ReadonlyArray<number>> = []
    // a one-shot set form: reconciles once per set
    yield* work.registerSlotSet({ run: (owned) => Effect.sync(() => void sets.push(owned.slots)) }, Effect.succeed(true))
      .pipe(Scope.extend(scope))
    yield* work.startSlot({ slot: 0, generation: 1, count: 4 }, Effect.succeed(true))
    yield* work.startSlot({ slot: 1, generation: 1, count: 4 }, Effect.succeed(true))
    yield* TestClock.adjust("1 second")
    const before = sets.length
    // the driver on one view: Stop [1] (forked), then Start 2
    const stopping = yield* Effect.forkIn(work.stopSlots([1]), scope)
    yield* work.startSlot({ slot: 2, generation: 1, count: 4 }, Effect.succeed(true))
    const stops = yield* Fiber.join(stopping)
    yield* Effect.all([...stops.values()], { discard: true })
    yield* TestClock.adjust("1 second")
    const after = sets.slice(before)
    yield* work.interrupt
    yield* Scope.close(scope, Exit.void)
    expect(after).toEqual([[0, 2]])
  }))

it.scoped("one view starting slots 0, 1, 2 (three StartSlots) starts the one-shot set form once, under [0,1,2]", () =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const work = yield* makeWorkRunner(scope, member)
    const sets: Array<ReadonlyArray<number>> = []
    yield* work.registerSlotSet({ run: (owned) => Effect.sync(() => void sets.push(owned.slots)) }, Effect.succeed(true))
      .pipe(Scope.extend(scope))
    // the driver runs one view's StartSlot instructions one after another (driver.ts apply/execute)
    for (const slot of [0, 1, 2]) {
      yield* work.startSlot({ slot, generation: 1, count: 4 }, Effect.succeed(true))
    }
    yield* TestClock.adjust("1 second")
    yield* work.interrupt
    yield* Scope.close(scope, Exit.void)
    expect(sets).toEqual([[0, 1, 2]])
  }))
