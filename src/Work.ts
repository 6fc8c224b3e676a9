/**
 * Work that follows the member's assignment: periodic work on a staggered wall-clock grid
 * (`runEvery`) and singleton duties on the leader (`runAsLeader`). "The original" below is the
 * design this library replaces (a Ruby loop per process with a work block and a "boss" block); its
 * option names are kept so that its users find their settings. Both are built on
 * `Membership.whileAssigned`: a run in progress is interrupted when the member leaves `Assigned`, and
 * the member acknowledges the next epoch only after the run's finalizers have run (past
 * `stopTimeout` the member holds the barrier, and says so, until the run stops).
 *
 * The schedule is the original's `compute_next_work_time` grid, recomputed in every epoch: the times
 * `now - (now mod modulo) + offset + interval / N * k + j * interval`. The original started at
 * `j = 1`; `runEvery` starts at the first of them not before the epoch's start, so that every member
 * runs less than one `interval` after it starts working in an epoch. A run that overruns skips the
 * grid times it missed (the original ran back-to-back until it had caught up). Within one epoch the
 * schedule, the run counter and the leader's "done" mark survive a restart of the work (a self-fence
 * and recovery in the same epoch).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { PgMembership, Work } from "modulo-group"
 *
 * const program = Effect.gen(function*() {
 *   yield* Work.runEvery("5 seconds", (tick) =>
 *     Effect.log(`working on items with id % ${tick.size} = ${tick.index} (epoch ${tick.epoch})`))
 *   yield* Work.runAsLeader(Effect.log("only one member in the group runs this, once per epoch"))
 *   yield* Effect.never
 * }).pipe(Effect.scoped, Effect.provide(PgMembership.layer({ groupId: "my-group" })))
 * ```
 *
 * @since 0.1.0
 */
import type { Scope } from "effect"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import { Membership } from "./Membership.js"
import { InvalidConfig } from "./MembershipError.js"
import type { Assignment, FencingToken } from "./MemberState.js"
import { sameEpoch } from "./MemberState.js"

// --- schedule maths (pure) ---------------------------------------------------------------------

/**
 * Inputs of the schedule, all in milliseconds (`now` since the Unix epoch).
 *
 * @since 0.1.0
 * @category schedule
 */
export interface ScheduleInput {
  /** The time the schedule is (re)computed: the start of the epoch's work. */
  readonly now: number
  /** `min_work_interval`. */
  readonly interval: number
  /** `work_modulo`: the grid the first run is aligned to. */
  readonly modulo: number
  /** `work_offset`. */
  readonly offset: number
  /** This member's index k. */
  readonly index: number
  /** The group size N. */
  readonly size: number
}

/**
 * The first due time, exactly as the original computed it:
 * `now - (now mod modulo) + offset + interval / size * index + interval`.
 *
 * @since 0.1.0
 * @category schedule
 */
export const firstDue = (input: ScheduleInput): number =>
  input.now - (input.now % input.modulo) + input.offset + input.interval / input.size * input.index + input.interval

/**
 * The first due time `runEvery` uses in an epoch: the first time of the original's grid
 * (`firstDue(input) - j * interval`, j an integer) that is not before `now`. It is less than one
 * `interval` after `now`, so a member runs in every epoch that lasts at least one interval, whatever
 * its index; the original's `firstDue` could be almost two intervals after `now` for high indices.
 *
 * @since 0.1.0
 * @category schedule
 */
export const firstDueInEpoch = (input: ScheduleInput): number => {
  const due = firstDue(input)
  return due - Math.floor((due - input.now) / input.interval) * input.interval
}

/**
 * The due time after `previous`: `previous + interval` (the original's `compute_next_work_time` with a
 * `last_time`).
 *
 * @since 0.1.0
 * @category schedule
 */
export const nextDue = (previous: number, interval: number): number => previous + interval

/**
 * The first time of the grid `due + j * interval` (j >= 0) that is not before `now`: where a run that
 * overran (or a late start) resumes, keeping the member's stagger.
 *
 * @since 0.1.0
 * @category schedule
 */
export const catchUp = (due: number, now: number, interval: number): number =>
  due >= now ? due : due + Math.ceil((now - due) / interval) * interval

/**
 * Where the next run is due, from the grid time `due` and the wall-clock reading `now`: `catchUp`
 * (a late start or an overrun skips the grid times it missed, no burst), and, when the wall clock has
 * stepped back so that `due` is more than one `interval` ahead, the latest time of the same grid
 * (`due - j * interval`) at most one `interval` after `now`. So a step of the host's wall clock, back
 * or forward, never delays a run by more than about one `interval`, and the runs stay on their grid
 * (`due`'s phase, on the wall clock as it now reads).
 *
 * @since 0.1.0
 * @category schedule
 */
export const resumeAt = (due: number, now: number, interval: number): number => {
  const next = catchUp(due, now, interval)
  return next - now > interval ? next - Math.ceil((next - now - interval) / interval) * interval : next
}

/**
 * The stagger of member `index` of `size`: how long after member 0 it runs, `interval / size * index`.
 *
 * @since 0.1.0
 * @category schedule
 */
export const staggerOffset = (interval: number, index: number, size: number): number => interval / size * index

// --- periodic work -----------------------------------------------------------------------------

/**
 * What a periodic run receives: the assignment it runs under, and when it was due.
 *
 * @since 0.1.0
 * @category models
 */
export interface Tick extends Assignment {
  /** When this run was due, in milliseconds since the Unix epoch (`Clock` time). */
  readonly dueAt: number
  /**
   * How many runs of this `runEvery` started before this one in this epoch (0 for the first). It
   * counts on across a restart of the work within the epoch (a self-fence and recovery). In slots
   * mode, where a change does not restart the work, it counts on across epochs too, from the epoch
   * the work started in.
   */
  readonly run: number
}

/**
 * @since 0.1.0
 * @category models
 */
export interface RunEveryOptions {
  /** The grid the first run is aligned to (the original's `work_modulo`). Default 1 second. */
  readonly modulo?: Duration.DurationInput | undefined
  /** Shifts every run by this much (the original's `work_offset`). Default 0. */
  readonly offset?: Duration.DurationInput | undefined
  /** Spread the members over the interval: member k of N runs `interval / N * k` after member 0. Default true. */
  readonly stagger?: boolean | undefined
  /** Run only on the leader (index 0 of the current epoch). Default false. */
  readonly leaderOnly?: boolean | undefined
}

/**
 * The longest duration `runEvery` and `runAsLeader` accept for any option: 100 years. Longer ones
 * are refused with `InvalidConfig` (the schedule's arithmetic, in milliseconds since 1970, stays
 * exact to well under a millisecond below it).
 *
 * @since 0.1.0
 * @category schedule
 */
export const maxDurationMillis = 100 * 365 * 24 * 60 * 60 * 1000

/** The longest single timer: JavaScript timers (and Effect's live clock) treat longer ones as "never". */
const maxTimerMillis = 2 ** 31 - 1

const toMillis = (input: Duration.DurationInput): number => {
  try {
    return Duration.toMillis(Duration.decode(input))
  } catch {
    return Number.NaN
  }
}

const bounded = (field: string, input: Duration.DurationInput, allowZero: boolean) =>
  Effect.suspend(() => {
    const ms = toMillis(input)
    if (!Number.isFinite(ms) || (!allowZero && ms <= 0)) {
      return Effect.fail(
        new InvalidConfig({
          field,
          reason: `it must be a finite duration${allowZero ? "" : " greater than zero"}, got ${String(input)}`
        })
      )
    }
    if (ms > maxDurationMillis) {
      return Effect.fail(
        new InvalidConfig({
          field,
          reason: `it must be at most 100 years (${maxDurationMillis} ms), got ${String(input)}`
        })
      )
    }
    return Effect.succeed(ms)
  })

const positive = (field: string, input: Duration.DurationInput) => bounded(field, input, false)

const finite = (field: string, input: Duration.DurationInput) => bounded(field, input, true)

/**
 * Sleeps until wall-clock (`Clock`) time `until` as read now: the wait is measured by the clock's
 * timers (monotonic), not by reading the wall clock again, so a step of the wall clock during the wait
 * neither lengthens nor shortens it. Split into timers no clock treats as "never" (a single
 * `Effect.sleep` of more than 2^31 - 1 ms never wakes on the live clock).
 */
const sleepUntil = (until: number) =>
  Effect.gen(function*() {
    let left = until - (yield* Clock.currentTimeMillis)
    while (left > maxTimerMillis) {
      yield* Effect.sleep(Duration.millis(maxTimerMillis))
      left -= maxTimerMillis
    }
    if (left > 0) yield* Effect.sleep(Duration.millis(left))
  })

/**
 * Leader duties are refused in slots mode: there `index` and `size` are the member row's, with no
 * barrier (docs/slots.md), so at a change two members can both be index 0 at once.
 */
const refuseLeaderInSlotsMode = (field: string, what: string) =>
  new InvalidConfig({
    field,
    reason: `${what} is not available in slots mode: index 0 has no barrier there (at a change two members ` +
      `can both be index 0 at once), so the duty could run on two members at the same time. Run a singleton ` +
      `duty under one slot instead: Membership.whileOwning((owned) => owned.slot === 0 ? duty : Effect.void), ` +
      `its writes fenced with fenced(..., { slots: owned })`
  })

/** After this many failures in a row, one warning says the work keeps failing. */
const failureStreakWarning = 3

/**
 * Counts consecutive failures of one registered work (across epochs): logs one warning when the
 * count reaches `failureStreakWarning`, and one line when the work succeeds again after it.
 */
const makeFailureStreak = (label: string) =>
  Effect.map(Ref.make(0), (count) => ({
    failed: Effect.flatMap(Ref.updateAndGet(count, (n) => n + 1), (n) =>
      n === failureStreakWarning
        ? Effect.logWarning(`modulo-group: ${label} keeps failing: ${n} failures in a row`)
        : Effect.void),
    succeeded: Effect.flatMap(Ref.getAndSet(count, 0), (n) =>
      n >= failureStreakWarning
        ? Effect.logInfo(`modulo-group: ${label} succeeded again after ${n} failures in a row`)
        : Effect.void)
  }))

/**
 * Runs one unit of work in a scope of its own; a failure (not an interruption) is logged, never
 * propagated. Returns whether it failed.
 */
const runOnce = <E, R>(label: string, work: Effect.Effect<unknown, E, R>) =>
  Effect.scoped(work).pipe(
    Effect.as(false),
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause)
        ? Effect.succeed(false)
        : Effect.as(Effect.logWarning(`modulo-group: ${label} failed`, cause), true)
    )
  )

/**
 * One registration's guard around its per-epoch work: two starts never overlap (even if a stopping
 * one is still in its finalizers), and the work stops when the caller's scope closes, not only when
 * the epoch ends; closing the scope waits for it (up to the member's `stopTimeout`, then logs an
 * error and goes on: the member itself then holds the barrier until the work has stopped).
 */
const makeRegistration = Effect.gen(function*() {
  const membership = yield* Membership
  const closed = yield* Deferred.make<void>()
  const exclusive = yield* Effect.makeSemaphore(1)
  yield* Effect.addFinalizer(() =>
    Deferred.succeed(closed, undefined).pipe(
      Effect.zipRight(Effect.interruptible(exclusive.withPermits(1)(Effect.void))),
      Effect.timeoutTo({
        duration: membership.config.stopTimeout,
        onSuccess: () => Effect.void,
        onTimeout: () => Effect.logError("modulo-group: work did not stop in time when its scope closed")
      }),
      Effect.flatten
    )
  )
  // The work on a fiber of its own, interrupted and waited for before the permit goes: a race
  // interrupted from outside (the runner stops a closed registration's run) lets go at once of the
  // work it raced, whose finalizers then still ran while the permit was free, so the close did not
  // wait for them.
  return <A, E, R>(work: Effect.Effect<A, E, R>): Effect.Effect<void, E, R> =>
    exclusive.withPermits(1)(
      Effect.flatMap(Deferred.isDone(closed), (done) =>
        done ? Effect.void : Effect.uninterruptibleMask((restore) =>
          Effect.flatMap(Effect.fork(restore(work)), (fiber) =>
            restore(Effect.asVoid(Effect.raceFirst(Fiber.join(fiber), Deferred.await(closed)))).pipe(
              Effect.ensuring(Fiber.interrupt(fiber))
            ))
        ))
    )
})

/** Where the periodic work of one registration stands in an epoch (kept across restarts of the work). */
interface Progress extends FencingToken {
  /** The next due time (the grid time of the run in progress already counted). */
  readonly due: number
  /** Runs started in this epoch. */
  readonly run: number
}

/**
 * Runs `work` every `interval` while this member is assigned, on the original's staggered grid.
 * Each run is preceded by `Membership.guard` (a run never starts under a stale assignment, G3). A run
 * that fails is logged and the next tick runs as usual; the membership is never affected. A run in
 * progress is interrupted when the member leaves `Assigned` (a renegotiation, a lost lease, a leave),
 * and the next epoch is acknowledged only after its finalizers ran. Runs never overlap; a run that
 * overruns skips the grid times it missed. A step of the host's wall clock, back or forward, delays no
 * run by more than about one `interval` and causes no burst (`resumeAt`; the waits are measured on
 * the clock's timers). In a new epoch the first run is due less than one `interval`
 * after the member starts working in it (`firstDueInEpoch`); when the work is started again in the
 * same epoch (a self-fence and recovery), the schedule resumes on its grid and `Tick.run` counts on.
 * When runs keep failing (3 in a row) one warning says so.
 *
 * Slots mode (docs/slots.md): the work runs for as long as the member may work (`guard` passes before
 * every run; a change does not restart it, so the schedule and `Tick.run` go on across epochs); each
 * tick carries the assignment `guard` returned, whose `index` and `size` partition nothing there
 * (partition by the slots: `Membership.owned`, `whileOwning`). `leaderOnly` is refused there with
 * `InvalidConfig` (index 0 has no barrier in slots mode).
 *
 * Fails with `InvalidConfig` (naming the option) for a duration that is not finite, not positive
 * (`offset` may be zero), or longer than 100 years. Intervals longer than a JavaScript
 * timer can hold (2^31 - 1 ms, about 24.8 days) are fine: the wait is split.
 *
 * Returns once registered; the work follows the assignment until the caller's scope closes.
 *
 * @since 0.1.0
 * @category work
 */
export const runEvery = <E, R>(
  interval: Duration.DurationInput,
  work: (tick: Tick) => Effect.Effect<unknown, E, R>,
  options: RunEveryOptions = {}
): Effect.Effect<void, InvalidConfig, Membership | Scope.Scope | Exclude<R, Scope.Scope>> =>
  Effect.gen(function*() {
    const intervalMs = yield* positive("interval", interval)
    const moduloMs = yield* positive("modulo", options.modulo ?? Duration.seconds(1))
    const offsetMs = yield* finite("offset", options.offset ?? Duration.zero)
    const stagger = options.stagger ?? true
    const membership = yield* Membership
    // Slots mode (docs/slots.md): a change does not restart the work (no barrier; the member may work
    // for as long as `guard` passes), and index 0 is no leader.
    const slotsMode = membership.config.slots !== undefined
    if (slotsMode && options.leaderOnly === true) {
      return yield* Effect.fail(refuseLeaderInSlotsMode("leaderOnly", "runEvery with leaderOnly"))
    }
    // Outside the per-start closure: the membership may start this work again in the same epoch (after
    // a self-fence and recovery), and the schedule and counter must go on, not restart.
    const progress = yield* Ref.make(Option.none<Progress>())
    const streak = yield* makeFailureStreak("periodic work")
    const registration = yield* makeRegistration

    const epochLoop = (a: Assignment) =>
      Effect.gen(function*() {
        if (options.leaderOnly === true && !a.isLeader) return
        const saved = Option.getOrUndefined(yield* Ref.get(progress))
        let { due, run } = saved !== undefined && sameEpoch(saved, a) ? saved : {
          due: firstDueInEpoch({
            now: yield* Clock.currentTimeMillis,
            interval: intervalMs,
            modulo: moduloMs,
            offset: offsetMs,
            index: stagger ? a.index : 0,
            size: a.size
          }),
          run: 0
        }
        while (true) {
          due = resumeAt(due, yield* Clock.currentTimeMillis, intervalMs)
          yield* Ref.set(progress, Option.some({ incarnation: a.incarnation, epoch: a.epoch, due, run }))
          yield* sleepUntil(due)
          const current = yield* Effect.either(membership.guard)
          // Modulo mode: only in the epoch the work started in (a new one restarts it, behind the
          // barrier). Slots mode: `guard` is member-level (assigned, the lease deadline ahead) and no
          // change restarts the work, so its passing is the licence; the tick carries what it returned.
          if (Either.isRight(current) && (slotsMode || sameEpoch(current.right, a))) {
            const tick: Tick = { ...(slotsMode ? current.right : a), dueAt: due, run }
            run++
            yield* Ref.set(
              progress,
              Option.some({ incarnation: a.incarnation, epoch: a.epoch, due: nextDue(due, intervalMs), run })
            )
            // Suspended: a callback that throws is a failed run, logged and counted (it ended the loop).
            const failed = yield* runOnce("periodic work", Effect.suspend(() => work(tick)))
            yield* failed ? streak.failed : streak.succeeded
          } else {
            yield* Effect.logDebug(
              `modulo-group: skipped a run: ${Either.isLeft(current) ? current.left.message : "the epoch has changed"}`
            )
          }
          due = nextDue(due, intervalMs)
        }
      }).pipe(registration)

    yield* membership.whileAssigned(epochLoop)
  })

/**
 * Runs singleton duties on the leader only: in every epoch in which this member has index 0, once
 * `Membership.guard` passes, `work` runs; it is interrupted (finalizers awaited before the member
 * acknowledges) when the epoch ends. If it fails it is logged and restarted after `retryDelay`
 * (default 1 second) while the member still leads that epoch; once it succeeds it does not run again
 * until the next epoch this member leads, not even when the work is started again in the same epoch
 * (a self-fence and recovery). A duty interrupted before it finished (by a fence) starts again when
 * the member recovers in the same epoch. When it keeps failing (3 in a row) one warning says so. For
 * periodic leader duties use `runEvery(interval, work, { leaderOnly: true })`.
 *
 * Not in slots mode: it fails there with `InvalidConfig` (field `slots`), since index 0 has no
 * barrier in slots mode and two members can both be index 0 at once at a change; run a singleton
 * duty under one slot there (`Membership.whileOwning`, for one slot such as slot 0, with its writes
 * `fenced` with that slot).
 *
 * Returns once registered; the work follows the assignment until the caller's scope closes.
 *
 * @since 0.1.0
 * @category work
 */
export const runAsLeader = <A, E, R>(
  work: Effect.Effect<A, E, R> | ((assignment: Assignment) => Effect.Effect<A, E, R>),
  options: { readonly retryDelay?: Duration.DurationInput | undefined } = {}
): Effect.Effect<void, InvalidConfig, Membership | Scope.Scope | Exclude<R, Scope.Scope>> =>
  Effect.gen(function*() {
    const retryDelayMs = yield* positive("retryDelay", options.retryDelay ?? Duration.seconds(1))
    const membership = yield* Membership
    if (membership.config.slots !== undefined) return yield* Effect.fail(refuseLeaderInSlotsMode("slots", "runAsLeader"))
    const workFor = (a: Assignment) => (Effect.isEffect(work) ? work : work(a))
    // Outside the per-start closure: the latest epoch (of its incarnation) in which the duty finished.
    // The membership may start the work again in the same epoch (after a self-fence and recovery); it
    // must not rerun.
    const finishedIn = yield* Ref.make(Option.none<FencingToken>())
    const streak = yield* makeFailureStreak("leader duty")
    const registration = yield* makeRegistration

    const lead = (a: Assignment) =>
      Effect.gen(function*() {
        if (!a.isLeader) return
        while (true) {
          if (Option.exists(yield* Ref.get(finishedIn), (done) => sameEpoch(done, a))) return
          const current = yield* Effect.either(membership.guard)
          if (Either.isRight(current) && sameEpoch(current.right, a)) {
            // Finishing and recording it are one step: an interruption cannot fall between them.
            const exit = yield* Effect.uninterruptibleMask((restore) =>
              Effect.tap(
                Effect.exit(restore(Effect.scoped(Effect.suspend(() => workFor(a))))),
                (exit) =>
                  exit._tag === "Success"
                    ? Ref.set(finishedIn, Option.some({ incarnation: a.incarnation, epoch: a.epoch }))
                    : Effect.void
              )
            )
            if (exit._tag === "Success") return yield* streak.succeeded
            if (!Cause.isInterruptedOnly(exit.cause)) {
              yield* Effect.logWarning("modulo-group: leader duty failed; restarting it", exit.cause)
              yield* streak.failed
            }
          }
          yield* Effect.sleep(Duration.millis(retryDelayMs))
        }
      }).pipe(registration)

    yield* membership.whileAssigned(lead)
  })

// --- as layers ----------------------------------------------------------------------------------

/**
 * `runEvery` as a layer: registering the work is part of building the app's layers, and it stops
 * when the layer's scope closes.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { PgMembership, Work } from "modulo-group"
 *
 * const Drain = Work.layerEvery("5 seconds", (tick) => Effect.log(`items with id % ${tick.size} = ${tick.index}`))
 * const Main = Drain.pipe(Layer.provide(PgMembership.layer({ groupId: "jobs" })))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerEvery = <E, R>(
  interval: Duration.DurationInput,
  work: (tick: Tick) => Effect.Effect<unknown, E, R>,
  options: RunEveryOptions = {}
): Layer.Layer<never, InvalidConfig, Membership | Exclude<R, Scope.Scope>> =>
  Layer.scopedDiscard(runEvery(interval, work, options))

/**
 * `runAsLeader` as a layer: the duty is registered when the layer is built and stops when its scope
 * closes.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerAsLeader = <A, E, R>(
  work: Effect.Effect<A, E, R> | ((assignment: Assignment) => Effect.Effect<A, E, R>),
  options: { readonly retryDelay?: Duration.DurationInput | undefined } = {}
): Layer.Layer<never, InvalidConfig, Membership | Exclude<R, Scope.Scope>> =>
  Layer.scopedDiscard(runAsLeader(work, options))
