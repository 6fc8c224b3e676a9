/**
 * A batch that ends by an interruption or a defect mid-step still starts the set forms it held, under
 * the set it leaves, never two at once; nested batches hold them until the outer one ends (a
 * review's checks; they held).
 */
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope, TestClock } from "effect"
import { makeWorkRunner } from "../../src/internal/membership/workRunner.js"

const member = { groupId: "runner", memberId: "00000000-0000-4000-8000-000000000000" }
const owned = (slot: number) => ({ slot, generation: 1, count: 8 })

for (const end of ["interrupt", "defect", "nested"] as const) {
  it.scoped(`held starts made after a batch that ends by ${end}`, () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const work = yield* makeWorkRunner(scope, member)
      const sets: Array<ReadonlyArray<number>> = []
      let running = 0, max = 0
      yield* work.registerSlotSet({ run: (o) => Effect.suspend(() => {
        sets.push(o.slots); running++; max = Math.max(max, running)
        return Effect.never.pipe(Effect.ensuring(Effect.sync(() => void running--)))
      }) }, Effect.succeed(true)).pipe(Scope.extend(scope))
      yield* work.batch(Effect.forEach([0, 1], (s) => work.startSlot(owned(s), Effect.succeed(true))))
      yield* TestClock.adjust(10)
      const body = Effect.gen(function*() {
        yield* work.stopSlots([1])
        if (end === "defect") return yield* Effect.die("bug")
        if (end === "nested") return yield* work.batch(work.startSlot(owned(2), Effect.succeed(true)))
        yield* Effect.never
      })
      const f = yield* Effect.fork(work.batch(body))
      yield* TestClock.adjust(10)
      if (end === "interrupt") yield* Fiber.interrupt(f)
      else yield* Fiber.await(f)
      yield* TestClock.adjust(1000)
      expect(sets.at(-1)).toEqual(end === "nested" ? [0, 2] : [0])
      expect(max).toBe(1)
      yield* work.interrupt
      yield* Scope.close(scope, Exit.void)
    }))
}
