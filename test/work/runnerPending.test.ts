/**
 * A deferred set-form start pending across a fence, a registration closed and made again, and the
 * member's close: never two set-form runs at once, none after the fence (a review's check; it held).
 */
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Scope, TestClock } from "effect"
import { makeWorkRunner } from "../../src/internal/membership/workRunner.js"

const member = { groupId: "runner", memberId: "00000000-0000-4000-8000-000000000000" }

it.scoped("deferred start pending, fence, registration closed and made again: never two set-form runs at once, none after the fence", () =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const work = yield* makeWorkRunner(scope, member)
    let running = 0
    let max = 0
    const starts: Array<ReadonlyArray<number>> = []
    const body = (slots: ReadonlyArray<number>) => Effect.suspend(() => {
      running++; max = Math.max(max, running); starts.push(slots)
      return Effect.never.pipe(Effect.onInterrupt(() =>
        Effect.uninterruptible(Effect.sleep(500)).pipe(Effect.zipRight(Effect.sync(() => void running--)))))
    })
    const reg1 = yield* Scope.make()
    yield* work.registerSlotSet({ run: (o) => body(o.slots) }, Effect.succeed(true)).pipe(Scope.extend(reg1))
    yield* work.startSlot({ slot: 0, generation: 1, count: 4 }, Effect.succeed(true))
    yield* work.startSlot({ slot: 1, generation: 1, count: 4 }, Effect.succeed(true))
    yield* TestClock.adjust(10)
    const stops = yield* work.stopSlots([1]) // deferred start pending behind the old run (500 ms)
    yield* Scope.close(reg1, Exit.void)
    const reg2 = yield* Scope.make()
    yield* work.registerSlotSet({ run: (o) => body(o.slots) }, Effect.succeed(true)).pipe(Scope.extend(reg2))
    yield* TestClock.adjust(100)
    yield* work.interrupt // the fence
    const all = yield* work.stopSlots([0, 1, 2, 3])
    const n = starts.length
    yield* TestClock.adjust(2000)
    yield* Effect.all([...stops.values(), ...all.values()], { discard: true })
    expect(starts.length).toBe(n)
    yield* work.startSlot({ slot: 0, generation: 2, count: 4 }, Effect.succeed(true))
    yield* TestClock.adjust(2000)
    expect(max).toBe(1)
    expect(starts.at(-1)).toEqual([0])
    yield* work.interrupt
    yield* TestClock.adjust(2000)
    yield* Scope.close(scope, Exit.void)
  }), 10_000)
