/**
 * The runner's contract (not reached from the driver, which interrupts before every new StartWork):
 * a `start` under another assignment, without an interrupt, starts every registered work under it,
 * also a one-shot run that completed under the earlier one (a review; failed before).
 */
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Scope, TestClock } from "effect"
import { makeWorkRunner } from "../../src/internal/membership/workRunner.js"

const member = { groupId: "runner", memberId: "00000000-0000-4000-8000-000000000000" }

it.scoped("a second start without an interrupt starts a completed one-shot again (the runner's contract: under the start)", () =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const work = yield* makeWorkRunner(scope, member)
    const seen: Array<number> = []
    yield* work.register({ run: (a) => Effect.sync(() => void seen.push(a.epoch)) }, Effect.succeed(true)).pipe(Scope.extend(scope))
    yield* work.start({ epoch: 3, index: 0, size: 2, incarnation: 1 }, Effect.succeed(true))
    yield* TestClock.adjust("1 second")
    yield* work.start({ epoch: 4, index: 0, size: 2, incarnation: 1 }, Effect.succeed(true))
    yield* TestClock.adjust("1 second")
    yield* work.interrupt
    yield* Scope.close(scope, Exit.void)
    expect(seen).toEqual([3, 4])
  }))
