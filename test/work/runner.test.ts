/**
 * The work runner's start checks, under the lock its interrupt takes, whether work may start (the
 * lease deadline is ahead, driver.ts). The fence timer can fire between the step that decided a
 * start and the start itself: its interrupt then finds nothing to stop, it fires once per deadline,
 * and the driver may reach its `DeadlinePassed` only after a slow reap. A start that comes after
 * the deadline must not start anything (G3). Noticed by an adversarial review.
 */
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope, TestClock } from "effect"
import { makeWorkRunner } from "../../src/internal/membership/workRunner.js"

const slot = { epoch: 3, index: 0, size: 2, incarnation: 1 }

it.scoped("start and startSlot start nothing when the deadline has passed (checked under the interrupt's lock)", () =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const work = yield* makeWorkRunner(scope, { groupId: "runner", memberId: "00000000-0000-4000-8000-000000000000" })
    let runs = 0
    let slotRuns = 0
    const counted = Effect.sync(() => runs++).pipe(Effect.zipRight(Effect.never))
    yield* work.register({ run: () => counted }, Effect.succeed(true))
    yield* work.registerSlot({ run: () => Effect.sync(() => slotRuns++).pipe(Effect.zipRight(Effect.never)) }, Effect.succeed(true))

    // The fence fired (its interrupt found nothing), then the driver runs the start: nothing starts.
    yield* work.interrupt
    yield* work.start(slot, Effect.succeed(false))
    expect(yield* work.startSlot({ slot: 1, generation: 1, count: 4 }, Effect.succeed(false))).toBe(false)
    yield* Effect.yieldNow()
    expect([runs, slotRuns]).toEqual([0, 0])
    expect(yield* work.slots).toEqual([])

    // With the deadline ahead, they start.
    yield* work.start(slot, Effect.succeed(true))
    expect(yield* work.startSlot({ slot: 1, generation: 1, count: 4 }, Effect.succeed(true))).toBe(true)
    yield* Effect.yieldNow()
    expect([runs, slotRuns]).toEqual([1, 1])
    yield* work.interrupt
    yield* work.awaitStopped
  }))

it.scoped("a slot's stop after the fence's interrupt waits for the slot's work that will not stop", () =>
  Effect.gen(function*() {
    // At the deadline the fence interrupts every fiber and clears the slots started (`interrupt`); the
    // driver's StopSlots comes after. A second review found that a stop checking the run against the
    // slots started (their generation, then each start's object) skipped such a slot and reported it
    // stopped at once, while its work still ran: the slot was released, and another member started it
    // beside that work (G2; test/slots/fenceStuckSlot.test.ts end to end).
    const scope = yield* Scope.make()
    const work = yield* makeWorkRunner(scope, { groupId: "runner", memberId: "00000000-0000-4000-8000-000000000000" })
    let ended = false
    yield* work.registerSlot({
      run: () => Effect.never.pipe(Effect.onInterrupt(() => Effect.sleep("15 seconds").pipe(Effect.zipRight(Effect.sync(() => void (ended = true))))))
    }, Effect.succeed(true))
    expect(yield* work.startSlot({ slot: 1, generation: 1, count: 4 }, Effect.succeed(true))).toBe(true)
    yield* Effect.yieldNow()
    yield* work.interrupt
    const stopping = yield* work.stopSlots([1])
    const waited = yield* Effect.fork(stopping.get(1) ?? Effect.void)
    yield* TestClock.adjust("10 seconds")
    expect(waited.unsafePoll()).toBeNull()
    yield* TestClock.adjust("5 seconds")
    yield* Fiber.join(waited)
    expect(ended).toBe(true)
    yield* Scope.close(scope, Exit.void)
  }))
