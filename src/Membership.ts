/**
 * The service an app uses: one member of one group. Its decisions are `Transition.step`; the
 * interpreter (src/internal/membership/) runs them: a driver applies events one at a time and runs
 * the instructions, a lease keeper renews on a schedule (faster while waiting at the barrier), a
 * fence timer enforces the local lease deadline, a work runner starts and stops the app's work, and
 * LISTEN/NOTIFY wake-ups only shorten the waits.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as MembershipConfig from "./MembershipConfig.js"
import type { InvalidGroupId } from "./MembershipError.js"
import { InvalidConfig } from "./MembershipError.js"
import { MembershipClosed, StaleAssignment } from "./MembershipError.js"
import { canonicalMemberId } from "./internal/memberId.js"
import { makeContext, nowMillis } from "./internal/membership/context.js"
import { makeDriver } from "./internal/membership/driver.js"
import { fenceTimer } from "./internal/membership/fenceTimer.js"
import { leaseKeeper } from "./internal/membership/leaseKeeper.js"
import { finalLeave } from "./internal/membership/leave.js"
import type { SlotSetSpec, SlotSpec, WorkSpec } from "./internal/membership/workRunner.js"
import { makeWorkRunner } from "./internal/membership/workRunner.js"
import * as InternalLogEvent from "./internal/membership/logEvent.js"
import * as Wakes from "./internal/membership/wakes.js"
import { MembershipStore } from "./MembershipStore.js"
import type { Assignment, AssignmentOwner, MemberState, OwnedSlot, OwnedSlots } from "./MemberState.js"
import * as State from "./MemberState.js"
import * as Transition from "./Transition.js"

/**
 * @since 0.1.0
 * @category models
 */
export interface MembershipService {
  /** This member's id (one per `make`; kept across rejoins). */
  readonly memberId: string
  readonly config: MembershipConfig.ResolvedConfig
  /**
   * The current state, as the member's driver last published it. It lags while the driver waits on
   * the database: the fence stops the work at the lease deadline without the driver, so `Assigned`
   * here is no licence to work; `assignment`, `guard` and `awaitAssigned` are.
   */
  readonly state: Effect.Effect<MemberState>
  /** The current state (as `state`), then every change. */
  readonly changes: Stream.Stream<MemberState>
  /**
   * The assignment work may run under now: `Some` only while assigned and the lease deadline is ahead.
   * Slots mode: whether the member may work; its `index` and `size` have no barrier there and must not
   * partition work (docs/slots.md); the slots do (`owned`, `whileOwning`).
   */
  readonly assignment: Effect.Effect<Option.Option<Assignment>>
  /**
   * Waits until assigned with the lease deadline ahead, and returns that assignment (what `guard`
   * would return at that instant). Fails if the member has left. Work done with it outside a work run
   * (`whileAssigned`, `Work`) that writes through `fenced` must pass it as `fenced`'s `assignment`:
   * plain `fenced` there checks whatever assignment is current when it runs (docs/fencing.md).
   */
  readonly awaitAssigned: Effect.Effect<Assignment, MembershipClosed>
  /**
   * The current assignment, or `StaleAssignment`: call it before every unit of work (G3). Slots mode:
   * see `assignment` (never partition work by its index there).
   */
  readonly guard: Effect.Effect<Assignment, StaleAssignment>
  /**
   * Runs `work` in every epoch this member is assigned in, for as long as the caller's scope lives.
   * It is interrupted, and its finalizers have run, before the member acknowledges a new epoch (G2)
   * and when the lease deadline passes (G3). Closing the caller's scope interrupts the run (without
   * waiting for it); until it has stopped no work of this member starts (a registration made again
   * starts its run after it). A failure is logged; the work runs again next epoch.
   * It runs in the caller's context with this membership as `Membership` (so a plain `Fenced.fenced`
   * in it fences this member's run, also when another member was the caller's `Membership`).
   * Slots mode: member-level work, run once while the member may work (a change does not restart it);
   * its `index` and `size` have no barrier there (see `assignment`).
   */
  readonly whileAssigned: <E, R>(
    work: (assignment: Assignment) => Effect.Effect<unknown, E, R>
  ) => Effect.Effect<void, never, Scope.Scope | R>
  /**
   * Slots mode (`slots` in the config; docs/slots.md): runs `work` once per slot this member works,
   * for as long as the caller's scope lives. A slot's run starts only once this member holds the slot
   * at its generation (`owned`), and is interrupted, its finalizers run, when the slot moves away
   * (before the slot is released to its new owner) and when the lease deadline passes (G3); slots
   * that do not move are never interrupted by a change. A slot is started again only once it is held
   * again. A failure is logged; the slot's work runs again when the slot is next started.
   */
  readonly whileOwning: <E, R>(
    work: (owned: OwnedSlot) => Effect.Effect<unknown, E, R>
  ) => Effect.Effect<void, never, Scope.Scope | R>
  /**
   * Slots mode, the set form (for apps that batch): runs `work` under the set of slots this member
   * works; it is interrupted and started again under the new set whenever the set changes (a slot
   * given up is out of it before that slot is released), and interrupted when the lease deadline
   * passes. Not run while the member works no slot.
   */
  readonly whileOwningAll: <E, R>(
    work: (owned: OwnedSlots) => Effect.Effect<unknown, E, R>
  ) => Effect.Effect<void, never, Scope.Scope | R>
  /** Slots mode: the slots this member works now (empty when none, or when the lease deadline has passed). */
  readonly owned: Effect.Effect<OwnedSlots>
  /**
   * Leaves the group now (the others renegotiate at once, G5). Also done when the scope closes. With
   * an `instanceId` (static membership) it releases the row instead: the index stays held for
   * `rejoinGrace`, and nobody renegotiates unless the instance does not come back in time.
   */
  readonly leave: Effect.Effect<void>
}

/**
 * The log lines that are events an app may act on carry the annotation `modulo_group.event`
 * (`LogEvent.annotation`), whose value says which, so that nobody has to read their wording:
 * - `join_refused` (error): a join refused for good, as long as the group stays as it is (slots mode
 *   against a group of the other mode or another slot count); the member keeps asking.
 * - `leave_gave_up` (warning): the final leave at scope close gave up (the database did not answer
 *   within the statement timeout); the member's row stays until its lease runs out.
 *
 * Every line also carries `modulo_group.group` and `modulo_group.member`. `modulo-group join` exits 1
 * on either (docs/cli.md).
 *
 * @since 0.4.0
 * @category logging
 */
export const LogEvent: typeof InternalLogEvent.LogEvent = InternalLogEvent.LogEvent

/**
 * @since 0.1.0
 * @category tags
 */
export class Membership extends Context.Tag("modulo-group/Membership")<Membership, MembershipService>() {}

// The member ids of this process's live members (any store, any group). Member ids must be unique
// (`MemberIdentity`): a store's row is its member id's, so two members of one process with one id
// renewed, left and rejoined each other's row (an adversarial review: the same id in two groups; the
// join into the second deleted the first's row while it worked, and the first group's next change gave
// its index to another member). Other processes' members are told apart in the database (the row's
// `writer`, migration 0012). Released after the member's leave, so a new member may take the id then.
const liveMemberIds = new Set<string>()

const claimMemberId = (memberId: string): Effect.Effect<void, InvalidConfig, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.suspend(() => {
      if (liveMemberIds.has(memberId)) {
        return Effect.fail(
          new InvalidConfig({
            field: "MemberIdentity",
            reason: `member id ${memberId} is already used by a live member of this process: ` +
              `MemberIdentity.newMemberId must give every member an id of its own`
          })
        )
      }
      liveMemberIds.add(memberId)
      return Effect.void
    }),
    () => Effect.sync(() => void liveMemberIds.delete(memberId))
  )

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
    const identity = yield* MembershipConfig.MemberIdentity
    // One spelling of a uuid (the one the database writes back): the id the member shows, renews and
    // is refused by (a second live member with the same uuid in another spelling included).
    const memberId = canonicalMemberId(yield* identity.newMemberId)
    yield* claimMemberId(memberId)
    const groupId = config.groupId
    const info = { memberId, name: config.name, host: identity.host, pid: identity.pid }
    const ctx = yield* makeContext({ config, store, info, scope })
    // Every assignment handed out names this membership (`owner`): `fenced` refuses it under another.
    const owner: AssignmentOwner = { groupId, memberId }
    const work = yield* makeWorkRunner(
      workScope,
      owner,
      config.slots === undefined ? undefined : ctx.metrics.slotsWorking,
      // As often as the fence timer looks again past the deadline.
      Math.max(1, Math.min(ctx.timing.heartbeatMs, 50))
    )
    const driver = makeDriver(ctx, work)

    const annotate = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      effect.pipe(Effect.annotateLogs({ "modulo_group.group": groupId, "modulo_group.member": memberId }))

    // Registered before the loops are forked, so it runs after they have stopped. Its lines carry the
    // group and the member as the loops' do (its `leaving` and `left` lines among them).
    yield* Effect.addFinalizer(() => annotate(finalLeave(ctx, work)))
    const fail = (name: string) => (cause: Cause.Cause<unknown>) =>
      Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError(`modulo-group ${name} died`, cause)
    const forkLoop = (name: string, loop: Effect.Effect<unknown>) =>
      Effect.forkScoped(annotate(loop).pipe(Effect.catchAllCause(fail(name))))
    // The app's work, as the work runner runs it: in the caller's context with this membership as
    // `Membership` (a run of this member registered where another member of its group was the
    // context's `Membership` fenced that one's assignment: a review; see Fenced.fenced), scoped per
    // run (resources the work acquires are released before the ack or the release), a failure
    // logged, not raised.
    const asWork = <A, E, R>(run: (a: A) => Effect.Effect<unknown, E, R>, failed: (a: A) => string) =>
      Effect.map(Effect.context<R>(), (context) => (a: A): Effect.Effect<void> =>
        // Suspended: a callback that throws is a failure of its run, logged (it escaped the catch,
        // and in slots mode stopped the other slots' starts: a review).
        Effect.scoped(Effect.suspend(() => run(a))).pipe(
          Effect.provide(Context.add(context, Membership, service)),
          Effect.catchAllCause((cause) => Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logWarning(failed(a), cause)),
          Effect.asVoid,
          annotate
        ) as Effect.Effect<void>)

    yield* forkLoop("driver", driver.run)
    yield* forkLoop("lease keeper", leaseKeeper(ctx, driver.observe))
    yield* forkLoop("fence timer", fenceTimer(ctx, driver.observe))
    if (config.notifications) {
      const stream = yield* store.wakeups(groupId)
      // A notification whose payload claims only what the member already knows is skipped
      // (internal/membership/wakes.ts); anything else brings the next renewal forward.
      const wake = (payload: string | undefined) =>
        Effect.flatMap(Ref.get(ctx.member), (member) => {
          const { state } = member
          // Only for the epoch it waits in (a forged one for another epoch changes nothing).
          if (state._tag === "Awaiting" && Wakes.announced(payload) === state.epoch) ctx.heardReady.current = state.epoch
          // A working member told of a newer epoch stops on the notification's word, then renews
          // acknowledging the database's epoch (Transition's `Notified`): the driver decides, and
          // its stop pokes the renewal. Modulo mode only (slots mode has no barrier).
          const claimed = Wakes.claimedEpoch(payload)
          if (
            config.slots === undefined && claimed !== undefined && state._tag === "Assigned" && claimed > state.epoch &&
            Transition.claimsCount(member)
          ) {
            // One claim queued at a time (a flood queues one event; the driver clears the flag).
            if (ctx.claimQueued.current) return Effect.void
            ctx.claimQueued.current = true
            return driver.offer(Transition.Event.Notified({ epoch: claimed }))
          }
          return Wakes.matters(state, payload) ? ctx.signal.wake : Effect.void
        })
      yield* Effect.forkScoped(annotate(Stream.runForEach(stream, (w) =>
        Effect.suspend(() => {
          // Whether the barrier's notification can be relied on (the lease keeper's barrier poll).
          if (w.listening !== undefined) ctx.listening.current = w.listening
          if (w.lost !== undefined) {
            return Effect.zipRight(
              Effect.logWarning(`notification connection lost (${w.lost}); polling until it is back`),
              ctx.signal.wake
            )
          }
          if (w.restored === true) {
            return Effect.zipRight(Effect.logWarning("notification connection back"), ctx.signal.wake)
          }
          return wake(w.payload)
        }))))
    }
    yield* driver.offer(Transition.Event.RetryJoin())

    const assignmentNow = Effect.map(
      Effect.zip(Ref.get(ctx.member), nowMillis),
      ([member, now]) => Option.map(Option.fromNullable(Transition.workable(member, now)), (a): Assignment => ({ ...a, owner }))
    )

    const leaveTimeout = Duration.sum(config.stopTimeout, config.statementTimeout)
    const service: MembershipService = {
      memberId,
      config,
      state: SubscriptionRef.get(ctx.state),
      changes: ctx.state.changes,
      assignment: assignmentNow,
      // What `guard` would allow (assigned, the deadline ahead), not the published state: that is the
      // driver's, and lags while the driver is busy (the fence timer stops the work at the deadline
      // without it). Looked at again on every published state and every heartbeat, so a deadline
      // moved without a new state (a renewal that came before the fence looked) is seen too.
      awaitAssigned: Stream.merge(ctx.state.changes, Stream.fromSchedule(Schedule.spaced(config.heartbeat))).pipe(
        Stream.mapEffect(() => Effect.zip(assignmentNow, SubscriptionRef.get(ctx.state))),
        Stream.filter(([assigned, state]) => Option.isSome(assigned) || state._tag === "Left"),
        Stream.runHead,
        Effect.flatMap((first) =>
          Option.isSome(first) && Option.isSome(first.value[0])
            ? Effect.succeed(first.value[0].value)
            : Effect.fail(new MembershipClosed({ groupId }))
        )
      ),
      guard: Effect.flatMap(assignmentNow, (a) =>
        Option.match(a, {
          onSome: Effect.succeed,
          onNone: () =>
            Effect.flatMap(SubscriptionRef.get(ctx.state), (state) =>
              Effect.fail(
                new StaleAssignment({
                  epoch: State.epochOf(state) ?? -1,
                  reason: state._tag === "Assigned" ? "the lease deadline has passed" : `the member is ${State.format(state)}`
                })
              ))
        })),
      whileAssigned: (run) =>
        Effect.flatMap(asWork(run, () => "work failed"), (run) =>
          work.register({ run } satisfies WorkSpec, Effect.map(assignmentNow, Option.isSome))),
      whileOwning: (run) =>
        Effect.flatMap(asWork(run, (owned) => `work of slot ${owned.slot} failed`), (run) =>
          work.registerSlot({ run } satisfies SlotSpec, Effect.map(assignmentNow, Option.isSome))),
      whileOwningAll: (run) =>
        Effect.flatMap(asWork(run, () => "slot work failed"), (run) =>
          work.registerSlotSet({ run } satisfies SlotSetSpec, Effect.map(assignmentNow, Option.isSome))),
      owned: Effect.gen(function*() {
        const workable = Option.isSome(yield* assignmentNow)
        const list = workable ? yield* work.slots : []
        return {
          slots: list.map((o) => o.slot),
          generations: list.map((o) => o.generation),
          count: config.slots ?? 0,
          owner
        } satisfies OwnedSlots
      }),
      leave: Effect.gen(function*() {
        yield* driver.offer(Transition.Event.LeaveRequested())
        yield* ctx.state.changes.pipe(Stream.filter((s) => s._tag === "Left"), Stream.runHead)
      }).pipe(Effect.timeout(leaveTimeout), Effect.ignore)
    }
    return service
  })

/**
 * Joins `groupId` for as long as the caller's scope lives: one handle per group, so a process can be
 * a member of many groups at once, all over the one `MembershipStore` (with `PgMembership`: one pool,
 * one LISTEN connection). The config is the provided `MembershipConfig` if any (its group id
 * replaced), then `options`, then the defaults.
 *
 * @since 0.1.0
 * @category constructors
 */
export const join = (
  groupId: string,
  options: Omit<MembershipConfig.MembershipConfigInput, "groupId"> = {}
): Effect.Effect<MembershipService, InvalidConfig | InvalidGroupId, MembershipStore | Scope.Scope> =>
  Effect.flatMap(Effect.serviceOption(MembershipConfig.MembershipConfig), (base) => {
    const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined))
    return make({ ...Option.getOrUndefined(base), ...defined, groupId })
  })

/**
 * The app's member, in the group its `MembershipConfig` names, over the provided store. Imports no
 * adapter: `PgMembership.layer` wires it to PostgreSQL, `InMemoryMembershipStore.layer` to memory.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Membership, InvalidConfig | InvalidGroupId, MembershipStore | MembershipConfig.MembershipConfig> =
  Layer.scoped(Membership, Effect.flatMap(MembershipConfig.MembershipConfig, make))

/**
 * The Layer form of `join`, for an app that is a member of several groups: each group under a tag of
 * the app's own, all over the one provided store.
 *
 * @example
 * ```ts
 * import { Context, Layer } from "effect"
 * import { Membership, PgMembership } from "modulo-group"
 *
 * class Orders extends Context.Tag("app/Orders")<Orders, Membership.MembershipService>() {}
 * class Invoices extends Context.Tag("app/Invoices")<Invoices, Membership.MembershipService>() {}
 *
 * // One store (one pool, one LISTEN connection), two memberships.
 * const Members = Layer.mergeAll(Membership.layerJoin(Orders, "orders"), Membership.layerJoin(Invoices, "invoices")).pipe(
 *   Layer.provide(PgMembership.layerStore())
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerJoin = <Self>(
  tag: Context.Tag<Self, MembershipService>,
  groupId: string,
  options: Omit<MembershipConfig.MembershipConfigInput, "groupId"> = {}
): Layer.Layer<Self, InvalidConfig | InvalidGroupId, MembershipStore> => Layer.scoped(tag, join(groupId, options))
