/**
 * The service an app uses: one member of one group. Its decisions are `Transition.transition`; this
 * module is the interpreter: a driver fiber applies events one at a time and runs the commands, a
 * lease keeper renews on a schedule (faster while waiting at the barrier), a fence timer enforces the
 * local lease deadline, and LISTEN/NOTIFY wake-ups only shorten the waits.
 *
 * @since 0.1.0
 */
import type { SqlClient } from "@effect/sql"
import type { PgClient } from "@effect/sql-pg"
import {
  Cause,
  Clock,
  Config,
  Context,
  Duration,
  Effect,
  Equal,
  ExecutionStrategy,
  Fiber,
  Layer,
  Metric,
  Option,
  Queue,
  Ref,
  Schedule,
  Scope,
  Stream,
  SubscriptionRef
} from "effect"
import { randomUUID } from "node:crypto"
import * as os from "node:os"
import * as MembershipConfig from "./MembershipConfig.js"
import type { DatabaseUnavailable, InvalidConfig, InvalidGroupId, SchemaMismatch } from "./MembershipError.js"
import { MembershipClosed, StaleAssignment } from "./MembershipError.js"
import * as Metrics from "./MembershipMetrics.js"
import { MembershipStore } from "./MembershipStore.js"
import type { Assignment, MemberState, Slot } from "./MemberState.js"
import * as State from "./MemberState.js"
import * as PgMembershipStore from "./PgMembershipStore.js"
import type { Command, Event } from "./Transition.js"
import * as Transition from "./Transition.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface MembershipService {
  /** This member's id (one per `make`; kept across rejoins). */
  readonly memberId: string
  readonly config: MembershipConfig.MembershipConfig
  /** The current state. */
  readonly state: Effect.Effect<MemberState>
  /** The current state, then every change. */
  readonly changes: Stream.Stream<MemberState>
  /** The assignment work may run under now: `Some` only while assigned and the lease deadline is ahead. */
  readonly assignment: Effect.Effect<Option.Option<Assignment>>
  /** Waits until assigned. Fails if the member has left. */
  readonly awaitAssigned: Effect.Effect<Assignment, MembershipClosed>
  /** The current assignment, or `StaleAssignment`: call it before every unit of work (G3). */
  readonly guard: Effect.Effect<Assignment, StaleAssignment>
  /**
   * Runs `work` in every epoch this member is assigned in, for as long as the caller's scope lives.
   * It is interrupted, and its finalizers have run, before the member acknowledges a new epoch (G2)
   * and when the lease deadline passes (G3). A failure is logged; the work runs again next epoch.
   */
  readonly whileAssigned: <E, R>(
    work: (assignment: Assignment) => Effect.Effect<unknown, E, R>
  ) => Effect.Effect<void, never, Scope.Scope | R>
  /** Leaves the group now (the others renegotiate at once, G5). Also done when the scope closes. */
  readonly leave: Effect.Effect<void>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Membership extends Context.Tag("modulo-group/Membership")<Membership, MembershipService>() {}

type Envelope = { readonly event: Event; readonly incarnation: number | undefined }

interface WorkSpec {
  readonly run: (assignment: Assignment) => Effect.Effect<void>
}

const toAssignment = (slot: Slot): Assignment => ({ ...slot, isLeader: slot.index === 0 })

const nowMillis = Effect.map(Clock.currentTimeNanos, (n) => Number(n / 1_000_000n))

/**
 * A member, alive for the enclosing scope. Several may live in one process (one per scope).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  input: MembershipConfig.MembershipConfigInput
): Effect.Effect<MembershipService, InvalidConfig | InvalidGroupId, MembershipStore | Scope.Scope> =>
  Effect.gen(function*() {
    const config = yield* MembershipConfig.make(input)
    const store = yield* MembershipStore
    const scope = yield* Effect.scope
    // Work lives in a child scope created before the leave finalizer is registered, so it closes
    // after that finalizer: at shutdown, work sees `Leaving` and is stopped by the leave itself.
    const workScope = yield* Scope.fork(scope, ExecutionStrategy.sequential)
    const memberId = randomUUID()
    const groupId = config.groupId
    const info = { memberId, name: config.name, host: os.hostname(), pid: process.pid }
    const leaseMs = Duration.toMillis(config.lease)
    const validMs = leaseMs - Duration.toMillis(config.fenceMargin)
    const heartbeatMs = Duration.toMillis(config.heartbeat)
    const tagged = <T, I, O>(m: Metric.Metric<T, I, O>) => m.pipe(Metric.tagged("group", groupId))
    const m = {
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

    const stateRef = yield* SubscriptionRef.make<MemberState>(State.MemberState.Joining())
    const events = yield* Queue.unbounded<Envelope>()
    // Renew now: `poke` for the member's own reasons, `wake` for a notification (rate-limited).
    const poke = yield* Queue.sliding<void>(1)
    const wake = yield* Queue.sliding<void>(1)
    const deadline = yield* Ref.make(Option.none<number>())
    let ack = 0
    let incarnation = 0
    let joinFailures = 0
    let barrierSince: number | undefined = undefined
    let stuckSince: number | undefined = undefined
    // After a step of the database clock, leases that look expired may belong to members still
    // working: no reaping until a lease of this member's own clock has passed.
    let reapAfter = Number.NEGATIVE_INFINITY
    const specs = new Set<WorkSpec>()
    // The work fiber of each spec, while it runs. A spec never has two.
    const running = new Map<WorkSpec, Fiber.RuntimeFiber<void>>()
    // The slot work runs under, set by StartWork and cleared by every interrupt (both under the work
    // lock): a worker registered by `whileAssigned` starts on its own only while this is set, so it
    // starts exactly once per StartWork whatever the interleaving.
    let activeSlot: Slot | undefined = undefined

    const offer = (event: Event, inc?: number) => Queue.offer(events, { event, incarnation: inc })
    const extend = (validUntil: number) =>
      Ref.update(deadline, (d) => Option.some(Option.match(d, { onNone: () => validUntil, onSome: (x) => Math.max(x, validUntil) })))

    // --- work ---------------------------------------------------------------------------------
    const startOne = (spec: WorkSpec, slot: Slot) =>
      Effect.gen(function*() {
        if (running.has(spec)) return
        // Interruptible explicitly: `whileAssigned` may start work from inside an uninterruptible
        // acquire, and a fork inherits that; such work could never be stopped at a renegotiation.
        const fiber = yield* Effect.forkIn(Effect.interruptible(spec.run(toAssignment(slot))), workScope)
        running.set(spec, fiber)
        fiber.addObserver(() => {
          if (running.get(spec) === fiber) running.delete(spec)
        })
      })
    // Starting work (after checking the state) and interrupting it exclude each other, so a worker
    // registered during a renegotiation cannot slip past the StopWork that precedes the ack.
    const workLock = yield* Effect.makeSemaphore(1)
    const interruptWork = workLock.withPermits(1)(
      Effect.suspend(() => {
        activeSlot = undefined
        return Effect.forEach([...running.values()], (f) => Fiber.interruptFork(f), { discard: true })
      })
    )
    const awaitWork = Effect.suspend(() => Effect.forEach([...running.values()], (f) => Fiber.await(f), { discard: true }))

    const alarm = (reason: string) =>
      Effect.zipRight(Metric.update(m.alarms, 1), Effect.logError(`modulo-group: ${reason}`))

    // --- commands -----------------------------------------------------------------------------
    const execute = (command: Command): Effect.Effect<Event | undefined> => {
      switch (command._tag) {
        case "Join":
          return Effect.gen(function*() {
            // Never join while old work may still run: its epoch would overlap the new one.
            yield* awaitWork
            const t0 = yield* nowMillis
            const result = yield* Effect.either(store.join(groupId, info, leaseMs))
            if (result._tag === "Left") {
              joinFailures++
              yield* Effect.logWarning(`join failed: ${result.left.reason}`)
              return Transition.Event.JoinFailed({ reason: result.left.reason })
            }
            joinFailures = 0
            incarnation++
            ack = result.right.epoch
            clockSample = { mono: t0, db: result.right.clock, rtt: (yield* nowMillis) - t0 }
            yield* Ref.set(deadline, Option.some(t0 + validMs))
            return Transition.Event.Joined({ view: result.right })
          })
        case "ScheduleJoinRetry": {
          const delay = Math.min(heartbeatMs, 50 * 2 ** Math.min(joinFailures, 10))
          return Effect.as(
            Effect.forkIn(Effect.zipRight(Effect.sleep(delay), offer(Transition.Event.RetryJoin())), scope),
            undefined
          )
        }
        case "RejoinAfterLease":
          return Effect.as(
            Effect.forkIn(Effect.zipRight(Effect.sleep(leaseMs), offer(Transition.Event.RetryJoin())), scope),
            undefined
          )
        case "Ack":
          // An acknowledgement promises that no older work runs (G2): make sure.
          return awaitWork.pipe(
            Effect.zipRight(Effect.sync(() => {
              ack = Math.max(ack, command.epoch)
            })),
            Effect.zipRight(Queue.offer(poke, undefined)),
            Effect.as(undefined)
          )
        case "Reap":
          return Effect.gen(function*() {
            if ((yield* nowMillis) < reapAfter) {
              yield* Effect.logWarning("not reaping: the database clock stepped recently; leases may look expired early")
              return undefined
            }
            yield* store.reap(groupId).pipe(
              Effect.tap((n) => (n > 0 ? Effect.logInfo(`reaped ${n} expired member(s)`) : Effect.void)),
              Effect.catchAll((e) => Effect.logWarning(`reap failed: ${e.reason}`))
            )
            yield* Queue.offer(poke, undefined)
            return undefined
          })
        case "StartWork":
          return Effect.gen(function*() {
            // A reply that arrives after the lease deadline must not start work: fence instead (G3).
            const d = yield* Ref.get(deadline)
            const now = yield* nowMillis
            if (Option.isNone(d) || now >= d.value) return Transition.Event.DeadlinePassed()
            yield* workLock.withPermits(1)(Effect.suspend(() => {
              activeSlot = command.slot
              return Effect.forEach([...specs], (spec) => startOne(spec, command.slot), { discard: true })
            }))
            return undefined
          })
        case "StopWork":
          return Effect.gen(function*() {
            yield* interruptWork
            const stopped = yield* awaitWork.pipe(Effect.timeout(config.stopTimeout), Effect.option)
            if (Option.isSome(stopped)) return Transition.Event.WorkStopped()
            // Past the stop timeout: keep waiting (in the background, so renewals and events go on)
            // and report the stop when it happens. Until then the member holds the barrier.
            stuckSince ??= yield* nowMillis
            yield* Effect.forkIn(
              Effect.zipRight(awaitWork, Effect.suspend(() => {
                stuckSince = undefined
                return Effect.zipRight(Metric.set(m.stuckWork, 0), offer(Transition.Event.WorkStopped()))
              })),
              scope
            )
            return Transition.Event.StopTimedOut()
          })
        case "Leave":
          return store.leave(groupId, memberId).pipe(
            Effect.catchAll((e) => Effect.logWarning(`leave failed (the lease will expire instead): ${e.reason}`)),
            Effect.zipRight(Ref.set(deadline, Option.none())),
            Effect.as(Transition.Event.LeaveDone())
          )
        case "Alarm":
          return Effect.as(alarm(command.reason), undefined)
      }
    }

    // --- observation --------------------------------------------------------------------------
    const observe = (before: MemberState, after: MemberState) =>
      Effect.gen(function*() {
        const now = yield* nowMillis
        if (before._tag === "Assigned" || before._tag === "Joining" || before._tag === "Lost") {
          if (after._tag !== "Assigned") barrierSince ??= now
        }
        if (after._tag === "Assigned") {
          if (barrierSince !== undefined) {
            yield* Metric.update(m.barrierSeconds, (now - barrierSince) / 1000)
          }
          barrierSince = undefined
          yield* Metric.update(m.epoch, after.epoch)
          yield* Metric.update(m.size, after.size)
          yield* Metric.update(m.index, after.index)
        }
        if (after._tag === "Renegotiating" && before._tag !== "Renegotiating") {
          yield* Metric.update(m.renegotiations, 1)
        }
        if (after._tag === "Fenced" && before._tag !== "Fenced") {
          yield* Metric.update(m.selfFences, 1)
        }
        if (!Transition.holdsLease(after)) yield* Ref.set(deadline, Option.none())
        yield* Effect.logDebug(`state: ${State.format(after)}`).pipe(
          Effect.annotateLogs("epoch", String(State.epochOf(after) ?? ""))
        )
      })

    // --- driver -------------------------------------------------------------------------------
    const apply = (first: Event) =>
      Effect.gen(function*() {
        const pending: Array<Event> = [first]
        while (pending.length > 0) {
          const event = pending.shift()!
          const before = yield* SubscriptionRef.get(stateRef)
          const [after, commands] = Transition.transition(before, event)
          if (!Equal.equals(before, after)) {
            yield* SubscriptionRef.set(stateRef, after)
            yield* observe(before, after)
          }
          for (const command of commands) {
            const result = yield* execute(command)
            if (result !== undefined) pending.push(result)
          }
        }
      })

    // Replies of an earlier incarnation (before a rejoin) are stale. Nothing else is dropped: a
    // DeadlinePassed whose deadline a renewal has moved since still takes the member through Fenced,
    // whose next renewal starts the work again (the fence timer has already interrupted it).
    const isStale = (envelope: Envelope) => envelope.incarnation !== undefined && envelope.incarnation !== incarnation

    const driver = Queue.take(events).pipe(
      Effect.flatMap((envelope) => (isStale(envelope) ? Effect.void : apply(envelope.event))),
      // A bug in one step must not kill the driver while the lease keeper keeps renewing.
      Effect.catchAllDefect((defect) => Effect.logError("modulo-group driver step failed", defect)),
      Effect.forever
    )

    // --- lease keeper -------------------------------------------------------------------------
    let fastPolls = 0
    const nextDelay = Effect.map(SubscriptionRef.get(stateRef), (state) => {
      if (state._tag !== "Awaiting") {
        fastPolls = 0
        return heartbeatMs
      }
      // While waiting at the barrier, poll fast (capped at a tenth of a heartbeat): without
      // notifications the barrier then clears within about a heartbeat of the last acknowledgement.
      const base = Duration.toMillis(config.barrierPoll)
      const d = Math.min(Math.max(base, heartbeatMs / 10), base * 2 ** fastPolls)
      fastPolls = Math.min(fastPolls + 1, 30)
      return d
    })

    // The database clock against this member's monotonic clock: each renewal's database time is
    // compared with the previous one's. Their difference may only disagree by the two round trips.
    let clockSample: { mono: number; db: number; rtt: number } | undefined = undefined
    let clockStepLogged = false
    const checkClock = (t0: number, t1: number, db: number) =>
      Effect.gen(function*() {
        const prev = clockSample
        clockSample = { mono: t0, db, rtt: t1 - t0 }
        if (prev === undefined) return
        const drift = (db - prev.db) - (t0 - prev.mono)
        const threshold = Duration.toMillis(config.fenceMargin) / 2 + prev.rtt + (t1 - t0)
        if (Math.abs(drift) <= threshold) {
          clockStepLogged = false
          return
        }
        yield* Metric.update(m.clockSteps, 1)
        if (drift > 0) reapAfter = t1 + leaseMs
        if (!clockStepLogged) {
          clockStepLogged = true
          yield* Effect.logError(
            `modulo-group: the database clock moved ${drift > 0 ? "ahead" : "back"} by about ${Math.abs(Math.round(drift))} ms ` +
              `against this member's clock between two renewals. ` +
              (drift > 0
                ? "Leases are judged on the database clock: members may look expired early. No reaping for one lease."
                : "Crashed members will be noticed later than the lease.")
          )
        }
      })

    const renew = Effect.gen(function*() {
      const state = yield* SubscriptionRef.get(stateRef)
      if (!Transition.holdsLease(state)) return
      const inc = incarnation
      const stuck = State.isStuck(state)
      if (stuck && stuckSince !== undefined) {
        const seconds = ((yield* nowMillis) - stuckSince) / 1000
        yield* Metric.set(m.stuckWork, seconds)
        yield* Effect.logError(
          `modulo-group: work has not stopped for ${seconds.toFixed(1)} s (${State.format(state)}); ` +
            "the group cannot move on until it does"
        )
      }
      const t0 = yield* nowMillis
      const result = yield* Effect.either(
        store.heartbeat(groupId, memberId, ack, leaseMs, { announce: state._tag === "Awaiting", stuck })
      )
      const t1 = yield* nowMillis
      if (result._tag === "Left") {
        yield* Metric.update(m.failedHeartbeats, 1)
        yield* Effect.logWarning(`heartbeat failed: ${result.left.reason}`)
        return yield* offer(Transition.Event.RenewFailed({ reason: result.left.reason }), inc)
      }
      if (Option.isNone(result.right)) {
        const d = yield* Ref.get(deadline)
        return yield* offer(Transition.Event.Gone({ early: Option.isSome(d) && t1 < d.value }), inc)
      }
      if (t0 + validMs <= t1) {
        yield* Metric.update(m.failedHeartbeats, 1)
        return yield* offer(Transition.Event.RenewFailed({ reason: "renewal came back after its deadline" }), inc)
      }
      if (inc === incarnation) {
        yield* checkClock(t0, t1, result.right.value.clock)
        yield* extend(t0 + validMs)
      }
      yield* offer(Transition.Event.Renewed({ view: result.right.value }), inc)
    })

    // A wake-up (a notification, which anyone can send) only brings the next renewal forward, and
    // at most a few times in a row: a flood of notifications costs a bounded number of renewals.
    const wakeBurst = 8
    const wakeRefillMs = Math.max(Duration.toMillis(config.barrierPoll), heartbeatMs / 20)
    let wakeTokens = wakeBurst
    let wakeRefilledAt = 0
    const takeWakeToken: Effect.Effect<void> = Effect.gen(function*() {
      const now = yield* nowMillis
      wakeTokens = Math.min(wakeBurst, wakeTokens + (now - wakeRefilledAt) / wakeRefillMs)
      wakeRefilledAt = now
      if (wakeTokens >= 1) {
        wakeTokens -= 1
        return
      }
      yield* Effect.sleep((1 - wakeTokens) * wakeRefillMs)
      wakeTokens = 0
      wakeRefilledAt = yield* nowMillis
    })

    const leaseKeeper = Effect.gen(function*() {
      const delay = yield* nextDelay
      yield* Effect.raceAll([Effect.sleep(delay), Queue.take(poke), Effect.zipRight(Queue.take(wake), takeWakeToken)])
      yield* renew
    }).pipe(Effect.forever)

    // --- fence timer --------------------------------------------------------------------------
    let fencedFor: number | undefined = undefined
    const fenceTimer = Effect.gen(function*() {
      const d = yield* Ref.get(deadline)
      const now = yield* nowMillis
      if (Option.isNone(d)) return yield* Effect.sleep(heartbeatMs)
      if (now < d.value) return yield* Effect.sleep(d.value - now)
      if (fencedFor !== d.value) {
        fencedFor = d.value
        // Stop work now, without waiting for the driver (which may be blocked on a hung call).
        yield* interruptWork
        yield* offer(Transition.Event.DeadlinePassed())
      }
      yield* Effect.sleep(Math.max(1, Math.min(heartbeatMs, 50)))
    }).pipe(Effect.forever)

    // --- leave --------------------------------------------------------------------------------
    // Work that will not stop holds the barrier even at shutdown: keep renewing (the loops have
    // stopped by now), say so every heartbeat, and leave only once it has stopped. Never leave, nor
    // let the lease lapse on purpose, while work may still run (G2).
    const holdUntilStopped = Effect.gen(function*() {
      const stopped = yield* awaitWork.pipe(Effect.timeout(config.stopTimeout), Effect.option)
      if (Option.isSome(stopped)) return
      yield* SubscriptionRef.set(stateRef, State.MemberState.Leaving({ stopping: true, stuck: true }))
      const since = stuckSince ?? (yield* nowMillis)
      yield* Effect.raceFirst(
        awaitWork,
        Effect.gen(function*() {
          const seconds = ((yield* nowMillis) - since) / 1000
          yield* Metric.set(m.stuckWork, seconds)
          yield* alarm(
            `leaving, but work has not stopped for ${seconds.toFixed(1)} s; holding the barrier (renewing the lease) until it does`
          )
          yield* store.heartbeat(groupId, memberId, ack, leaseMs, { stuck: true }).pipe(Effect.ignore)
          yield* Effect.sleep(heartbeatMs)
        }).pipe(Effect.forever)
      )
      yield* Metric.set(m.stuckWork, 0)
    })

    const finalLeave = Effect.gen(function*() {
      const state = yield* SubscriptionRef.get(stateRef)
      if (state._tag === "Left") return
      yield* SubscriptionRef.set(stateRef, State.MemberState.Leaving({ stopping: true, stuck: false }))
      yield* interruptWork
      yield* holdUntilStopped
      yield* SubscriptionRef.set(stateRef, State.MemberState.Leaving({ stopping: false, stuck: false }))
      // Retried for a bounded time: a leave that fails would make the others wait a lease (G5).
      yield* store.leave(groupId, memberId).pipe(
        Effect.tapError((e) => Effect.logWarning(`leave failed: ${e.reason}`)),
        Effect.retry(Schedule.spaced(Duration.millis(100))),
        Effect.timeout(config.statementTimeout),
        Effect.catchAll(() => Effect.logWarning("leave gave up; the lease will expire instead"))
      )
      yield* SubscriptionRef.set(stateRef, State.MemberState.Left())
    }).pipe(
      // Finalizers run uninterruptibly, and the store calls' timeouts need to interrupt a hung call:
      // so in a fiber of its own (a scope closed by an interruption would interrupt it at once).
      Effect.interruptible,
      Effect.fork,
      Effect.flatMap(Fiber.join),
      Effect.ignore
    )

    // Registered before the loops are forked, so it runs after they have stopped.
    yield* Effect.addFinalizer(() => finalLeave)

    const annotate = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      effect.pipe(Effect.annotateLogs({ "modulo_group.group": groupId, "modulo_group.member": memberId }))

    const fail = (name: string) => (cause: Cause.Cause<unknown>) =>
      Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError(`modulo-group ${name} died`, cause)

    yield* Effect.forkScoped(annotate(driver).pipe(Effect.catchAllCause(fail("driver"))))
    yield* Effect.forkScoped(annotate(leaseKeeper).pipe(Effect.catchAllCause(fail("lease keeper"))))
    yield* Effect.forkScoped(annotate(fenceTimer).pipe(Effect.catchAllCause(fail("fence timer"))))
    if (config.notifications) {
      const stream = yield* store.wakeups(groupId)
      yield* Effect.forkScoped(annotate(Stream.runForEach(stream, (w) =>
        w.lost !== undefined
          ? Effect.zipRight(
            Effect.logWarning(`notification connection lost (${w.lost}); polling until it is back`),
            Queue.offer(wake, undefined)
          )
          : Queue.offer(wake, undefined))))
    }
    yield* offer(Transition.Event.RetryJoin())

    const assignmentNow = Effect.gen(function*() {
      const state = yield* SubscriptionRef.get(stateRef)
      const a = State.assignment(state)
      if (a === undefined) return Option.none<Assignment>()
      const d = yield* Ref.get(deadline)
      const now = yield* nowMillis
      return Option.isSome(d) && now < d.value ? Option.some(a) : Option.none<Assignment>()
    })

    const leaveTimeout = Duration.sum(config.stopTimeout, config.statementTimeout)
    const service: MembershipService = {
      memberId,
      config,
      state: SubscriptionRef.get(stateRef),
      changes: stateRef.changes,
      assignment: assignmentNow,
      awaitAssigned: stateRef.changes.pipe(
        Stream.filter((s) => s._tag === "Assigned" || s._tag === "Left"),
        Stream.runHead,
        Effect.flatMap((s) =>
          Option.isSome(s) && s.value._tag === "Assigned"
            ? Effect.succeed(toAssignment(s.value))
            : Effect.fail(new MembershipClosed({ groupId }))
        )
      ),
      guard: Effect.flatMap(assignmentNow, (a) =>
        Option.match(a, {
          onSome: Effect.succeed,
          onNone: () =>
            Effect.flatMap(SubscriptionRef.get(stateRef), (state) =>
              Effect.fail(
                new StaleAssignment({
                  epoch: State.epochOf(state) ?? -1,
                  reason: state._tag === "Assigned" ? "the lease deadline has passed" : `the member is ${State.format(state)}`
                })
              ))
        })),
      whileAssigned: (work) =>
        Effect.gen(function*() {
          const context = yield* Effect.context<never>()
          const spec: WorkSpec = {
            run: (a) =>
              // Scoped per epoch: resources the work acquires are released before the ack.
              Effect.scoped(work(a)).pipe(
                Effect.provide(context),
                Effect.catchAllCause((cause) =>
                  Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logWarning("work failed", cause)
                ),
                Effect.asVoid,
                annotate
              ) as Effect.Effect<void>
          }
          yield* Effect.acquireRelease(
            workLock.withPermits(1)(Effect.gen(function*() {
              specs.add(spec)
              // Only while a StartWork's work is live (and its deadline ahead): otherwise the next
              // StartWork starts it.
              const a = yield* assignmentNow
              if (activeSlot !== undefined && Option.isSome(a)) yield* startOne(spec, activeSlot)
            })),
            () => Effect.sync(() => specs.delete(spec))
          )
        }),
      leave: Effect.gen(function*() {
        yield* offer(Transition.Event.LeaveRequested())
        yield* stateRef.changes.pipe(Stream.filter((s) => s._tag === "Left"), Stream.runHead)
      }).pipe(Effect.timeout(leaveTimeout), Effect.ignore)
    }
    return service
  })

/**
 * A member over the app's `PgClient`: validates the config, readies the schema, then joins.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  input: MembershipConfig.MembershipConfigInput
): Layer.Layer<
  Membership,
  InvalidConfig | InvalidGroupId | DatabaseUnavailable | SchemaMismatch,
  PgClient.PgClient | SqlClient.SqlClient
> =>
  Layer.scoped(Membership, make(input)).pipe(
    Layer.provide(
      PgMembershipStore.layer({
        migrate: input.migrate,
        startupTimeout: input.startupTimeout,
        statementTimeout: input.statementTimeout
      })
    ),
    // Validate first so bad config fails before any database call.
    (l) => Layer.unwrapEffect(Effect.as(MembershipConfig.make(input), l))
  )

/**
 * Like `layer`, reading the config from the environment (`MODULO_GROUP_*`, see `MembershipConfig.config`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config<MembershipConfig.MembershipConfigInput> = MembershipConfig.config
) => Layer.unwrapEffect(Effect.map(config, layer))

/**
 * Over any store (e.g. `InMemoryMembershipStore.layer` in tests).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerWithStore = (input: MembershipConfig.MembershipConfigInput) => Layer.scoped(Membership, make(input))
