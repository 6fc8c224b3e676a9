/**
 * The lease keeper's wake-ups: a poke (renew now, for the member's own reasons) and a wake (a
 * notification arrived: renew soon, rate-limited by the lease keeper), each pending until taken,
 * repeated ones collapsing into one (as a sliding queue of one would).
 *
 * The lease keeper waits for the first of its timer, a poke and a wake once per renewal. As a race
 * of three fibers (a sleep and two queue takes, two of them interrupted each time) that wait cost a
 * member about as much CPU as the rest of its renewal (docs/benchmarks.md); here it is one
 * `Deferred` that a poke, a wake or the timer completes, and the timer is one daemon fiber that
 * sleeps on the member's `Clock` (so the `TestClock` drives it as it drove the race's sleep).
 */
import type { Fiber, FiberId } from "effect"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"

export type Reason = "timer" | "poke" | "wake"

export interface Signal {
  /** Renew now (pending until the lease keeper takes it). */
  readonly poke: Effect.Effect<void>
  /** Renew soon: a notification (pending until the lease keeper takes it). */
  readonly wake: Effect.Effect<void>
  /**
   * The first of: a pending or new poke; a pending or new wake, when `wakes`; `millis` elapsed on the
   * `Clock` (never, when undefined). A poke or wake it returns is taken (no longer pending).
   */
  readonly wait: (millis: number | undefined, options?: { readonly wakes?: boolean }) => Effect.Effect<Reason>
  /**
   * While the lease keeper's renewal is held (until `unhold`; never during a `wait`): a poke or a wake,
   * pending or new, is offered to `serve`, which answers whether the renewal will go after it (then
   * it is taken, and a poke takes a pending wake with it); otherwise it stays pending for the next
   * `wait`.
   */
  readonly hold: (serve: (reason: "poke" | "wake") => Effect.Effect<boolean>) => Effect.Effect<void>
  readonly unhold: Effect.Effect<void>
}

export const make = (): Signal => {
  let poked = false
  let woken = false
  /**
   * The wait in progress (one at a time: the lease keeper's): whether it takes wakes, and the poke
   * or wake it was handed (if any).
   */
  interface Waiter {
    readonly done: Deferred.Deferred<Reason>
    readonly wakes: boolean
    handed: "poke" | "wake" | undefined
  }
  let waiter: Waiter | undefined = undefined
  /** What a held renewal serves (`hold`), while one is held. */
  let holder: ((reason: "poke" | "wake") => Effect.Effect<boolean>) | undefined = undefined

  /** Takes what is pending, as `wait` would return it (poke first). */
  const takePending = (wakes: boolean): "poke" | "wake" | undefined => {
    if (poked) {
      poked = false
      return "poke"
    }
    if (wakes && woken) {
      woken = false
      return "wake"
    }
    return undefined
  }

  /**
   * Offers what is pending to the held renewal: taken while `serve` runs (a signal that comes
   * meanwhile is offered on its own), put back unless served.
   */
  const offer = (serve: (reason: "poke" | "wake") => Effect.Effect<boolean>) =>
    Effect.suspend(() => {
      const hadPoke = poked
      const hadWake = woken
      if (!hadPoke && !hadWake) return Effect.void
      poked = false
      woken = false
      return Effect.map(serve(hadPoke ? "poke" : "wake"), (served) => {
        if (served) return
        if (hadPoke) poked = true
        if (hadWake) woken = true
      })
    })

  /** Hands what is pending to the wait in progress, if it takes it, or offers it to a held renewal. */
  const deliver = Effect.suspend(() => {
    if (waiter === undefined) return holder === undefined ? Effect.void : offer(holder)
    const reason = takePending(waiter.wakes)
    if (reason === undefined) return Effect.void
    const handed = waiter
    waiter = undefined
    handed.handed = reason
    return Effect.asVoid(Deferred.succeed(handed.done, reason))
  })

  const poke = Effect.suspend(() => {
    poked = true
    return deliver
  })
  const wake = Effect.suspend(() => {
    woken = true
    return deliver
  })

  const interrupt = (fiber: Fiber.RuntimeFiber<unknown>, by: FiberId.FiberId) =>
    Effect.sync(() => fiber.unsafeInterruptAsFork(by))

  const wait = (millis: number | undefined, options?: { readonly wakes?: boolean }): Effect.Effect<Reason> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        const wakes = options?.wakes !== false
        const pending = takePending(wakes)
        if (pending !== undefined) return pending
        const done = yield* Deferred.make<Reason>()
        const mine: Waiter = { done, wakes, handed: undefined }
        waiter = mine
        const timer = millis === undefined
          ? undefined
          : yield* Effect.forkDaemon(Effect.zipRight(
            // Interruptible (a fork inherits the mask): the wait interrupts it once it is over.
            restore(Effect.sleep(millis)),
            Effect.suspend(() => {
              if (waiter !== mine) return Effect.void
              waiter = undefined
              return Deferred.succeed(done, "timer")
            })
          ))
        const self = yield* Effect.fiberId
        return yield* restore(Deferred.await(done)).pipe(
          Effect.onExit((exit) =>
            Effect.suspend(() => {
              if (waiter === mine) waiter = undefined
              // Interrupted after a poke or a wake was handed to it: it stays pending (not lost).
              if (Exit.isFailure(exit)) {
                if (mine.handed === "poke") poked = true
                if (mine.handed === "wake") woken = true
              }
              return timer === undefined ? Effect.void : interrupt(timer, self)
            })
          )
        )
      })
    )

  const hold = (serve: (reason: "poke" | "wake") => Effect.Effect<boolean>) =>
    Effect.suspend(() => {
      holder = serve
      return offer(serve)
    })
  const unhold = Effect.sync(() => {
    holder = undefined
  })

  return { poke, wake, wait, hold, unhold }
}
