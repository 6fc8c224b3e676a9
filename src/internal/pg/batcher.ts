/**
 * Group commit for the heartbeats of one store (issue 15): the members of a process queue their
 * renewals here, and one statement renews everything queued (`Statements.renewLeases`).
 *
 * - A request goes at once when no batch is in flight; requests that come while one is in flight
 *   wait for it and go together in the next. A request may also be **held** up to `holdMs` (a plain
 *   periodic renewal: its member renews early enough for that, see leaseKeeper.ts), so that requests
 *   with random phases share a statement; any request that is due takes every queued one with it.
 *   Its caller can send a held request early (`submit`'s `early`: its member was poked or woken).
 * - A key (a member) is never twice in one batch and never in flight twice: its next request waits
 *   in the queue until the one in flight has ended (its batch, or the single statement that followed
 *   it), or until `patienceMs` after that one was sent (a statement still running then is on a dead
 *   connection: the server's bound would have ended it).
 * - A request whose caller stops waiting before it was taken into a batch is dropped (nothing sent).
 *   Once taken, its statement runs to its end (never interrupted: see noCancel.ts).
 * - A batch in flight longer than `flightMs` no longer holds the next one back.
 * - A caller may bound its wait (`bound`): past it, it gets its timeout at once, through its answer's
 *   own `Deferred` (one watchdog fiber per batcher ends such waits); its request is dropped if not yet
 *   taken, else its statement runs on.
 *
 * The batcher runs its statements in fibers of its own (daemons), so a caller's timeout never
 * interrupts a batch that also carries other members' renewals.
 *
 * Every time it reads and every wait it sleeps is on one clock, the store's (`clock`), and on its
 * monotonic reading (`currentTimeNanos`), never the wall clock: a step of the host's clock (NTP)
 * moved every deadline by its size (a bound a minute late after a step back of a minute, every
 * pending bound at once after a step forward), and callers on clocks of their own (members whose
 * clocks are skewed, in tests) armed the one watchdog on different clocks.
 */
import type { Clock, Fiber } from "effect"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { monotonicMillisOf } from "../clock.js"

/** What the batch statement gives one request: its answer, or a statement of its own to run next. */
export type Outcome<A, E> =
  | { readonly _tag: "Done"; readonly value: A }
  | { readonly _tag: "Alone"; readonly effect: Effect.Effect<A, E> }

interface Entry<Req, A, E> {
  readonly key: string
  readonly req: Req
  due: number
  readonly done: Deferred.Deferred<A, E>
  taken: boolean
}

export interface Batcher<Req, A, E> {
  /**
   * Queues `req` for `key`, held at most `holdMs`; its answer. With `bound`, the caller waits at most
   * `bound.ms` for it, then gets `bound.onTimeout()`: a request not yet sent is dropped, one sent runs
   * on in its batch's fiber (never interrupted), its answer going nowhere. With `early`, once queued,
   * the caller is handed an effect that sends the request at once (`sendNow`, below).
   */
  readonly submit: (
    key: string,
    req: Req,
    holdMs: number,
    bound?: { readonly ms: number; readonly onTimeout: () => E } | undefined,
    early?: ((sendNow: Effect.Effect<boolean>) => Effect.Effect<void>) | undefined
  ) => Effect.Effect<A, E>
  /** Batches sent so far (tests, docs). */
  readonly batches: () => number
}

/**
 * A timer that runs `onWake` once the earliest time it was armed for has come: arming it for a
 * later time than it is armed for does nothing; for an earlier one, it sleeps until then instead
 * (the fiber armed before is interrupted, or, if its fork has not returned yet, wakes at its time and
 * finds it is not the one armed). One fiber at a time, sleeping on `clock`.
 */
const alarm = (clock: Clock.Clock, onWake: Effect.Effect<void>) => {
  let armed: { readonly at: number; fiber?: Fiber.RuntimeFiber<void> } | undefined = undefined
  return (at: number, now: number): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (armed !== undefined && armed.at <= at) return Effect.void
      const previous = armed
      const mine: { readonly at: number; fiber?: Fiber.RuntimeFiber<void> } = { at }
      armed = mine
      return Effect.flatMap(
        Effect.forkDaemon(Effect.zipRight(
          // Interruptible: a fork inherits the mask of its caller (`submit`'s is uninterruptible).
          Effect.interruptible(clock.sleep(Duration.millis(Math.max(0, at - now)))),
          Effect.suspend(() => {
            if (armed === mine) armed = undefined
            return onWake
          })
        )),
        (fiber) =>
          Effect.sync(() => {
            mine.fiber = fiber
            previous?.fiber?.unsafeInterruptAsFork(fiber.id())
          })
      )
    })
}

export const make = <Req, A, E>(
  send: (reqs: ReadonlyArray<Req>) => Effect.Effect<ReadonlyArray<Outcome<A, E>>, E>,
  options: {
    readonly flightMs: number
    readonly patienceMs: number
    /** The clock of every time the batcher reads and every wait it sleeps (the store's). */
    readonly clock: Clock.Clock
  }
): Batcher<Req, A, E> => {
  const currentMillis = monotonicMillisOf(options.clock)
  let queue: Array<Entry<Req, A, E>> = []
  /** Keys in flight, with the time their statement was sent; a token per flight. */
  const inFlight = new Map<string, { readonly since: number }>()
  /** The batch statement in flight, if any (its start). */
  let sending: number | undefined = undefined
  let sent = 0

  // Callers waiting with a bound, until answered or past it. One fiber of the batcher's (the
  // watchdog) ends the waits past their bound: it sleeps until the earliest deadline it was armed
  // for, ends the waits due, and arms itself for the earliest one left. A call that gets its answer
  // in time only leaves the set: a renewal costs no timer fiber of its own, and while renewals go
  // on the watchdog wakes about once per bound.
  interface Bounded {
    readonly deadline: number
    readonly expire: Effect.Effect<void>
  }
  const bounded = new Set<Bounded>()
  // The watchdog.
  const arm = alarm(options.clock, Effect.suspend(() => expireDue))

  const expireDue: Effect.Effect<void> = Effect.flatMap(currentMillis, (now) => {
    const due: Array<Effect.Effect<void>> = []
    let next = Infinity
    for (const b of bounded) {
      if (b.deadline <= now) {
        bounded.delete(b)
        due.push(b.expire)
      } else {
        next = Math.min(next, b.deadline)
      }
    }
    return Effect.zipRight(Effect.all(due, { discard: true }), next === Infinity ? Effect.void : arm(next, now))
  })

  const busy = (key: string, now: number) => {
    const f = inFlight.get(key)
    return f !== undefined && now - f.since < options.patienceMs
  }

  const land = (key: string, flight: { readonly since: number }) => {
    if (inFlight.get(key) === flight) inFlight.delete(key)
  }

  const kick: Effect.Effect<void> = Effect.suspend(() =>
    Effect.flatMap(currentMillis, (now) => {
      if (queue.length === 0) return Effect.void
      // Behind a batch in flight: it kicks when it ends, or this timer when it has taken too long.
      if (sending !== undefined && now - sending < options.flightMs) return schedule(sending + options.flightMs, now)
      const eligible = queue.filter((e) => !busy(e.key, now))
      if (eligible.length === 0) {
        // Every queued key is in flight: its flight kicks when it ends, or this timer at its patience.
        const since = Math.min(...queue.map((e) => inFlight.get(e.key)?.since ?? now))
        return schedule(since + options.patienceMs, now)
      }
      const earliest = Math.min(...eligible.map((e) => e.due))
      if (earliest > now) return schedule(earliest, now)
      // Everything eligible goes, once per key, first come first.
      const keys = new Set<string>()
      const batch: Array<Entry<Req, A, E>> = []
      for (const e of eligible) {
        if (keys.has(e.key)) continue
        keys.add(e.key)
        e.taken = true
        batch.push(e)
      }
      queue = queue.filter((e) => !e.taken)
      sending = now
      sent++
      const flight = { since: now }
      for (const e of batch) inFlight.set(e.key, flight)
      return Effect.asVoid(Effect.forkDaemon(run(batch, flight)))
    })
  )

  // The next kick: at the first held request's due time, a flight's end of patience, and so on.
  const schedule = alarm(options.clock, Effect.suspend(() => kick))

  const run = (batch: ReadonlyArray<Entry<Req, A, E>>, flight: { readonly since: number }) =>
    Effect.flatMap(Effect.exit(send(batch.map((e) => e.req))), (exit) =>
      Effect.suspend(() => {
        sending = undefined
        const after: Array<Effect.Effect<void>> = []
        if (Exit.isFailure(exit)) {
          for (const e of batch) {
            land(e.key, flight)
            after.push(Deferred.failCause(e.done, exit.cause))
          }
        } else {
          batch.forEach((e, i) => {
            const outcome = exit.value[i]
            if (outcome === undefined) {
              land(e.key, flight)
              after.push(Deferred.failCause(e.done, Cause.die(new Error("modulo-group: a batch returned no answer"))))
            } else if (outcome._tag === "Done") {
              land(e.key, flight)
              after.push(Deferred.succeed(e.done, outcome.value))
            } else {
              // Its own statement: the key stays in flight until that one has ended.
              after.push(Effect.asVoid(Effect.forkDaemon(
                Effect.flatMap(Effect.exit(outcome.effect), (alone) =>
                  Effect.suspend(() => {
                    land(e.key, flight)
                    return Effect.zipRight(Deferred.done(e.done, alone), kick)
                  }))
              )))
            }
          })
        }
        return Effect.zipRight(Effect.all(after, { discard: true }), kick)
      }))

  /**
   * Sends a held `entry` with the next batch, as if it were due now; whether it had not been taken
   * into a batch yet (so that it goes after this call).
   */
  const sendNow = (entry: Entry<Req, A, E>): Effect.Effect<boolean> =>
    Effect.suspend(() => {
      if (entry.taken) return Effect.succeed(false)
      entry.due = -Infinity
      return Effect.as(kick, true)
    })

  const submit = (
    key: string,
    req: Req,
    holdMs: number,
    bound?: { readonly ms: number; readonly onTimeout: () => E },
    early?: (sendNow: Effect.Effect<boolean>) => Effect.Effect<void>
  ): Effect.Effect<A, E> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        const now = yield* currentMillis
        const done = yield* Deferred.make<A, E>()
        const entry: Entry<Req, A, E> = { key, req, due: now + Math.max(0, holdMs), done, taken: false }
        queue.push(entry)
        if (early !== undefined) yield* early(sendNow(entry))
        yield* kick
        // The bound ends the wait through the answer's own `Deferred` (the watchdog, above).
        const limit: Bounded | undefined = bound === undefined ? undefined : {
          deadline: now + bound.ms,
          expire: Effect.suspend(() => Deferred.fail(done, bound.onTimeout()))
        }
        if (limit !== undefined) {
          bounded.add(limit)
          yield* arm(limit.deadline, now)
        }
        return yield* restore(Deferred.await(done)).pipe(
          Effect.onExit(() =>
            Effect.suspend(() => {
              if (limit !== undefined) bounded.delete(limit)
              if (entry.taken) return Effect.void
              // Not sent yet (interrupted, or past its bound): dropped. Sent: its statement runs on,
              // its answer goes nowhere.
              queue = queue.filter((e) => e !== entry)
              return kick
            })
          )
        )
      })
    )

  return { submit, batches: () => sent }
}
