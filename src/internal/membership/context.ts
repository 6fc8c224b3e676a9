/**
 * The interpreter's state, in one place: the member (`Transition.Member`, changed only through
 * `Transition.step`), the observable state mirrored from it, the driver's event queue and the
 * wake-ups of the lease keeper. Every other piece of the interpreter receives this.
 */
import type { Scope } from "effect"
import * as Duration from "effect/Duration"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as SubscriptionRef from "effect/SubscriptionRef"
import type { ResolvedConfig } from "../../MembershipConfig.js"
import * as Metrics from "../../MembershipMetrics.js"
import type { MemberInfo, MembershipStoreService, StaticJoin } from "../../MembershipStore.js"
import type { MemberState } from "../../MemberState.js"
import * as State from "../../MemberState.js"
import type { Event, Instruction, Member, Observation, Timing } from "../../Transition.js"
import * as Transition from "../../Transition.js"
import { monotonicMillis } from "../clock.js"
import { answered, refusal } from "../pg/errors.js"
import * as Signal from "./signal.js"

export interface MemberContext {
  readonly config: ResolvedConfig
  readonly timing: Timing
  readonly store: MembershipStoreService
  readonly groupId: string
  readonly info: MemberInfo
  /** Static membership: the instance id and rejoin grace every join passes (none without an instance id). */
  readonly statics: StaticJoin | undefined
  /** The member: read by every fiber, changed only by `Transition.step` (atomically). */
  readonly member: Ref.Ref<Member>
  /**
   * `member.state`, observable (`changes`); written by the driver, then by the final leave (after the
   * driver has stopped), each right after the `step` that changed it.
   */
  readonly state: SubscriptionRef.SubscriptionRef<MemberState>
  /** Events for the driver, applied one at a time. */
  readonly events: Queue.Queue<Event>
  /**
   * The lease keeper's wake-ups: `poke`, renew now, for the member's own reasons (an
   * acknowledgement, a reap); `wake`, renew soon, a notification arrived (rate-limited by the lease
   * keeper).
   */
  readonly signal: Signal.Signal
  /**
   * Whether the store last said it listens for this group's notifications (`Wakeup.listening`);
   * false until it says so. While true, the member waiting at the barrier relies on the barrier's
   * notification and polls slowly (leaseKeeper.ts).
   */
  readonly listening: { current: boolean }
  /** The epoch the member waited in when it heard that epoch's barrier announced (`E:ready`; 0: none). */
  readonly heardReady: { current: number }
  /**
   * Whether the lease keeper's wait in progress began while the member held no lease (before its
   * join): that wait is a heartbeat long, so the driver pokes it when a join leaves the member at
   * the barrier (driver.ts).
   */
  readonly keeperBeforeJoin: { current: boolean }
  /**
   * The fence timer's wait while the member has no deadline (fenceTimer.ts): completed by the step
   * that gives it one (`stepNow`), so that the timer watches a deadline from the moment it exists.
   */
  readonly deadlineSet: { current: Deferred.Deferred<void> | undefined }
  /**
   * A notification's claim (`Notified`) is in the driver's queue: no other is queued until the
   * driver takes it, so a flood of notifications queues at most one event (Membership.ts, driver.ts).
   */
  readonly claimQueued: { current: boolean }
  /**
   * The number of the last renewal the lease keeper numbered (in the order it sends them,
   * `Member.ackingFrom`). A claim records it when the driver takes it (`stepNow`): only a renewal
   * numbered later settles the claim.
   */
  readonly renewalsNumbered: { current: number }
  /** The member's scope: background timers are forked into it. */
  readonly scope: Scope.Scope
  readonly metrics: ReturnType<typeof groupMetrics>
  /**
   * Since when (member's clock, ms) and why the database has refused this member's connections, and
   * how many calls failed so far; undefined while calls get through. Said once, not per retry.
   */
  readonly refused: { current: { readonly since: number; readonly reason: string; failures: number } | undefined }
}

/** The member's clock, in milliseconds. */
export const nowMillis: Effect.Effect<number> = monotonicMillis

const groupMetrics = (groupId: string) => {
  const tagged = <T, I, O>(m: Metric.Metric<T, I, O>) => m.pipe(Metric.tagged("group", groupId))
  return {
    epoch: tagged(Metrics.epoch),
    size: tagged(Metrics.size),
    index: tagged(Metrics.index),
    assigned: tagged(Metrics.assigned),
    leader: tagged(Metrics.leader),
    heartbeatAge: tagged(Metrics.heartbeatAge),
    renegotiations: tagged(Metrics.renegotiations),
    selfFences: tagged(Metrics.selfFences),
    failedHeartbeats: tagged(Metrics.failedHeartbeats),
    barrierSeconds: tagged(Metrics.barrierSeconds),
    stuckWork: tagged(Metrics.stuckWork),
    alarms: tagged(Metrics.alarms),
    clockSteps: tagged(Metrics.clockSteps),
    slotsWorking: tagged(Metrics.slotsWorking),
    slotStarts: tagged(Metrics.slotStarts),
    slotReleases: tagged(Metrics.slotReleases)
  }
}

export const makeContext = (options: {
  readonly config: ResolvedConfig
  readonly store: MembershipStoreService
  readonly info: MemberInfo
  readonly scope: Scope.Scope
}): Effect.Effect<MemberContext> =>
  Effect.gen(function*() {
    const { config } = options
    const timing: Timing = {
      leaseMs: Duration.toMillis(config.lease),
      validMs: Duration.toMillis(config.lease) - Duration.toMillis(config.fenceMargin),
      heartbeatMs: Duration.toMillis(config.heartbeat),
      fenceMarginMs: Duration.toMillis(config.fenceMargin)
    }
    const initial = Transition.initialMember(timing, config.instanceId)
    const metrics = groupMetrics(config.groupId)
    // Registered at once (an exporter lists them from the start, counters at 0); the gauges of the
    // assignment and the heartbeat age appear with their first value.
    // The slot series only in slots mode.
    const { epoch: _e, size: _s, index: _i, heartbeatAge: _h, slotsWorking, slotStarts, slotReleases, ...fromStart } = metrics
    const slotSeries = config.slots === undefined ? [] : [slotsWorking, slotStarts, slotReleases]
    yield* Effect.forEach([...Object.values(fromStart), ...slotSeries], (m) => Metric.value(m as Metric.Metric<unknown, never, unknown>), {
      discard: true
    })
    return {
      ...options,
      timing,
      groupId: config.groupId,
      statics: config.instanceId === undefined
        ? undefined
        : { instanceId: config.instanceId, rejoinGraceMs: Duration.toMillis(config.rejoinGrace) },
      member: yield* Ref.make(initial),
      state: yield* SubscriptionRef.make(initial.state),
      events: yield* Queue.unbounded<Event>(),
      signal: Signal.make(),
      metrics,
      refused: { current: undefined },
      listening: { current: false },
      heardReady: { current: 0 },
      keeperBeforeJoin: { current: false },
      deadlineSet: { current: undefined },
      claimQueued: { current: false },
      renewalsNumbered: { current: 0 }
    }
  })

/**
 * A store call failed. When the database refused the connection (too many clients, starting up,
 * nothing listening: `refusal`), says so once, the first time, and returns true: the caller then
 * logs nothing of its own, and retries as always (joins with capped exponential backoff and jitter,
 * renewals every heartbeat). Any other failure returns false; one the database answered (`answered`)
 * ends a refusal said before, as a call that succeeded does (`connected`).
 */
export const refusedOnce = (ctx: MemberContext, operation: string, error: unknown): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    const reason = refusal(error)
    if (reason === undefined) {
      // The database answered (a statement timeout, a refusal by name): connections are taken again.
      if (answered(error)) yield* connected(ctx)
      return false
    }
    const current = ctx.refused.current
    if (current !== undefined) {
      current.failures++
      return true
    }
    ctx.refused.current = { since: yield* nowMillis, reason, failures: 1 }
    yield* Effect.logWarning(
      `modulo-group: the database refuses connections (${reason}); the ${operation} and every later call ` +
        "retry with backoff, said once until a call gets through"
    )
    return true
  })

/** A store call got through: if connections were refused until now, says since when. */
export const connected = (ctx: MemberContext): Effect.Effect<void> =>
  Effect.suspend(() => {
    const current = ctx.refused.current
    if (current === undefined) return Effect.void
    ctx.refused.current = undefined
    // At the level of the warning it closes, so that whoever saw one sees the other.
    return Effect.flatMap(nowMillis, (now) =>
      Effect.logWarning(
        `modulo-group: connected to the database again after ${((now - current.since) / 1000).toFixed(1)} s ` +
          `(${current.failures} call(s) refused: ${current.reason})`
      ))
  })

/** Applies `input` to the member at the current time; returns the instructions to run. */
export const stepNow = (ctx: MemberContext, input: Event | Observation) =>
  Effect.flatMap(nowMillis, (now) =>
    Ref.modify(ctx.member, (before) => {
      // A claim, with the last renewal numbered so far: read in the same synchronous step as the
      // claim is recorded, so no renewal numbered before it can pass for one sent after it.
      const stamped = input._tag === "Notified"
        ? Transition.Event.Notified({ epoch: input.epoch, afterRenewal: ctx.renewalsNumbered.current })
        : input
      const [after, instructions] = Transition.step(before, stamped, now)
      // The fence timer, waiting while there was no deadline, watches this one from now on (woken in
      // the same step: no operation more on every other step).
      const waiting = before.deadline === undefined && after.deadline !== undefined ? ctx.deadlineSet.current : undefined
      if (waiting !== undefined) {
        ctx.deadlineSet.current = undefined
        Deferred.unsafeDone(waiting, Exit.void)
      }
      return [{ before: before.state, after: after.state, instructions }, after]
    }))

/** Records a metric as a `Measure` instruction says. */
export const measure = (ctx: MemberContext, metric: Extract<Instruction, { _tag: "Measure" }>["metric"], value: number) => {
  const m = ctx.metrics
  switch (metric) {
    case "failedHeartbeats":
      return Metric.update(m.failedHeartbeats, value)
    case "clockSteps":
      return Metric.update(m.clockSteps, value)
    case "barrierSeconds":
      return Metric.update(m.barrierSeconds, value)
    case "stuckWork":
      return Metric.set(m.stuckWork, value)
  }
}

/** Logs a line as a `Log` instruction says. */
export const log = (level: "Warning" | "Error" | "Info", message: string) =>
  level === "Error" ? Effect.logError(message) : level === "Info" ? Effect.logInfo(message) : Effect.logWarning(message)

/** Logs `reason` as an error and counts it. */
export const alarm = (ctx: MemberContext, reason: string) =>
  Effect.zipRight(Metric.update(ctx.metrics.alarms, 1), Effect.logError(`modulo-group: ${reason}`))

/** Updates the gauges and counters that follow the state. */
export const recordState = (ctx: MemberContext, before: MemberState, after: MemberState) =>
  Effect.gen(function*() {
    const m = ctx.metrics
    if (after._tag === "Assigned") {
      yield* Metric.update(m.epoch, after.epoch)
      yield* Metric.update(m.size, after.size)
      yield* Metric.update(m.index, after.index)
    }
    if ((after._tag === "Assigned") !== (before._tag === "Assigned")) {
      yield* Metric.set(m.assigned, after._tag === "Assigned" ? 1 : 0)
      yield* Metric.set(m.leader, after._tag === "Assigned" && after.index === 0 ? 1 : 0)
    }
    if (after._tag === "Renegotiating" && before._tag !== "Renegotiating") yield* Metric.update(m.renegotiations, 1)
    if (after._tag === "Fenced" && before._tag !== "Fenced") yield* Metric.update(m.selfFences, 1)
    // One line per state as shown: a step into a state that reads as the one before (a leave asked
    // for twice, a view of the same assignment) says nothing new.
    const line = `state: ${State.format(after)}`
    if (line !== `state: ${State.format(before)}`) {
      yield* ctx.config.logStateChanges ? Effect.logInfo(line) : Effect.logDebug(line)
    }
    yield* recordHeartbeatAge(ctx)
  })

/**
 * Sets the heartbeat age gauge: the time since the send time of the last renewal (or join) that came
 * back in time (`Member.deadline - validMs`), as of now. Unchanged while no lease is held. Called
 * after every renewal attempt and every state change.
 */
export const recordHeartbeatAge = (ctx: MemberContext) =>
  Effect.gen(function*() {
    const { deadline } = yield* Ref.get(ctx.member)
    if (deadline === undefined) return
    const now = yield* nowMillis
    yield* Metric.set(ctx.metrics.heartbeatAge, Math.max(0, now - (deadline - ctx.timing.validMs)) / 1000)
  })

/**
 * The graceful end of the member's row: deleted (the others renegotiate at once, G5), or, with an
 * instance id, released (kept with its index for `rejoinGrace`; nobody renegotiates). Only once the
 * work has stopped.
 */
export const leaveOrRelease = (ctx: MemberContext) =>
  ctx.statics === undefined
    ? ctx.store.leave(ctx.groupId, ctx.info.memberId)
    : ctx.store.release(ctx.groupId, ctx.info.memberId)

/**
 * Static membership, for `status` only: this member's waiter row (it waits for its instance id, held
 * by a live member). Best effort, bounded by the statement timeout: a failure changes nothing but
 * what `status` shows.
 */
export const recordWaiting = (ctx: MemberContext, instanceId: string) =>
  ctx.store.wait(ctx.groupId, ctx.info, instanceId, ctx.timing.leaseMs).pipe(
    Effect.catchAll((e) => Effect.logDebug(`waiter row not written (status will not show this wait): ${e.reason}`))
  )

/** Static membership: the wait is over; its waiter row goes (best effort: else it is shown for a lease at most). */
export const clearWaiting = (ctx: MemberContext) =>
  ctx.store.stopWaiting(ctx.groupId, ctx.info.memberId).pipe(
    Effect.catchAll((e) => Effect.logDebug(`waiter row not deleted (status shows it for a lease at most): ${e.reason}`))
  )
