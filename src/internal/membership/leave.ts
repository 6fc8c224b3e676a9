/**
 * The final leave, run when the member's scope closes (after the loops have stopped). Its decisions
 * are `Transition.step`'s: this applies `ScopeClosing` and every event its instructions produce, one
 * at a time like the driver, and runs the instructions (stop the work, renewing the lease every
 * heartbeat meanwhile; while it will not stop, hold the barrier, renewing and saying so; then delete
 * the row). It publishes each state it enters.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as SubscriptionRef from "effect/SubscriptionRef"
import type { Event, Instruction, Observation } from "../../Transition.js"
import * as Transition from "../../Transition.js"
import type { MemberContext } from "./context.js"
import { alarm, clearWaiting, leaveOrRelease, log, measure, nowMillis, recordState, stepNow } from "./context.js"
import { LogEvent } from "./logEvent.js"
import type { WorkRunner } from "./workRunner.js"

export const finalLeave = (ctx: MemberContext, work: WorkRunner) => {
  const { config, groupId, store } = ctx
  const memberId = ctx.info.memberId
  /** Events reported by observations, for the loop below. */
  const reported: Array<Event> = []

  /** Runs one instruction; returns the event it produced, if any. */
  const execute = (instruction: Instruction): Effect.Effect<Event | undefined> => {
    switch (instruction._tag) {
      case "StopWork":
        // As the driver's, but the stop is not watched in the background past the stop timeout (the
        // scope is closing): `HoldUntilStopped` waits for it here. Meanwhile the lease is kept
        // (`StoppingHeartbeat`), the lease keeper having stopped.
        return Effect.gen(function*() {
          yield* work.interrupt
          const stopped = yield* whileRenewing(keepLease, work.awaitStopped.pipe(Effect.timeout(config.stopTimeout), Effect.option))
          return Option.isSome(stopped) ? Transition.Event.WorkStopped() : Transition.Event.StopTimedOut()
        })
      case "HoldUntilStopped":
        // Whichever comes first: the work stops (a renewal in flight is then interrupted), or the
        // heartbeats go on for ever.
        return Effect.gen(function*() {
          yield* whileRenewing(
            Effect.forever(Effect.zipRight(observe(Transition.Observation.StuckHeartbeat()), Effect.sleep(instruction.everyMillis))),
            work.awaitStopped
          )
          yield* observe(Transition.Observation.StuckWorkStopped())
          return undefined
        })
      case "Renew":
        return Effect.gen(function*() {
          const member = yield* Ref.get(ctx.member)
          const { acked, term } = member
          const sentAt = yield* nowMillis
          const result = yield* Effect.either(
            store.heartbeat(groupId, memberId, acked, ctx.timing.leaseMs, {
              stuck: instruction.stuck,
              slots: ctx.config.slots !== undefined,
              ackPlace: ctx.config.slots === undefined ? Transition.ackPlace(member) : undefined
            })
          )
          // As the lease keeper says it: a renewal at close that fails is no reason to leave sooner,
          // but the lease may run out while the work still stops.
          if (result._tag === "Left") yield* Effect.logWarning(`heartbeat failed: ${result.left.reason}`)
          yield* observe(Transition.Observation.RenewalReplied({
            term,
            sentAt,
            receivedAt: yield* nowMillis,
            reply: result._tag === "Left"
              ? Transition.RenewalReply.Failed({ reason: result.left.reason })
              : Option.match(result.right, {
                onNone: () => Transition.RenewalReply.NoRow(),
                onSome: (view) => Transition.RenewalReply.View({ view })
              })
          }))
          return undefined
        })
      case "LeaveRetried": {
        // Deleted, or with an instance id released (`leaveOrRelease`). Each reason said once, not at
        // every retry (a review, attack111: one refusal of ~600 characters said 18-19 times in 2 s).
        const said = new Set<string>()
        return leaveOrRelease(ctx).pipe(
          Effect.tapError((e) =>
            said.has(e.reason) ? Effect.void : Effect.zipRight(
              Effect.sync(() => said.add(e.reason)),
              Effect.logWarning(`leave failed: ${e.reason}`)
            )
          ),
          Effect.retry(Schedule.spaced(Duration.millis(instruction.everyMillis))),
          Effect.timeout(config.statementTimeout),
          Effect.catchAll(() =>
            Effect.logWarning("leave gave up; the lease will expire instead").pipe(
              Effect.annotateLogs(LogEvent.annotation, LogEvent.leaveGaveUp)
            )
          ),
          Effect.as(Transition.Event.LeaveDone())
        )
      }
      case "ClearWaiting":
        // Best effort, for `status` only, and in the background: a store call that hangs must not hold
        // the leave past its bound (G5; the model found a waiting static member's close that hung on it).
        return Effect.as(
          Effect.forkDaemon(Effect.ignore(Effect.timeout(clearWaiting(ctx), config.statementTimeout))),
          undefined
        )
      case "Alarm":
        return Effect.as(alarm(ctx, instruction.reason), undefined)
      case "Log":
        return Effect.as(log(instruction.level, instruction.message), undefined)
      case "Measure":
        return Effect.as(measure(ctx, instruction.metric, instruction.value), undefined)
      case "Report":
        return Effect.as(Effect.sync(() => reported.push(instruction.event)), undefined)
      case "InterruptWork":
        return Effect.as(work.interrupt, undefined)
      case "Join":
      case "RetryJoinIn":
      case "Ack":
      case "Reap":
      case "StartWork":
      case "Leave":
      case "Release":
      case "RecordWaiting":
      case "StartSlot":
      case "StopSlots":
      case "ReleaseSlots":
      case "RetakeSlot":
        // `step` never issues these once the scope is closing.
        return Effect.as(Effect.logError(`modulo-group: bug: ${instruction._tag} at scope close (not run)`), undefined)
    }
  }

  /**
   * `wait`, with `renewals` running meanwhile in a fiber of their own, interrupted without waiting
   * when `wait` ends: a renewal that hangs (store calls that never return) must not hold the leave
   * (G5; the model found one that did, when this was a race, which waits for its loser).
   */
  const whileRenewing = <A>(renewals: Effect.Effect<never>, wait: Effect.Effect<A>): Effect.Effect<A> =>
    Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(
        Effect.forkDaemon(Effect.interruptible(renewals)),
        (keeper) => Effect.ensuring(restore(wait), Fiber.interruptFork(keeper))
      )
    )

  /**
   * While the final leave waits for the work to stop: a heartbeat as the lease keeper would have sent
   * its next (a heartbeat after the last renewal that renewed, at once if that is past), then every
   * heartbeat. Never for a member that has had no lease (no deadline).
   */
  const keepLease: Effect.Effect<never> = Effect.gen(function*() {
    const { deadline } = yield* Ref.get(ctx.member)
    if (deadline === undefined) return yield* Effect.never
    const { heartbeatMs, validMs } = ctx.timing
    yield* Effect.sleep(Math.max(0, deadline - validMs + heartbeatMs - (yield* nowMillis)))
    return yield* Effect.forever(
      Effect.zipRight(observe(Transition.Observation.StoppingHeartbeat()), Effect.sleep(heartbeatMs))
    )
  })

  /** Applies an observation and runs its instructions. */
  const observe = (observation: Observation): Effect.Effect<void> =>
    Effect.flatMap(stepNow(ctx, observation), ({ instructions }) =>
      Effect.forEach(instructions, execute, { discard: true }))

  return Effect.gen(function*() {
    const pending: Array<Event> = [Transition.Event.ScopeClosing()]
    while (pending.length > 0) {
      const input = pending.shift()!
      const { after, before, instructions } = yield* stepNow(ctx, input)
      // Every state the final leave enters is published; so is its first one when the member was in
      // it already (a leave in progress starts over), as `changes` has always shown it.
      if (after !== before || (input._tag === "ScopeClosing" && instructions.length > 0)) {
        yield* SubscriptionRef.set(ctx.state, after)
      }
      // Logged and measured as the driver does (`logStateChanges`: a line per state; a review found
      // the final leave's `leaving` and `left` unlogged), once per state entered.
      if (after !== before) yield* recordState(ctx, before, after)
      for (const instruction of instructions) {
        const result = yield* execute(instruction)
        if (result !== undefined) pending.push(result)
        pending.push(...reported.splice(0))
      }
    }
  }).pipe(
    // Finalizers run uninterruptibly, and the store calls' timeouts need to interrupt a hung call:
    // so in a fiber of its own (a scope closed by an interruption would interrupt it at once).
    Effect.interruptible,
    Effect.fork,
    Effect.flatMap(Fiber.join),
    Effect.ignore
  )
}
