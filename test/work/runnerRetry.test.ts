/**
 * The retry of a refused start (workRunner.ts `refused` -> `startMissing`) starts registered work
 * that has not run under the current start, never work whose run has already completed: a one-shot
 * `whileAssigned` (or `whileOwning`) run ran a second time in the same epoch only because another
 * registration was refused at the deadline's instant (a review; both tests failed before).
 */
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Scope, TestClock } from "effect"
import type { WorkRunner } from "../../src/internal/membership/workRunner.js"
import { makeWorkRunner } from "../../src/internal/membership/workRunner.js"

const slot = { epoch: 3, index: 0, size: 2, incarnation: 1 }

/**
 * A one-shot run registered with `register` (and started by `start`), completed; then a second
 * registration refused at the deadline's instant, and a renewal in time: how many times the
 * one-shot ran.
 */
const oneShotRuns = (
  register: (work: WorkRunner, run: () => Effect.Effect<void>, live: Effect.Effect<boolean>) => Effect.Effect<void, never, Scope.Scope>,
  start: (work: WorkRunner) => Effect.Effect<boolean>
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const work = yield* makeWorkRunner(scope, { groupId: "runner", memberId: "00000000-0000-4000-8000-000000000000" })
    let oneShot = 0
    yield* register(work, () => Effect.sync(() => void oneShot++), Effect.succeed(true)).pipe(Scope.extend(scope))
    yield* start(work)
    yield* TestClock.adjust("1 second")
    expect(oneShot).toBe(1)
    // A second registration at the deadline's instant: refused; a renewal in time then moves the deadline.
    let ahead = false
    yield* register(work, () => Effect.never, Effect.sync(() => ahead)).pipe(Scope.extend(scope))
    ahead = true
    yield* TestClock.adjust("1 second")
    const runs = oneShot
    yield* work.interrupt
    yield* Scope.close(scope, Exit.void)
    return runs
  })

it.scoped("a completed run is not started again by the retry of another registration's refused start", () =>
  Effect.map(
    oneShotRuns((work, run, live) => work.register({ run }, live), (work) => work.start(slot, Effect.succeed(true))),
    (runs) => expect(runs).toBe(1)
  ))

it.scoped("a completed slot run is not started again by the retry of another registration's refused start", () =>
  Effect.map(
    oneShotRuns(
      (work, run, live) => work.registerSlot({ run }, live),
      (work) => work.startSlot({ slot: 1, generation: 1, count: 4 }, Effect.succeed(true))
    ),
    (runs) => expect(runs).toBe(1)
  ))
