/**
 * The work runner's start checks, under the lock its interrupt takes, whether work may start (the
 * lease deadline is ahead, driver.ts). The fence timer can fire between the step that decided a
 * start and the start itself: its interrupt then finds nothing to stop, it fires once per deadline,
 * and the driver may reach its `DeadlinePassed` only after a slow reap. A start that comes after
 * the deadline must not start anything (G3). Noticed by an adversarial review.
 */
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { makeWorkRunner } from "../../src/internal/membership/workRunner.js"

const slot = { epoch: 3, index: 0, size: 2, incarnation: 1 }

it.scoped("start and startSlot start nothing when the deadline has passed (checked under the interrupt's lock)", () =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const work = yield* makeWorkRunner(scope)
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

it.scoped("a stop asked for before the slot was started again leaves the new run going, at a newer generation or the same", () =>
  Effect.gen(function*() {
    // The driver stops slots in the background (StopSlots): such a stop, still to run when the slot was
    // started again (after a stop of all the work, a fence's, then a renewal in time: at the same
    // generation, or a newer one), stopped the new run by the slot's number, and the slot stayed held
    // and unworked. A second review found the first fix (the generation compared) short for the same
    // generation.
    for (const again of [2, 1]) {
      const scope = yield* Scope.make()
      const work = yield* makeWorkRunner(scope)
      const started: Array<number> = []
      const ended: Array<number> = []
      yield* work.registerSlot({
        run: (owned) =>
          Effect.sync(() => started.push(owned.generation)).pipe(
            Effect.zipRight(Effect.never),
            Effect.onInterrupt(() => Effect.sync(() => ended.push(owned.generation)))
          )
      }, Effect.succeed(true))
      expect(yield* work.startSlot({ slot: 1, generation: 1, count: 4 }, Effect.succeed(true))).toBe(true)
      yield* Effect.yieldNow()
      // The stop is asked for this run (the driver reads the runs when it runs the instruction) ...
      const first = yield* work.slots
      yield* work.interrupt
      yield* work.awaitStopped
      expect(yield* work.startSlot({ slot: 1, generation: again, count: 4 }, Effect.succeed(true))).toBe(true)
      yield* Effect.yieldNow()
      // ... and runs only now.
      const stopping = yield* work.stopSlots(first)
      yield* stopping.get(1) ?? Effect.void
      yield* Effect.yieldNow()
      expect(started).toEqual([1, again])
      expect(ended).toEqual([1])
      expect((yield* work.slots).map((s) => [s.slot, s.generation])).toEqual([[1, again]])
      // Asked for the run going now, it stops it.
      yield* Effect.flatMap(Effect.flatMap(work.slots, work.stopSlots), (m) => m.get(1) ?? Effect.void)
      expect(ended).toEqual([1, again])
      expect(yield* work.slots).toEqual([])
      yield* Scope.close(scope, Exit.void)
    }
  }))
