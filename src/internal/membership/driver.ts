/**
 * The driver: takes events one at a time, applies `Transition.step` and runs the instructions it
 * returns (the results of some, e.g. a join's reply, are applied before the next queued event).
 * Observations of the other fibers (`observe`) go through the same `step`, at once.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Random from "effect/Random"
import * as Ref from "effect/Ref"
import * as SubscriptionRef from "effect/SubscriptionRef"
import type { Event, Instruction, Observation } from "../../Transition.js"
import * as Transition from "../../Transition.js"
import type { MemberContext } from "./context.js"
import { InstanceBusy, JoinDeferred, SlotsMismatch } from "../../MembershipError.js"
import { alarm, clearWaiting, connected, leaveOrRelease, log, measure, nowMillis, recordState, recordWaiting, refusedOnce, stepNow } from "./context.js"
import { LogEvent } from "./logEvent.js"
import type { WorkRunner } from "./workRunner.js"

/**
 * After the fence interrupted the work: if the work has not stopped `fenceMargin` later (the end of
 * the lease, as this member counts it) and no renewal has moved the deadline, an alarm.
 */
const watchLeaseEnd = (ctx: MemberContext, work: WorkRunner) =>
  Effect.gen(function*() {
    // The deadline the fence fired for (set by the step that asked for the interrupt: a renewal that
    // moved the deadline while the interrupt waited for the work runner's lock is seen as a move).
    const { fencedFor } = yield* Ref.get(ctx.member)
    const stopped = yield* work.awaitStopped.pipe(Effect.timeout(ctx.timing.fenceMarginMs), Effect.option)
    if (Option.isSome(stopped)) return
    const now = yield* Ref.get(ctx.member)
    if (fencedFor === undefined || (now.deadline !== undefined && now.deadline > fencedFor)) return
    yield* alarm(
      ctx,
      `work interrupted at the lease deadline has not stopped ${ctx.timing.fenceMarginMs} ms later, when this ` +
        "member's lease runs out: the others may reap it and start its assignment beside this work (G2). " +
        "Its cleanup (finalizers included) must fit in fenceMargin: raise fenceMargin or shorten it (docs/work.md)"
    )
  })

/**
 * An operation's failures as said: `${operation} failed: reason` once, the same reason again only
 * once a minute with the attempts since (`last`: the last said; undefined: none, or it succeeded).
 */
const failures = (operation: string) => {
  const state = {
    last: undefined as { reason: string; attempts: number; saidAt: number } | undefined,
    say: (reason: string) =>
      Effect.flatMap(nowMillis, (now) => {
        const last = state.last
        if (last === undefined || last.reason !== reason) {
          state.last = { reason, attempts: 0, saidAt: now }
          return Effect.logWarning(`${operation} failed: ${reason}`)
        }
        last.attempts++
        if (now - last.saidAt < 60_000) return Effect.void
        state.last = { reason, attempts: 0, saidAt: now }
        return Effect.logWarning(`${operation} still failing (${last.attempts} more attempts since said): ${reason}`)
      })
  }
  return state
}

export const makeDriver = (ctx: MemberContext, work: WorkRunner) => {
  const { groupId, store } = ctx
  const offer = (event: Event) => Queue.offer(ctx.events, event)
  let mismatchLogged = false
  // The join's last failure as said: the same reason again is not repeated at every attempt (a
  // refusal that lasts, such as a member id held in another group for a rejoin grace, said it at
  // every heartbeat), only once a minute with the attempts since; a new reason is said at once.
  const joinFailures = failures("join")
  const sayJoinFailed = joinFailures.say
  // The reap's, said the same way: a reap held while a member row is missing fails at every
  // heartbeat until the wait is over, with the same reason.
  const reapFailures = failures("reap")
  // Whether work may start now: the lease deadline is ahead. Checked by the work runner under the
  // lock its interrupt takes: the fence timer may fire between the step that decided a start and the
  // start itself (its interrupt then finds nothing to stop, and it fires once per deadline), and the
  // work must not start after it; the driver may only reach the fence's DeadlinePassed much later
  // (after a slow reap). An adversarial review of the stop on a notification's word noticed the gap.
  // A refused start reports `DeadlinePassed` itself (below).
  const deadlineAhead = Effect.map(Effect.zip(Ref.get(ctx.member), nowMillis), ([m, now]) => m.deadline !== undefined && now < m.deadline)
  const later = (millis: number, event: Event) =>
    Effect.asVoid(Effect.forkIn(Effect.zipRight(Effect.sleep(millis), offer(event)), ctx.scope))

  /** Runs one instruction; returns the event it produced for the driver, if any. */
  const execute = (instruction: Instruction): Effect.Effect<Event | undefined> => {
    switch (instruction._tag) {
      case "Join":
        return Effect.gen(function*() {
          // Never join while old work may still run: its epoch would overlap the new one.
          yield* work.awaitStopped
          const sentAt = yield* nowMillis
          const { waitingSince } = yield* Ref.get(ctx.member)
          const slots = ctx.config.slots
          const result = yield* Effect.either(store.join(groupId, ctx.info, ctx.timing.leaseMs, ctx.statics, {
            // Slots mode has no barrier for an overdue member to hold: no waiting.
            overdueAfterMs: slots === undefined ? Transition.overdueAfterMs(ctx.timing) : undefined,
            waiting: waitingSince !== undefined,
            slots,
            notifications: ctx.config.notifications
          }))
          if (result._tag === "Left") {
            const e = result.left
            // Said by another channel below (a refused connection, a busy instance, a deferral, a
            // mode mismatch): the last reason said by `sayJoinFailed` is said again when it comes
            // back (a review: after an outage the refusal by name went unsaid, the log's last word
            // being that the database refused connections).
            const said = joinFailures.last
            joinFailures.last = undefined
            // The database answered these (refusals of connections before them are over).
            if (e instanceof InstanceBusy || e instanceof JoinDeferred || e instanceof SlotsMismatch) yield* connected(ctx)
            // Static membership: a live holder of the instance id; `step` says so once, and waits.
            if (e instanceof InstanceBusy) return Transition.Event.InstanceBusy({ instanceId: e.instanceId, holder: e.holder })
            // An overdue member: the join waits in a waiting row; `step` says so once, and asks again.
            if (e instanceof JoinDeferred) {
              return Transition.Event.JoinWaiting({
                overdue: e.overdue,
                heartbeatAgeMs: e.heartbeatAgeMs,
                leaseLeftMs: e.leaseLeftMs
              })
            }
            if (e instanceof SlotsMismatch) {
              // Said once (retried like any failed join: the group may be recreated meanwhile).
              if (!mismatchLogged) {
                yield* Effect.logError(`modulo-group: join refused: ${e.reason}`).pipe(
                  Effect.annotateLogs(LogEvent.annotation, LogEvent.joinRefused)
                )
              }
              mismatchLogged = true
              return Transition.Event.JoinFailed({ reason: e.reason })
            }
            if (!(yield* refusedOnce(ctx, "join", e))) {
              joinFailures.last = said
              yield* sayJoinFailed(e.reason)
            }
            return Transition.Event.JoinFailed({ reason: e.reason })
          }
          yield* connected(ctx)
          joinFailures.last = undefined
          if (result.right.takenOver === true) {
            yield* Effect.logInfo(
              `took over instance id ${JSON.stringify(ctx.statics?.instanceId)}: [${result.right.index}/${result.right.size}] ` +
                `in epoch ${result.right.epoch}, no renegotiation`
            )
          }
          return Transition.Event.Joined({ view: result.right, sentAt, receivedAt: yield* nowMillis })
        })
      case "RetryJoinIn":
        // A backoff after a failed join (at most a heartbeat) is jittered, between half and all of
        // it, so that members refused or failed together do not retry together. The wait of a lease
        // before rejoining (`RejoinAfterLease`: a row removed while this member's deadline was ahead)
        // is a safety wait and is never shortened.
        if (instruction.millis >= ctx.timing.leaseMs) {
          return Effect.as(later(instruction.millis, Transition.Event.RetryJoin()), undefined)
        }
        return Effect.flatMap(Random.next, (r) =>
          Effect.as(later(Math.round(instruction.millis * (0.5 + r / 2)), Transition.Event.RetryJoin()), undefined))
      case "Ack":
        // An acknowledgement promises that no older work runs (G2): make sure first.
        return work.awaitStopped.pipe(
          Effect.zipRight(observe(Transition.Observation.Acknowledged({ epoch: instruction.epoch }))),
          Effect.zipRight(ctx.signal.poke),
          Effect.as(undefined)
        )
      case "Reap":
        return Effect.flatMap(nowMillis, (sentAt) =>
          store.reap(groupId).pipe(
            Effect.tap((n) => (n > 0 ? Effect.logInfo(`reaped ${n} expired member(s)`) : Effect.void)),
            // Views of renewals sent before this reap ask for no more (Transition's `Member.reapSentAt`).
            Effect.tap(() => observe(Transition.Observation.Reaped({ sentAt }))),
            Effect.tap(() => Effect.sync(() => void (reapFailures.last = undefined))),
            Effect.catchAll((e) => reapFailures.say(e.reason)),
            Effect.zipRight(ctx.signal.poke),
            Effect.as(undefined)
          ))
      case "StartWork":
        // Refused (the deadline passed since the step that decided it): the member is fenced, as
        // the fence timer would say, and its next renewal in time starts the work (Fenced -> settle).
        // Nothing else would: a renewal that moves the deadline before the fence timer looks leaves
        // the member Assigned with no work (an adversarial review of 0f063d4).
        return Effect.map(work.start(instruction.slot, deadlineAhead), (started) => (started ? undefined : Transition.Event.DeadlinePassed()))
      case "StopWork":
        return Effect.gen(function*() {
          yield* work.interrupt
          const stopped = yield* work.awaitStopped.pipe(Effect.timeout(ctx.config.stopTimeout), Effect.option)
          if (Option.isSome(stopped)) return Transition.Event.WorkStopped()
          // Past the stop timeout: keep waiting (in the background, so renewals and events go on)
          // and report the stop when it happens. Until then the member holds the barrier.
          yield* Effect.forkIn(
            Effect.zipRight(work.awaitStopped, observe(Transition.Observation.StuckWorkStopped())),
            ctx.scope
          )
          return Transition.Event.StopTimedOut()
        })
      case "InterruptWork":
        // The fence. Cut off from the database, nothing keeps the lease past `fenceMargin` from now:
        // work still running then (a long finalizer) may run beside the next epoch, which the
        // others start once they reap this member (docs/work.md). It cannot be prevented from
        // here; it is said, loudly, unless a renewal has moved the deadline meanwhile.
        return Effect.zipRight(work.interrupt, Effect.forkIn(watchLeaseEnd(ctx, work), ctx.scope)).pipe(Effect.as(undefined))
      case "StartSlot":
        return work.startSlot({ slot: instruction.slot, generation: instruction.generation, count: ctx.config.slots ?? 0 }, deadlineAhead).pipe(
          Effect.tap((started) => (started ? Metric.increment(ctx.metrics.slotStarts) : Effect.void)),
          // Refused: fenced, as above (every slot stops and is started again by the next view in time).
          Effect.map((started) => (started ? undefined : Transition.Event.DeadlinePassed()))
        )
      case "StopSlots":
        // Each slot on its own: its stop is awaited in the background (renewals and other slots go
        // on), and reported when done; only then is it released.
        return Effect.gen(function*() {
          // All of them interrupted at once (at the deadline: every slot, in one round), here,
          // before the view's starts (stops first: a start of the same view then restarts the set
          // forms under the smaller set); the runner waits for nothing under its lock, so a set form
          // slow to stop does not hold the driver. The waits run in the background.
          const stopping = yield* work.stopSlots(instruction.slots.map((s) => s.slot))
          yield* Effect.forEach(instruction.slots, ({ generation, slot }) =>
            Effect.forkIn(
              Effect.gen(function*() {
                const stop = yield* Effect.fork(stopping.get(slot) ?? Effect.void)
                // Past the stop timeout: said once, loudly; the slot stays held (never released, so
                // never worked elsewhere) until its work stops (fail closed, this slot only).
                const inTime = yield* Fiber.join(stop).pipe(Effect.timeout(ctx.config.stopTimeout), Effect.option)
                if (Option.isNone(inTime)) {
                  yield* alarm(
                    ctx,
                    `work of slot ${slot} did not stop within stopTimeout; the slot stays held by this member ` +
                      "(not released to its new owner) until it does"
                  )
                  yield* Fiber.join(stop)
                }
                yield* observe(Transition.Observation.SlotStopped({ slot, generation }))
              }),
              ctx.scope
            ), { discard: true })
          return undefined
        })
      case "ReleaseSlots":
        return Effect.gen(function*() {
          const result = yield* Effect.either(store.releaseSlots(groupId, ctx.info.memberId, instruction.stopped))
          if (result._tag === "Left") {
            yield* Effect.logWarning(`slot release failed (its outcome is unknown; the slots stay stopped): ${result.left.reason}`)
          } else {
            yield* Metric.incrementBy(ctx.metrics.slotReleases, result.right.length)
          }
          yield* observe(Transition.Observation.SlotsReleased({
            stopped: instruction.stopped,
            released: result._tag === "Right" ? result.right : undefined,
            at: yield* nowMillis
          }))
          // Learn the outcome (and the next moves) soon.
          yield* ctx.signal.poke
          return undefined
        })
      case "RetakeSlot":
        return store.retakeSlot(groupId, ctx.info.memberId, instruction.slot, instruction.generation).pipe(
          Effect.catchAll((e) => Effect.as(Effect.logWarning(`slot retake failed: ${e.reason}`), false)),
          Effect.zipRight(ctx.signal.poke),
          Effect.as(undefined)
        )
      case "Release":
      case "Leave":
        return leaveOrRelease(ctx).pipe(
          Effect.catchAll((e) => Effect.logWarning(`leave failed (the lease will expire instead): ${e.reason}`)),
          Effect.as(Transition.Event.LeaveDone())
        )
      case "RecordWaiting":
        return Effect.as(recordWaiting(ctx, instruction.instanceId), undefined)
      case "ClearWaiting":
        return Effect.as(clearWaiting(ctx), undefined)
      case "Alarm":
        return Effect.as(alarm(ctx, instruction.reason), undefined)
      case "Log":
        return Effect.as(log(instruction.level, instruction.message), undefined)
      case "Report":
        return Effect.as(offer(instruction.event), undefined)
      case "Measure":
        return Effect.as(measure(ctx, instruction.metric, instruction.value), undefined)
      case "LeaveRetried":
      case "HoldUntilStopped":
      case "Renew":
        // Issued only once the scope is closing, to the final leave (leave.ts): never here.
        return Effect.as(
          Effect.logError(`modulo-group: bug: the driver got ${instruction._tag}, an instruction of the final leave`),
          undefined
        )
    }
  }

  /**
   * Applies an observation at once (from any fiber). Its instructions never block: they report
   * events to the driver, interrupt work, log and measure.
   */
  const observe = (observation: Observation): Effect.Effect<void> =>
    Effect.flatMap(stepNow(ctx, observation), ({ instructions }) =>
      Effect.forEach(instructions, execute, { discard: true }))

  /** Applies `first` and every event its instructions produce, in order. */
  const apply = (first: Event) =>
    Effect.gen(function*() {
      const pending: Array<Event> = [first]
      while (pending.length > 0) {
        const input = pending.shift()!
        // The step and the publication of its state together: when the scope closes and the driver
        // is interrupted, the state seen by `changes` is the member's, which the final leave goes on from.
        const { after, before, instructions } = yield* stepNow(ctx, input).pipe(
          Effect.tap(({ after, before }) => (after !== before ? SubscriptionRef.set(ctx.state, after) : Effect.void)),
          Effect.uninterruptible
        )
        if (after !== before) yield* recordState(ctx, before, after)
        // Just joined, into a barrier, while the lease keeper is still in the wait it began before
        // the join (a heartbeat long): it renews now, as the join's renewal at the barrier, and
        // polls on from there (leaseKeeper.ts). Nothing else woke it: the joiner skips its own
        // join's notification (it knows that epoch, wakes.ts), and without notifications there is
        // none; its first poll came up to a heartbeat after the join (test/Timing.test.ts).
        if (after._tag === "Awaiting" && !Transition.holdsLease(before) && ctx.keeperBeforeJoin.current) {
          yield* ctx.signal.poke
        }
        // Just joined, straight to work, from a join whose view came back late (it rode along another
        // member's change and waited for its turn, a slow server): the lease it holds began when the
        // join was sent, and the lease keeper's wait in progress (a heartbeat long, begun before the
        // join) may end too late for a renewal to land before the deadline (an adversarial review).
        // It renews now. A join back in time leaves it to its wait (no renewal more per join).
        if (after._tag === "Assigned" && !Transition.holdsLease(before) && ctx.keeperBeforeJoin.current) {
          const { deadline } = yield* Ref.get(ctx.member)
          if (deadline !== undefined && (yield* nowMillis) + ctx.timing.heartbeatMs + Duration.toMillis(ctx.config.statementTimeout) > deadline) {
            yield* ctx.signal.poke
          }
        }
        // One step's instructions together: the set forms restart once, under the set they leave.
        yield* work.batch(Effect.gen(function*() {
          for (const instruction of instructions) {
            const result = yield* execute(instruction)
            if (result !== undefined) pending.push(result)
          }
        }))
      }
    })

  // A `WorkStopped` in the queue was reported by the watcher of a stop past the stop timeout (the
  // StopWork's own, in time, is applied at once, never queued): no work ran when it was reported. It
  // says nothing of work started since (a rejoin's, while the report waited behind other events), and
  // taken for that work's stop it would let the member acknowledge, leave or work again while that work
  // still runs (G2; an adversarial review: `Leaving` took it for the stop of the rejoin's work, which
  // was slow to stop too, and the member deleted its row). So it applies only if no work runs now: the
  // driver alone starts work, so none starts between this check and the step. A state that still
  // waits for a stop has asked for it (StopWork) after that work started, and hears of it in turn.
  const current = (event: Event): Effect.Effect<boolean> =>
    event._tag === "WorkStopped"
      ? Effect.tap(work.stoppedNow, (stopped) =>
        stopped ? Effect.void : Effect.logDebug("modulo-group: a report of stopped work older than the work running now, dropped"))
      : Effect.succeed(true)

  const run = Queue.take(ctx.events).pipe(
    Effect.tap((event) => {
      if (event._tag === "Notified") ctx.claimQueued.current = false
    }),
    Effect.flatMap((event) => Effect.flatMap(current(event), (ok) => (ok ? apply(event) : Effect.void))),
    // A bug in one step must not kill the driver while the lease keeper keeps renewing.
    Effect.catchAllDefect((defect) => Effect.logError("modulo-group driver step failed", defect)),
    Effect.forever
  )

  return { run, observe, offer }
}
