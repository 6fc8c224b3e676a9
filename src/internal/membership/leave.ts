/**
 * The final leave, run when the member's scope closes (after the loops have stopped): stop the work,
 * hold the barrier while it will not stop, then delete the row.
 */
import { Duration, Effect, Fiber, Metric, Option, Ref, Schedule, SubscriptionRef } from "effect"
import * as State from "../../MemberState.js"
import type { MemberContext } from "./context.js"
import { alarm, leaveOrRelease, nowMillis, setState } from "./context.js"
import type { WorkRunner } from "./workRunner.js"

export const finalLeave = (ctx: MemberContext, work: WorkRunner) => {
  const { config, groupId, store } = ctx
  const memberId = ctx.info.memberId

  // Work that will not stop holds the barrier even at shutdown: keep renewing (the loops have
  // stopped by now), say so every heartbeat, and leave only once it has stopped. Never leave, nor
  // let the lease lapse on purpose, while work may still run (G2).
  const holdUntilStopped = Effect.gen(function*() {
    const stopped = yield* work.awaitStopped.pipe(Effect.timeout(config.stopTimeout), Effect.option)
    if (Option.isSome(stopped)) return
    yield* setState(ctx, State.MemberState.Leaving({ stopping: true, stuck: true }))
    const member = yield* Ref.get(ctx.member)
    const since = member.stuckSince ?? (yield* nowMillis)
    yield* Effect.raceFirst(
      work.awaitStopped,
      Effect.gen(function*() {
        const seconds = ((yield* nowMillis) - since) / 1000
        yield* Metric.set(ctx.metrics.stuckWork, seconds)
        yield* alarm(
          ctx,
          `leaving, but work has not stopped for ${seconds.toFixed(1)} s; holding the barrier (renewing the lease) until it does`
        )
        yield* store.heartbeat(groupId, memberId, member.acked, ctx.timing.leaseMs, { stuck: true }).pipe(Effect.ignore)
        yield* Effect.sleep(ctx.timing.heartbeatMs)
      }).pipe(Effect.forever)
    )
    yield* Metric.set(ctx.metrics.stuckWork, 0)
  })

  return Effect.gen(function*() {
    const state = yield* SubscriptionRef.get(ctx.state)
    if (state._tag === "Left") return
    yield* setState(ctx, State.MemberState.Leaving({ stopping: true, stuck: false }))
    yield* work.interrupt
    yield* holdUntilStopped
    yield* setState(ctx, State.MemberState.Leaving({ stopping: false, stuck: false }))
    // Retried for a bounded time: a leave that fails would make the others wait a lease (G5).
    yield* leaveOrRelease(ctx).pipe(
      Effect.tapError((e) => Effect.logWarning(`leave failed: ${e.reason}`)),
      Effect.retry(Schedule.spaced(Duration.millis(100))),
      Effect.timeout(config.statementTimeout),
      Effect.catchAll(() => Effect.logWarning("leave gave up; the lease will expire instead"))
    )
    yield* setState(ctx, State.MemberState.Left())
  }).pipe(
    // Finalizers run uninterruptibly, and the store calls' timeouts need to interrupt a hung call:
    // so in a fiber of its own (a scope closed by an interruption would interrupt it at once).
    Effect.interruptible,
    Effect.fork,
    Effect.flatMap(Fiber.join),
    Effect.ignore
  )
}
