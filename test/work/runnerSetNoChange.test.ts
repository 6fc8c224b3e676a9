/**
 * A stop of slots that are not being worked (after a fence's interrupt cleared them, a view queued
 * before the fence's DeadlinePassed, read with a deadline a renewal in time moved, stops a slot and
 * starts another) leaves the set forms alone: before, it restarted them whether or not the set
 * changed, and a completed one-shot set form ran again under the very same set (a review; failed
 * before).
 */
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Scope, TestClock } from "effect"
import { makeWorkRunner } from "../../src/internal/membership/workRunner.js"

const member = { groupId: "runner", memberId: "00000000-0000-4000-8000-000000000000" }

it.scoped("a stop of a slot not worked restarts a completed one-shot set form under the same set", () =>
  Effect.gen(function*() {
    // Reachable after a fence's interrupt (which clears `active`) when a view queued before the fence's
    // DeadlinePassed, with the deadline moved by a renewal in time, stops a slot (not active any more)
    // and starts another.
    const scope = yield* Scope.make()
    const work = yield* makeWorkRunner(scope, member)
    const sets: Array<ReadonlyArray<number>> = []
    yield* work.registerSlotSet({ run: (owned) => Effect.sync(() => void sets.push(owned.slots)) }, Effect.succeed(true))
      .pipe(Scope.extend(scope))
    yield* work.startSlot({ slot: 0, generation: 1, count: 4 }, Effect.succeed(true))
    yield* TestClock.adjust("1 second")
    const before = sets.length
    yield* work.stopSlots([3])
    yield* TestClock.adjust("1 second")
    const after = sets.slice(before)
    yield* work.interrupt
    yield* Scope.close(scope, Exit.void)
    expect(after).toEqual([])
  }))

