/**
 * The app's registered work: started under a slot on `StartWork`, interrupted on a stop or a fence.
 * The fibers live in a `FiberSet` in the work scope (closed after the final leave).
 */
import { Effect, Fiber, FiberSet, Scope } from "effect"
import type { Assignment, Slot } from "../../MemberState.js"
import { toAssignment } from "../../MemberState.js"

/** One registration of `whileAssigned`. */
export interface WorkSpec {
  readonly run: (assignment: Assignment) => Effect.Effect<void>
}

export interface WorkRunner {
  /** Starts every registered work under `slot`. */
  readonly start: (slot: Slot) => Effect.Effect<void>
  /** Interrupts the work without waiting for it. Nothing starts on its own until the next `start`. */
  readonly interrupt: Effect.Effect<void>
  /** Waits until no work fiber runs. */
  readonly awaitStopped: Effect.Effect<void>
  /**
   * Registers `spec` for as long as the caller's scope lives; starts it at once when work runs now
   * and `live` says the assignment still holds.
   */
  readonly register: (spec: WorkSpec, live: Effect.Effect<boolean>) => Effect.Effect<void, never, Scope.Scope>
}

export const makeWorkRunner = (workScope: Scope.Scope): Effect.Effect<WorkRunner> =>
  Effect.gen(function*() {
    const fibers = yield* Scope.extend(FiberSet.make<void>(), workScope)
    const specs = new Set<WorkSpec>()
    // The work fiber of each spec, while it runs. A spec never has two.
    const running = new Map<WorkSpec, Fiber.RuntimeFiber<void>>()
    // The slot work runs under, set by `start` and cleared by every interrupt (both under the lock):
    // a spec registered later starts on its own only while this is set, so it starts exactly once
    // per `start` whatever the interleaving.
    let activeSlot: Slot | undefined = undefined
    // Starting work (after checking the state) and interrupting it exclude each other, so a spec
    // registered during a renegotiation cannot slip past the stop that precedes the acknowledgement.
    const lock = yield* Effect.makeSemaphore(1)

    const startOne = (spec: WorkSpec, slot: Slot) =>
      Effect.gen(function*() {
        if (running.has(spec)) return
        // Interruptible explicitly: `whileAssigned` may start work from inside an uninterruptible
        // acquire, and a fork inherits that; such work could never be stopped at a renegotiation.
        const fiber = yield* FiberSet.run(fibers, Effect.interruptible(spec.run(toAssignment(slot))))
        running.set(spec, fiber)
        fiber.addObserver(() => {
          if (running.get(spec) === fiber) running.delete(spec)
        })
      })

    return {
      start: (slot) =>
        lock.withPermits(1)(Effect.suspend(() => {
          activeSlot = slot
          return Effect.forEach([...specs], (spec) => startOne(spec, slot), { discard: true })
        })),
      interrupt: lock.withPermits(1)(Effect.suspend(() => {
        activeSlot = undefined
        return Effect.forEach([...fibers], (f) => Fiber.interruptFork(f), { discard: true })
      })),
      awaitStopped: FiberSet.awaitEmpty(fibers),
      register: (spec, live) =>
        Effect.acquireRelease(
          lock.withPermits(1)(Effect.gen(function*() {
            specs.add(spec)
            // Only while a `start`'s work is live (and its deadline ahead): otherwise the next
            // `start` starts it.
            if (activeSlot !== undefined && (yield* live)) yield* startOne(spec, activeSlot)
          })),
          () => Effect.sync(() => specs.delete(spec))
        ).pipe(Effect.asVoid)
    }
  })
