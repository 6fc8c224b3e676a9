/**
 * A slot's stop waits for every per-slot run of it that a stop interrupted and that has not ended:
 * also when the slot is named twice in one `stopSlots`, or stopped again while its run still cleans
 * up. A review found both returning at once while the run went on (the second entry found the slot's
 * runs taken by the first). Latent: the driver names a slot once and stops only slots it works; a
 * stop reported early would let the slot's next owner start beside the run (G2). Failed before.
 */
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope, TestClock } from "effect"
import { makeWorkRunner } from "../../src/internal/membership/workRunner.js"

const member = { groupId: "runner", memberId: "00000000-0000-4000-8000-000000000000" }

/** A runner working slot 1 with per-slot work whose cleanup takes 1 s; `ended` once it has. */
const slowSlotWork = Effect.gen(function*() {
  const scope = yield* Scope.make()
  const work = yield* makeWorkRunner(scope, member)
  const state = { ended: false }
  yield* work.registerSlot({
    run: () => Effect.never.pipe(Effect.onInterrupt(() => Effect.sleep(1000).pipe(Effect.zipRight(Effect.sync(() => void (state.ended = true))))))
  }, Effect.succeed(true)).pipe(Scope.extend(scope))
  yield* work.startSlot({ slot: 1, generation: 1, count: 4 }, Effect.succeed(true))
  yield* TestClock.adjust(10)
  const close = Effect.zipRight(work.interrupt, Scope.close(scope, Exit.void))
  return { work, state, close }
})

/** Whether `wait` finished while the cleanup still ran (10 ms into it), then lets it end. */
const reportedEarly = (wait: Effect.Effect<void>, state: { readonly ended: boolean }) =>
  Effect.gen(function*() {
    const waited = yield* Effect.fork(wait)
    yield* TestClock.adjust(10)
    const early = waited.unsafePoll() !== null && !state.ended
    yield* TestClock.adjust(2000)
    yield* Fiber.join(waited)
    return early
  })

it.scoped("a slot named twice in one stopSlots: its stop waits for its per-slot work", () =>
  Effect.gen(function*() {
    const { close, state, work } = yield* slowSlotWork
    const stops = yield* work.stopSlots([1, 1])
    expect(yield* reportedEarly(stops.get(1)!, state)).toBe(false)
    yield* close
  }))

it.scoped("a slot stopped again while its run still cleans up: the second stop waits for it too", () =>
  Effect.gen(function*() {
    const { close, state, work } = yield* slowSlotWork
    const first = yield* work.stopSlots([1])
    const second = yield* work.stopSlots([1])
    expect(yield* reportedEarly(second.get(1)!, state)).toBe(false)
    yield* first.get(1)!
    yield* close
  }))
