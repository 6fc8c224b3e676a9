/**
 * The interpreter's state, in one place: the member (`Transition.Member`, changed only through
 * `Transition.step`), the observable state mirrored from it, the driver's event queue and the two
 * wake-up queues of the lease keeper. Every other piece of the interpreter receives this.
 */
import type { Scope } from "effect"
import { Clock, Duration, Effect, Metric, Queue, Ref, SubscriptionRef } from "effect"
import type { ResolvedConfig } from "../../MembershipConfig.js"
import * as Metrics from "../../MembershipMetrics.js"
import type { MemberInfo, MembershipStoreService, StaticJoin } from "../../MembershipStore.js"
import type { MemberState } from "../../MemberState.js"
import * as State from "../../MemberState.js"
import type { Event, Member, Timing } from "../../Transition.js"
import * as Transition from "../../Transition.js"

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
  /** `member.state`, observable (`changes`); written by the driver and the final leave. */
  readonly state: SubscriptionRef.SubscriptionRef<MemberState>
  /** Events for the driver, applied one at a time. */
  readonly events: Queue.Queue<Event>
  /** Renew now, for the member's own reasons (an acknowledgement, a reap). */
  readonly poke: Queue.Queue<void>
  /** Renew soon: a notification arrived (rate-limited by the lease keeper). */
  readonly wake: Queue.Queue<void>
  /** The member's scope: background timers are forked into it. */
  readonly scope: Scope.Scope
  readonly metrics: ReturnType<typeof groupMetrics>
}

/** The member's clock, in milliseconds. */
export const nowMillis: Effect.Effect<number> = Effect.map(Clock.currentTimeNanos, (n) => Number(n / 1_000_000n))

const groupMetrics = (groupId: string) => {
  const tagged = <T, I, O>(m: Metric.Metric<T, I, O>) => m.pipe(Metric.tagged("group", groupId))
  return {
    epoch: tagged(Metrics.epoch),
    size: tagged(Metrics.size),
    index: tagged(Metrics.index),
    renegotiations: tagged(Metrics.renegotiations),
    selfFences: tagged(Metrics.selfFences),
    failedHeartbeats: tagged(Metrics.failedHeartbeats),
    barrierSeconds: tagged(Metrics.barrierSeconds),
    stuckWork: tagged(Metrics.stuckWork),
    alarms: tagged(Metrics.alarms),
    clockSteps: tagged(Metrics.clockSteps)
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
      poke: yield* Queue.sliding<void>(1),
      wake: yield* Queue.sliding<void>(1),
      metrics: groupMetrics(config.groupId)
    }
  })

/** Sets the state outside the transition function (the final leave, after the loops have stopped). */
export const setState = (ctx: MemberContext, state: MemberState) =>
  Effect.zipRight(Ref.update(ctx.member, (m) => ({ ...m, state })), SubscriptionRef.set(ctx.state, state))

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
    if (after._tag === "Renegotiating" && before._tag !== "Renegotiating") yield* Metric.update(m.renegotiations, 1)
    if (after._tag === "Fenced" && before._tag !== "Fenced") yield* Metric.update(m.selfFences, 1)
    yield* Effect.logDebug(`state: ${State.format(after)}`).pipe(
      Effect.annotateLogs("epoch", String(State.epochOf(after) ?? ""))
    )
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
