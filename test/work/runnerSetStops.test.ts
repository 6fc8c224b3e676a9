/**
 * G2, on the work runner alone: a set form interrupted by one restart (a `startSlot`, which gives
 * nothing up) and still stopping is waited for by a later `stopSlots` of a slot it covers, also
 * after a fence's interrupt. Before, a stop waited only for the set forms its own restart
 * interrupted, and the slot went to its next owner while the set form under {0,1} still ran (a
 * review; both tests failed before).
 */
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope, TestClock } from "effect"
import { makeWorkRunner } from "../../src/internal/membership/workRunner.js"

it.scoped("a slot's stop waits for a set form covering it that an earlier restart interrupted", () =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const work = yield* makeWorkRunner(scope, { groupId: "runner", memberId: "00000000-0000-4000-8000-000000000000" })
    const sets: Array<{ slots: ReadonlyArray<number>; end?: number }> = []
    yield* work.registerSlotSet({
      run: (owned) =>
        Effect.suspend(() => {
          const r: { slots: ReadonlyArray<number>; end?: number } = { slots: owned.slots }
          sets.push(r)
          // A cleanup of 10 s (within a generous fenceMargin).
          return Effect.never.pipe(Effect.onInterrupt(() =>
            Effect.sleep("10 seconds").pipe(Effect.zipRight(Effect.sync(() => void (r.end = Date.now()))))
          ))
        })
    }, Effect.succeed(true))
    yield* work.startSlot({ slot: 0, generation: 1, count: 4 }, Effect.succeed(true))
    yield* work.startSlot({ slot: 1, generation: 1, count: 4 }, Effect.succeed(true))
    yield* TestClock.adjust("20 seconds")
    // the set form under {0,1} runs
    const current = sets[sets.length - 1]
    expect(current.slots).toEqual([0, 1])
    expect(current.end).toBeUndefined()
    // A slot gained: the set form under {0,1} is interrupted, cleaning up for 10 s; restart pending.
    yield* work.startSlot({ slot: 2, generation: 1, count: 4 }, Effect.succeed(true))
    yield* TestClock.adjust("1 second")
    // Then slot 0 is given up (the next rebalance): its stop must wait for the set form under {0,1}.
    const stops = yield* work.stopSlots([0])
    const waited = yield* Effect.fork(stops.get(0) ?? Effect.void)
    yield* TestClock.adjust("1 second")
    const reportedStoppedWhileSetRuns = waited.unsafePoll() !== null && current.end === undefined
    yield* TestClock.adjust("20 seconds")
    yield* Fiber.join(waited)
    yield* work.interrupt
    yield* TestClock.adjust("20 seconds")
    yield* work.awaitStopped
    yield* Scope.close(scope, Exit.void)
    expect({ reportedStoppedWhileSetRuns }).toEqual({ reportedStoppedWhileSetRuns: false })
  }))

it.scoped("the fence's stop of every slot waits for a set form an earlier restart interrupted", () =>
  Effect.gen(function*() {
    // The same gap at the deadline: the fence interrupts (a set form already stopping from a restart
    // is in `stoppingSets`, not `perSet`), then StopSlots of every slot: their stops are reported, and
    // the slots released (to a member that starts them at once), while the set form still runs.
    const scope = yield* Scope.make()
    const work = yield* makeWorkRunner(scope, { groupId: "runner", memberId: "00000000-0000-4000-8000-000000000000" })
    let ended = false
    let started = 0
    yield* work.registerSlotSet({
      run: () =>
        Effect.suspend(() => {
          const first = started++ === 0
          return Effect.never.pipe(Effect.onInterrupt(() =>
            first ? Effect.sleep("10 seconds").pipe(Effect.zipRight(Effect.sync(() => void (ended = true)))) : Effect.void
          ))
        })
    }, Effect.succeed(true))
    yield* work.startSlot({ slot: 0, generation: 1, count: 4 }, Effect.succeed(true))
    yield* TestClock.adjust("1 second")
    yield* work.startSlot({ slot: 1, generation: 1, count: 4 }, Effect.succeed(true))
    yield* TestClock.adjust("1 second")
    yield* work.interrupt
    const stops = yield* work.stopSlots([0, 1])
    const waited = yield* Effect.fork(Effect.all([...stops.values()], { discard: true }))
    yield* TestClock.adjust("1 second")
    const reportedStoppedWhileSetRuns = waited.unsafePoll() !== null && !ended
    yield* TestClock.adjust("20 seconds")
    yield* Fiber.join(waited)
    yield* work.awaitStopped
    yield* Scope.close(scope, Exit.void)
    expect({ reportedStoppedWhileSetRuns }).toEqual({ reportedStoppedWhileSetRuns: false })
  }))
