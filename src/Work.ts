/**
 * Work that follows the member's assignment: periodic work on a staggered wall-clock grid
 * (`runEvery`, the original's work block) and singleton duties on the leader (`runAsLeader`, the
 * original's boss block). Both are built on `Membership.whileAssigned`: a run in progress is
 * interrupted when the member leaves `Assigned`, and the member acknowledges the next epoch only after
 * the run's finalizers have run (bounded by `stopTimeout`; past it the member leaves instead).
 *
 * The schedule is the original's `compute_next_work_time`, recomputed in every epoch:
 * `first = now - (now mod modulo) + offset + interval / N * k + interval`, then every `interval`
 * after the previous due time. A run that overruns skips the slots it missed (the original ran
 * back-to-back until it had caught up).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Membership, Work } from "modulo-group"
 *
 * const program = Effect.gen(function*() {
 *   yield* Work.runEvery("5 seconds", (tick) =>
 *     Effect.log(`working on items with id % ${tick.size} = ${tick.index} (epoch ${tick.epoch})`))
 *   yield* Work.runAsLeader(Effect.log("only one member in the group runs this, once per epoch"))
 *   yield* Effect.never
 * }).pipe(Effect.scoped, Effect.provide(Membership.layer({ groupId: "my-group" })))
 * ```
 *
 * @since 0.1.0
 */
import type { Scope } from "effect"
import { Cause, Clock, Duration, Effect, Either } from "effect"
import { Membership } from "./Membership.js"
import { InvalidConfig } from "./MembershipError.js"
import type { Assignment } from "./MemberState.js"

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
  /** How many runs came before this one in this epoch (0 for the first). */
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

const toMillis = (input: Duration.DurationInput): number => {
  try {
    return Duration.toMillis(Duration.decode(input))
  } catch {
    return Number.NaN
  }
}

const positive = (field: string, input: Duration.DurationInput) =>
  Effect.suspend(() => {
    const ms = toMillis(input)
    return Number.isFinite(ms) && ms > 0
      ? Effect.succeed(ms)
      : Effect.fail(new InvalidConfig({ field, reason: `it must be a finite duration greater than zero, got ${String(input)}` }))
  })

const finite = (field: string, input: Duration.DurationInput) =>
  Effect.suspend(() => {
    const ms = toMillis(input)
    return Number.isFinite(ms)
      ? Effect.succeed(ms)
      : Effect.fail(new InvalidConfig({ field, reason: `it must be a finite duration, got ${String(input)}` }))
  })

const annotate = (a: Assignment) =>
  Effect.annotateLogs({
    "modulo_group.epoch": String(a.epoch),
    "modulo_group.index": String(a.index),
    "modulo_group.size": String(a.size)
  })

/** Runs one unit of work in a scope of its own; a failure (not an interruption) is logged, never propagated. */
const runOnce = <E, R>(label: string, work: Effect.Effect<unknown, E, R>) =>
  Effect.scoped(work).pipe(
    Effect.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logWarning(`modulo-group: ${label} failed`, cause)
    ),
    Effect.asVoid
  )

/**
 * Runs `work` every `interval` while this member is assigned, on the original's staggered grid.
 * Each run is preceded by `Membership.guard` (a run never starts under a stale assignment, G3). A run
 * that fails is logged and the next tick runs as usual; the membership is never affected. A run in
 * progress is interrupted when the member leaves `Assigned` (a renegotiation, a lost lease, a leave),
 * and the next epoch is acknowledged only after its finalizers ran. Runs never overlap; a run that
 * overruns skips the slots it missed.
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

    const epochLoop = (a: Assignment) =>
      Effect.gen(function*() {
        if (options.leaderOnly === true && !a.isLeader) return
        let due = firstDue({
          now: yield* Clock.currentTimeMillis,
          interval: intervalMs,
          modulo: moduloMs,
          offset: offsetMs,
          index: stagger ? a.index : 0,
          size: a.size
        })
        let run = 0
        while (true) {
          const now = yield* Clock.currentTimeMillis
          due = catchUp(due, now, intervalMs)
          if (due > now) yield* Effect.sleep(Duration.millis(due - now))
          const current = yield* Effect.either(membership.guard)
          if (Either.isRight(current) && current.right.epoch === a.epoch) {
            yield* runOnce("periodic work", work({ ...a, dueAt: due, run }))
            run++
          } else {
            yield* Effect.logDebug(
              `modulo-group: skipped a run: ${Either.isLeft(current) ? current.left.message : "the epoch has changed"}`
            )
          }
          due = nextDue(due, intervalMs)
        }
      }).pipe(annotate(a))

    yield* membership.whileAssigned(epochLoop)
  })

/**
 * Runs singleton duties on the leader only: in every epoch in which this member has index 0, once
 * `Membership.guard` passes, `work` runs; it is interrupted (finalizers awaited before the member
 * acknowledges) when the epoch ends. If it fails it is logged and restarted after `retryDelay`
 * (default 1 second) while the member still leads that epoch; once it succeeds it does not run again
 * until the next epoch this member leads. For periodic leader duties use
 * `runEvery(interval, work, { leaderOnly: true })`.
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
    const workFor = (a: Assignment) => (Effect.isEffect(work) ? work : work(a))

    const lead = (a: Assignment) =>
      Effect.gen(function*() {
        if (!a.isLeader) return
        while (true) {
          const current = yield* Effect.either(membership.guard)
          if (Either.isRight(current) && current.right.epoch === a.epoch) {
            const exit = yield* Effect.exit(Effect.scoped(workFor(a)))
            if (exit._tag === "Success") return
            if (!Cause.isInterruptedOnly(exit.cause)) {
              yield* Effect.logWarning("modulo-group: leader duty failed; restarting it", exit.cause)
            }
          }
          yield* Effect.sleep(Duration.millis(retryDelayMs))
        }
      }).pipe(annotate(a))

    yield* membership.whileAssigned(lead)
  })
