/**
 * The protocol's decisions, pure: no I/O, and time only as numbers passed in. Two levels:
 *
 * - `transition(state, event) -> [state, commands]`: the member's state machine (the diagram in
 *   docs/state-machine.md).
 * - `step(member, input, now) -> [member, instructions]`: everything the interpreter must decide,
 *   `transition` included: the local lease deadline, which replies are stale (an earlier term),
 *   what a late renewal means, the join backoff, the clock-step check, how long the barrier and
 *   stuck work lasted, and the final leave at scope close (hold the barrier while the work will
 *   not stop, renewing every heartbeat; then delete the row, retried). `Member` is the state plus
 *   the few numbers these decisions need.
 *
 * The interpreter (src/internal/membership/) applies `step` and runs the instructions it returns:
 * the driver while the member lives, the final leave (leave.ts) once its scope closes.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import * as Equal from "effect/Equal"
import type { Assignment, Slot } from "./MemberState.js"
import { assignment as assignmentOf, epochOf, isStuck, MemberState } from "./MemberState.js"
import type { GroupView, StoppedSlot } from "./MembershipStore.js"
import * as Holdings from "./internal/slots/holdings.js"

/**
 * What can happen to a member. Every event but `Notified` comes from the database (a store call's
 * result), the member's own clock, or its own work. `Notified` comes from a notification, which
 * anyone can send: it never changes what the member believes about the group, it only makes a
 * working member stop early and ask the database (see `Notified`).
 *
 * @since 0.1.0
 * @category models
 */
export type Event = Data.TaggedEnum<{
  /**
   * The join transaction committed. `sentAt` / `receivedAt`: the member's clock (milliseconds) when
   * the join was sent and its reply came back (default: when the event is applied).
   */
  Joined: { readonly view: GroupView; readonly sentAt?: number | undefined; readonly receivedAt?: number | undefined }
  /** The join transaction failed or timed out. */
  JoinFailed: { readonly reason: string }
  /** Time to retry a failed join. */
  RetryJoin: {}
  /**
   * A renewal succeeded in time (its lease deadline is still ahead). `term`, here and in `Gone` and
   * `RenewFailed`: the member's term when the renewal was sent (see `Member.term`); absent, never stale.
   */
  Renewed: {
    readonly view: GroupView
    readonly term?: number | undefined
    readonly sentAt?: number | undefined
    /** The renewal's number in its lease keeper's order (`Member.ackingFrom`); absent: never stale. */
    readonly renewal?: number | undefined
  }
  /**
   * A renewal found no live row: reaped, expired or deleted. `early`: the local lease deadline was
   * still ahead, so the row went while this member could still have been working: someone judged
   * its lease by a clock that disagrees (a stepped database clock, a restore) or deleted it by hand,
   * and other members of its epoch may still be working too.
   */
  Gone: { readonly early: boolean; readonly term?: number | undefined }
  /** A renewal failed, timed out or came back too late to count. */
  RenewFailed: { readonly reason: string; readonly term?: number | undefined }
  /** The local lease deadline passed (the fence timer has interrupted the work). */
  DeadlinePassed: {}
  /** Every work fiber has stopped and its finalizers ran. */
  WorkStopped: {}
  /** Work did not stop within the stop timeout (it is still being waited for). */
  StopTimedOut: {}
  /** The app asked to leave. */
  LeaveRequested: {}
  /**
   * The member's scope is closing: the final leave. The interpreter's loops have stopped and any
   * command in flight (a stop, a join waiting for old work) was interrupted, so the state no longer
   * tells whether work runs: the work is stopped, and waited for, whatever the state says.
   */
  ScopeClosing: {}
  /** The leave transaction finished (or gave up: the lease then expires on its own). */
  LeaveDone: {}
  /**
   * Static membership: the join found this member's instance id held by a live member (`holder`),
   * which may be working: nothing was changed, and the member retries (until the holder releases
   * it or its lease runs out on the database clock).
   */
  InstanceBusy: { readonly instanceId: string; readonly holder: string }
  /**
   * The join found a member overdue (`overdue`: its last renewal `heartbeatAgeMs` ago, its lease
   * still `leaseLeftMs`): a change now would stop every working member until that lease runs out.
   * The join changed nothing but this member's waiting row; the member asks again soon (and is
   * given an index by the next change, typically the reap of the overdue member).
   */
  JoinWaiting: { readonly overdue: string; readonly heartbeatAgeMs: number; readonly leaseLeftMs: number }
  /**
   * A notification claimed that the group's epoch `epoch` exists (a join or a leave committed it).
   * Anyone can send one, so it is only a reason to stop early: a working member stops its work
   * (`Renegotiating` with `next` its own epoch: the next one is not known yet) and, once stopped,
   * waits (`Awaiting`), where every renewal acknowledges the database's epoch, whatever it is. So
   * the renewal that learns the change also acknowledges it, one round trip fewer per change (issue
   * 15); a claim that turns out false costs a pause of the work and one renewal, and makes the
   * member ignore claims until the database shows it a newer epoch (`Member.claimsIgnoredIn`): a
   * stranger's claims pause a member's work at most once per epoch the group really moves to.
   * `afterRenewal`: the number of the last renewal the lease keeper had numbered when the driver took
   * the claim (stamped by the driver, `stepNow`); only a later renewal settles it.
   */
  Notified: { readonly epoch: number; readonly afterRenewal?: number | undefined }
}>

/**
 * @since 0.1.0
 * @category constructors
 */
export const Event = Data.taggedEnum<Event>()

/**
 * Every event tag (used by the transition table and the diagram).
 *
 * @since 0.1.0
 * @category constants
 */
export const eventTags = [
  "Joined",
  "JoinFailed",
  "RetryJoin",
  "Renewed",
  "Gone",
  "RenewFailed",
  "DeadlinePassed",
  "WorkStopped",
  "StopTimedOut",
  "LeaveRequested",
  "ScopeClosing",
  "LeaveDone",
  "InstanceBusy",
  "JoinWaiting",
  "Notified"
] as const satisfies ReadonlyArray<Event["_tag"]>

/**
 * What the interpreter must do, in order.
 *
 * @since 0.1.0
 * @category models
 */
export type Command = Data.TaggedEnum<{
  /** Run the join transaction (after any old work has fully stopped). */
  Join: {}
  /** Retry the join after a backoff. */
  ScheduleJoinRetry: {}
  /**
   * Rejoin only after a whole lease on the member's own clock: by then every member that worked in
   * the lost epoch has stopped (each stops at its next renewal or its local deadline).
   */
  RejoinAfterLease: {}
  /** From now on renewals acknowledge `epoch`; renew at once. */
  Ack: { readonly epoch: number }
  /** Delete expired members and bump the epoch. */
  Reap: {}
  /** Start the registered work under this slot. */
  StartWork: { readonly slot: Slot }
  /** Interrupt the work and wait for its finalizers (bounded by the stop timeout, then watched). */
  StopWork: {}
  /** Delete this member's row; the others renegotiate at once. */
  Leave: {}
  /** Something is wrong that the member refuses to act on: log it as an error and count it. */
  Alarm: { readonly reason: string }
  /**
   * Slots mode, a refused view: once the work asked to stop has stopped, rejoin (`Member.refusing`);
   * until then act on no view.
   *
   * @since 0.4.0
   */
  RejoinWhenStopped: {}
}>

/**
 * @since 0.1.0
 * @category constructors
 */
export const Command = Data.taggedEnum<Command>()

/**
 * The result of one step.
 *
 * @since 0.1.0
 * @category models
 */
export type Step = readonly [MemberState, ReadonlyArray<Command>]

const stay = (state: MemberState): Step => [state, []]

const slotOf = (view: Slot): Slot => ({
  epoch: view.epoch,
  index: view.index,
  size: view.size,
  incarnation: view.incarnation
})

/**
 * A reap when the view says a row is expired (or the group is behind an acknowledgement: a restore).
 * Never for a view of an older epoch than the member knows: the database went back (a restore, a
 * failover that lost commits), and a member whose row it lost may still work; a reap then moves the
 * group on beside it. Asking for one after a lease of such views was tried (a review, attack92: a
 * crashed member's index unworked until a join or leave) and broken twice: members read leases from
 * the rows the database went back to, which lack a lost member's (attack94), or a takeover's made in
 * the epoch (attack95). The member says so instead (`Member.behind`).
 */
const reapIf = (view: GroupView): ReadonlyArray<Command> => (view.expired ? [Command.Reap()] : [])

/**
 * `known` under the higher of its and `view`'s incarnation, for a view of the same epoch. Every
 * change sets the incarnation (the database clock in ms); a renewal that waited for a change's row
 * lock reads the group as before the change, so its view, built from the member's own row, carries
 * the change's epoch with the incarnation before it. A later view of that epoch carries the committed
 * one, never lower (a review, attack90: slots-mode members of one epoch worked under two tokens).
 */
const withIncarnationOf = (known: Slot, view: GroupView): Slot =>
  view.epoch === known.epoch && view.incarnation > known.incarnation ? { ...slotOf(known), incarnation: view.incarnation } : slotOf(known)

/**
 * A view of the epoch the member already knows that names another index or size: no committed state
 * of the tables says both (an edit by hand, or a store bug). The member refuses it.
 */
const contradicts = (known: Slot, view: GroupView): boolean =>
  view.epoch === known.epoch && (view.index !== known.index || view.size !== known.size)

const contradiction = (known: Slot, view: GroupView): string =>
  `the database says [${view.index}/${view.size}] in epoch ${view.epoch}, ` +
  `but this member holds [${known.index}/${known.size}] in that epoch`

/**
 * Refuse a contradicting view: never act on it. The member can no longer tell that its index is its
 * own, so it rejoins (the join bumps the epoch: everyone renegotiates from one state again). Its
 * work must stop first (`refuseWorking`).
 */
const refuse = (known: Slot, view: GroupView): Step => [
  MemberState.Lost(),
  [Command.Alarm({ reason: `${contradiction(known, view)}; refusing the view and rejoining` }), Command.Join()]
]

const refusingWhileStopping = "refusing the view: stopping the work (the lease is kept until it has stopped), then rejoining"

/**
 * Refuse a contradicting view while working: stop the work, keeping the row and the lease while it
 * may still run (a member never lets its lease lapse while its work may run: with work that will
 * not stop, a lapsed lease let the others reap this member and start a new epoch beside that work).
 * Modulo mode: the member renegotiates into its own epoch, acknowledging nothing new; once the work
 * has stopped, the next view is judged again: the same contradiction is refused (`settle`: the
 * member rejoins), a newer epoch is acknowledged as any other. Slots mode (no barrier to hold):
 * fenced while stopping, then it rejoins (`RejoinWhenStopped`).
 */
const refuseWorking = (known: Slot, view: GroupView): Step => {
  const alarm = Command.Alarm({ reason: `${contradiction(known, view)}; ${refusingWhileStopping}` })
  return slotsMode(view)
    ? [MemberState.Fenced({ ...slotOf(known), stopping: true, stuck: false }), [alarm, Command.StopWork(), Command.RejoinWhenStopped()]]
    : [MemberState.Renegotiating({ ...slotOf(known), next: slotOf(known), stuck: false }), [alarm, Command.StopWork()]]
}

/**
 * Slots mode (docs/slots.md): the view carries the member's slots. The epoch still orders views but
 * is no barrier: nobody stops, acknowledges or waits for the others at a change; each slot is started
 * and stopped on its own (`step`, with `internal/slots/holdings.ts`).
 */
const slotsMode = (view: GroupView): boolean => view.slots !== undefined

/** A member that is not working learns `view`: acknowledge a newer epoch, or start when the barrier is down. */
const settle = (state: MemberState, known: Slot, view: GroupView): Step => {
  if (view.epoch < known.epoch) return stay(state)
  if (contradicts(known, view)) return refuse(known, view)
  if (slotsMode(view)) {
    const slot = view.epoch > known.epoch ? slotOf(view) : withIncarnationOf(known, view)
    return [MemberState.Assigned(slot), [Command.StartWork({ slot }), ...reapIf(view)]]
  }
  // Start only when everyone, this member included, has acknowledged this very epoch (G2), as read
  // from one committed state by a renewal.
  const slot = slotOf(view.epoch > known.epoch ? view : known)
  if (view.allAcked && view.acked >= view.epoch) {
    // Under the incarnation of that committed state: the epoch may have been learnt from a view
    // built from the member's own row alone (a renewal that waited for a change's row lock reads the
    // group as before the change, its incarnation included), and every change sets the incarnation
    // (the database clock in ms): started so, one epoch was worked under two tokens (the failover test).
    const started = withIncarnationOf(slot, view)
    return [MemberState.Assigned(started), [Command.StartWork({ slot: started }), ...reapIf(view)]]
  }
  // A newer epoch that this renewal did not acknowledge (a renewal sent while waiting acknowledges
  // the database's epoch, see `Notified`; one sent while stopping does not): acknowledge it now.
  if (view.epoch > known.epoch && view.acked < view.epoch) {
    return [MemberState.Awaiting(slot), [Command.Ack({ epoch: view.epoch }), ...reapIf(view)]]
  }
  return [MemberState.Awaiting(slot), reapIf(view)]
}

const joining = (state: MemberState, event: Event): Step => {
  switch (event._tag) {
    case "Joined":
      return enter(event.view)
    case "JoinFailed":
      return [state, [Command.ScheduleJoinRetry()]]
    case "InstanceBusy":
      // Never take an instance id from a live holder: wait and ask again.
      return [state, [Command.ScheduleJoinRetry()]]
    case "JoinWaiting":
      // Never stop the group for a barrier an overdue member may not clear: wait and ask again.
      return [state, [Command.ScheduleJoinRetry()]]
    case "RetryJoin":
      return [MemberState.Joining(), [Command.Join()]]
    case "LeaveRequested":
      // A join may have committed after it timed out: delete by member id anyway.
      return [MemberState.Leaving({ stopping: false, stuck: false }), [Command.Leave()]]
    default:
      return stay(state)
  }
}

/** A fresh member has acknowledged the epoch it created. */
const enter = (view: GroupView): Step =>
  slotsMode(view) || (view.allAcked && view.acked >= view.epoch)
    ? [MemberState.Assigned(slotOf(view)), [Command.StartWork({ slot: slotOf(view) })]]
    : [MemberState.Awaiting(slotOf(view)), []]

/** Leave: at once when no work runs, else once it has stopped (`stopAlreadyAsked`: a StopWork is in flight). */
const leave = (working: boolean, stopAlreadyAsked = false, stuck = false): Step =>
  working
    ? [MemberState.Leaving({ stopping: true, stuck }), stopAlreadyAsked ? [] : [Command.StopWork()]]
    : [MemberState.Leaving({ stopping: false, stuck: false }), [Command.Leave()]]

/** The row is gone. The Join waits for any old work to stop; an early loss waits a lease first. */
const lost = (event: { readonly early: boolean }, stopWork: boolean): Step => [
  MemberState.Lost(),
  [
    ...(stopWork ? [Command.StopWork()] : []),
    ...(event.early
      ? [
        Command.Alarm({
          reason: "this member's row was removed while its lease deadline was still ahead " +
            "(a database clock step, a restore or an edit by hand); rejoining after one lease " +
            "(the longest of the group's, as the last renewal read them)"
        }),
        Command.RejoinAfterLease()
      ]
      : [Command.Join()])
  ]
]

const stuckAlarm = (what: string): Command =>
  Command.Alarm({
    reason: `work did not stop within stopTimeout (${what}); holding the barrier: this member keeps ` +
      "its lease and will not acknowledge a new epoch until its work stops"
  })

/**
 * The scope closes: stop the work and wait for it, whatever the state (a stop in flight was
 * interrupted with the loops), then leave as every member whose work is stopping does: the row goes
 * only after `WorkStopped`, and past the stop timeout the member holds the barrier (`StopTimedOut`).
 * A leave in progress starts over the same way. Only `Left` has nothing left to do.
 */
const scopeClosing = (state: MemberState): Step =>
  state._tag === "Left" ? stay(state) : [MemberState.Leaving({ stopping: true, stuck: false }), [Command.StopWork()]]

/**
 * One step of the protocol. Events that do not apply to a state are ignored (the state is kept and
 * no command issued): replies can arrive late and out of order, so every decision compares epochs.
 *
 * @since 0.1.0
 * @category transition
 */
export const transition = (state: MemberState, event: Event): Step =>
  event._tag === "ScopeClosing" ? scopeClosing(state) : MemberState.$match(state, {
    Joining: () => joining(state, event),
    Lost: () => joining(state, event),
    Awaiting: (s): Step => {
      switch (event._tag) {
        case "Renewed":
          return settle(state, s, event.view)
        case "Gone":
          return lost(event, false)
        case "DeadlinePassed":
          return [MemberState.Fenced({ ...slotOf(s), stopping: false, stuck: false }), []]
        case "LeaveRequested":
          return leave(false)
        default:
          return stay(state)
      }
    },
    Assigned: (s): Step => {
      switch (event._tag) {
        case "Renewed": {
          const view = event.view
          // Slots mode: a newer epoch is no barrier; the work goes on (slots move one by one).
          if (slotsMode(view) && view.epoch > s.epoch) return [MemberState.Assigned(slotOf(view)), reapIf(view)]
          // Slots mode, the same epoch under a higher incarnation: the epoch was learnt from a view
          // built from the member's own row (see `withIncarnationOf`); the committed one's from now on.
          if (slotsMode(view) && view.epoch === s.epoch && view.incarnation > s.incarnation && !contradicts(s, view)) {
            return [MemberState.Assigned(withIncarnationOf(s, view)), reapIf(view)]
          }
          if (view.epoch > s.epoch) {
            return [
              MemberState.Renegotiating({ ...slotOf(s), next: slotOf(view), stuck: false }),
              [Command.StopWork(), ...reapIf(view)]
            ]
          }
          if (contradicts(s, view)) return refuseWorking(s, view)
          return [state, view.epoch === s.epoch ? reapIf(view) : []]
        }
        case "Gone":
          return lost(event, true)
        case "DeadlinePassed":
          return [MemberState.Fenced({ ...slotOf(s), stopping: true, stuck: false }), [Command.StopWork()]]
        case "LeaveRequested":
          return leave(true)
        case "Notified":
          // Stop on the word of a notification (anyone can send one): the next epoch is not known
          // yet, so `next` is this one; once stopped, the member waits, and its renewals acknowledge
          // whatever epoch the database has (see `Notified`). A claim of a known epoch changes nothing.
          return event.epoch > s.epoch
            ? [MemberState.Renegotiating({ ...slotOf(s), next: slotOf(s), stuck: false }), [Command.StopWork()]]
            : stay(state)
        default:
          return stay(state)
      }
    },
    Renegotiating: (s): Step => {
      switch (event._tag) {
        case "Renewed": {
          const view = event.view
          return view.epoch > s.next.epoch
            ? [MemberState.Renegotiating({ ...s, next: slotOf(view) }), reapIf(view)]
            : [state, view.epoch === s.next.epoch ? reapIf(view) : []]
        }
        case "WorkStopped":
          return [MemberState.Awaiting(s.next), [Command.Ack({ epoch: s.next.epoch })]]
        case "StopTimedOut":
          // Acknowledging now would let the next epoch start beside the old work (G2), and leaving
          // would drop this member from the barrier: keep the lease, never acknowledge, wait.
          return s.stuck ? stay(state) : [MemberState.Renegotiating({ ...s, stuck: true }), [stuckAlarm(`epoch ${s.epoch}`)]]
        case "Gone":
          // The StopWork already asked for is still in flight; the Join waits for the work to stop.
          return lost(event, false)
        case "LeaveRequested":
          return leave(true, true, s.stuck)
        default:
          // DeadlinePassed: the work is being stopped already and nothing starts here.
          return stay(state)
      }
    },
    Fenced: (s): Step => {
      const slot = slotOf(s)
      switch (event._tag) {
        case "Renewed": {
          const view = event.view
          if (!s.stopping) return settle(state, slot, view)
          // Slots mode: nothing to acknowledge; once stopped, the next renewal settles.
          if (slotsMode(view)) return [state, reapIf(view)]
          // The old work is still stopping: learn a newer epoch, acknowledge it only once stopped.
          return view.epoch > s.epoch
            ? [MemberState.Renegotiating({ ...slot, next: slotOf(view), stuck: s.stuck }), reapIf(view)]
            : [state, view.epoch === s.epoch ? reapIf(view) : []]
        }
        case "WorkStopped":
          // The next renewal (within a heartbeat) starts the work again if the epoch still holds.
          return s.stopping ? [MemberState.Fenced({ ...slot, stopping: false, stuck: false }), []] : stay(state)
        case "StopTimedOut":
          return s.stopping && !s.stuck
            ? [MemberState.Fenced({ ...slot, stopping: true, stuck: true }), [stuckAlarm(`fenced in epoch ${s.epoch}`)]]
            : stay(state)
        case "Gone":
          return lost(event, false)
        case "LeaveRequested":
          return leave(s.stopping, true, s.stuck)
        default:
          return stay(state)
      }
    },
    Leaving: (s): Step => {
      switch (event._tag) {
        case "WorkStopped":
          return s.stopping ? [MemberState.Leaving({ stopping: false, stuck: false }), [Command.Leave()]] : stay(state)
        case "StopTimedOut":
          return s.stopping && !s.stuck
            ? [MemberState.Leaving({ stopping: true, stuck: true }), [stuckAlarm("leaving")]]
            : stay(state)
        case "LeaveDone":
          return s.stopping ? stay(state) : [MemberState.Left(), []]
        default:
          return stay(state)
      }
    },
    Left: (): Step => stay(state)
  })

/**
 * Whether work may be running in this state (the interpreter starts work only on `StartWork`).
 *
 * @since 0.1.0
 * @category getters
 */
export const mayWork = (state: MemberState): boolean => state._tag === "Assigned"

/**
 * The place (size and index) the member holds in the epoch its renewals acknowledge (`Member.acked`),
 * from its state: what the renewals name with the acknowledgement (`MembershipStore`'s `ackPlace`), so
 * that the store does not count it for another assignment issued under the same epoch number (a
 * restore that took back the change that issued it). `undefined` when the state holds no slot of that
 * epoch (the store then records the epoch as it is).
 *
 * @since 0.5.0
 * @category getters
 */
export const ackPlace = (member: Pick<Member, "state" | "acked">): { readonly size: number; readonly index: number } | undefined => {
  const s = member.state
  if ("epoch" in s && s.epoch === member.acked) return { size: s.size, index: s.index }
  if (s._tag === "Renegotiating" && s.next.epoch === member.acked) return { size: s.next.size, index: s.next.index }
  // Leaving, its work maybe still stopping: it holds no place it could name, and must not have its
  // acknowledgement count for an assignment its row is given meanwhile (a review, attack89: after a
  // restore that took back the last change, a leaving member's unnamed acknowledgement lowered the
  // barrier of the epoch issued again while its work ran on). A place no row is given: its row's
  // acknowledgement stays what it was (it leaves once its work has stopped; that is the change).
  if (s._tag === "Leaving") return noPlace
  return undefined
}

/** A place no row is ever given (`ackPlace`): the acknowledgement of the row's own epoch is not recorded. */
const noPlace = { size: -1, index: -1 } as const

/**
 * Whether the member holds a lease that renewals must keep alive: as a member, and while leaving
 * until its work has stopped (a member never lets its lease lapse while its work may run).
 *
 * @since 0.1.0
 * @category getters
 */
export const holdsLease = (state: MemberState): boolean =>
  state._tag === "Awaiting" || state._tag === "Assigned" || state._tag === "Renegotiating" ||
  state._tag === "Fenced" || (state._tag === "Leaving" && state.stopping)

// --- the member: the state and the numbers the interpreter's decisions need ----------------------

/**
 * The durations the decisions use, in milliseconds.
 *
 * @since 0.1.0
 * @category models
 */
export interface Timing {
  /** How long a lease lives on the database clock. */
  readonly leaseMs: number
  /** How long after a renewal was sent work may go on: the lease minus the fence margin. */
  readonly validMs: number
  /** The renewal interval (also the longest join backoff). */
  readonly heartbeatMs: number
  /** The fence margin (half of it is the clock-step tolerance). */
  readonly fenceMarginMs: number
}

/**
 * One reading of the database clock against the member's clock, taken by a join or a renewal.
 *
 * @since 0.1.0
 * @category models
 */
export interface ClockReading {
  /** The member's clock when the call was sent (ms). */
  readonly sentAt: number
  /** The database clock in the reply (ms since the Unix epoch). */
  readonly database: number
  /** The call's round trip (ms). */
  readonly roundTrip: number
}

/**
 * Everything one member knows, in one value. All times are the member's clock in milliseconds.
 *
 * @since 0.1.0
 * @category models
 */
export interface Member {
  readonly timing: Timing
  readonly state: MemberState
  /**
   * The local lease deadline: the send time of the last renewal (or join) that came back in time,
   * plus `validMs`. Work may run only before it (G3). `undefined` while no lease is held.
   */
  readonly deadline: number | undefined
  /**
   * Counts the member's successful joins. A renewal reply carries the term it was sent in: a reply
   * sent before the latest join is about the old row, and is stale.
   */
  readonly term: number
  /** The epoch renewals acknowledge (recorded only once no older work runs). */
  readonly acked: number
  /** Failed joins in a row (the backoff of the next retry). */
  readonly joinFailures: number
  /** Since when the member has been out of `Assigned` (for the barrier histogram). */
  readonly barrierSince: number | undefined
  /** Since when the member's work has not stopped though asked to (past `stopTimeout`). */
  readonly stuckSince: number | undefined
  /**
   * No reaping before this time: after the database clock stepped ahead, leases that look expired
   * may belong to members still working, until a lease of this member's own clock has passed.
   */
  readonly reapAfter: number
  /** The last clock reading of a renewal in time (or the join), to detect database clock steps. */
  readonly clockReading: ClockReading | undefined
  /**
   * The longest lease of the group's live rows, as the join or the last renewal in time read them
   * (`GroupView.longestLeaseMs`; absent: not read). What the member waits out before it reaps
   * after a clock step and before it rejoins after its row vanished early is the longer of this and
   * its own lease (`holdOffMs`): a member of the group may run with a longer lease than this one.
   *
   * @since 0.5.0
   */
  readonly longestLeaseMs?: number | undefined
  /** A clock step has been logged and the clock has not agreed since (log once per episode). */
  readonly clockStepLogged: boolean
  /** The deadline the fence has already fired for (it fires once per deadline). */
  readonly fencedFor: number | undefined
  /**
   * The member's scope is closing (`ScopeClosing`): the loops have stopped and the final leave runs
   * the instructions. Nobody renews nor watches stuck work in the background any more: the final
   * leave holds the barrier itself (`HoldUntilStopped`), and deletes the row retrying (`LeaveRetried`).
   */
  readonly closing: boolean
  /**
   * Static membership: the member's instance id. With one, a graceful leave releases the row
   * (`Release`) instead of deleting it (`Leave`).
   */
  readonly instanceId?: string | undefined
  /**
   * Waiting for an instance id held by a live member: a join found it busy, and no join has
   * succeeded since (nor has the member been asked to leave). "Held by a live member" is said once
   * per wait, and the waiter row (`RecordWaiting`, for `status`) is cleared when the wait ends.
   */
  readonly instanceBusyLogged?: boolean | undefined
  /**
   * Since when the member has been waiting to join (`JoinWaiting`): it has a waiting row, which a
   * change may have given an index meanwhile; its next join takes that row (`waiting`). Cleared by
   * `Joined`.
   */
  readonly waitingSince?: number | undefined
  /**
   * Slots mode: the member's slots (what it works, stops, has released); absent in modulo mode and
   * before the first join in slots mode. Changed by the slot views of joins and renewals and by the
   * slot observations; reset by every join (a join re-issues the generations of the slots its
   * member's earlier row held, see docs/slots.md) and whenever the member stops all its work.
   */
  readonly slots?: Holdings.Holdings | undefined
  /**
   * Slots mode: the member refused a view that contradicts the slots it works, and stops all its
   * work (`Fenced`, stopping): it keeps its row and its lease meanwhile, acts on no view, and rejoins
   * once the work has stopped. Cleared by that rejoin, or when the member leaves that state.
   *
   * @since 0.4.0
   */
  readonly refusing?: boolean | undefined
  /**
   * The notification the member stopped on (`Notified`): the epoch it claimed, the epoch the member
   * worked in, when (member's clock), and the last renewal numbered by then (`afterRenewal`). The
   * first renewal sent after it settles the claim: a newer epoch than `from` proves a change; none
   * makes it a false claim. Cleared either way.
   */
  readonly claim?: {
    readonly epoch: number
    readonly from: number
    readonly at: number
    readonly afterRenewal?: number | undefined
  } | undefined
  /**
   * After a false claim, notifications make no member working in this epoch or an older one stop:
   * claims count again once the database has shown the member a newer epoch (a real change, which
   * pauses the work anyway). Per epoch rather than per lease: a forger re-arming every lease could
   * keep interrupting work that takes longer than a lease, and never let it finish.
   */
  readonly claimsIgnoredIn?: number | undefined
  /**
   * The number of the latest renewal sent acknowledging the group's epoch (`AckingCurrent`): it may
   * have acknowledged an epoch newer than any view the driver has applied yet, so no view of an
   * earlier renewal starts work (the driver can lag behind the lease keeper's replies, e.g. while a
   * slow reap blocks it, and such a view may show an older epoch's barrier down).
   */
  readonly ackingFrom?: number | undefined
  /**
   * When (member's clock) the last reap that succeeded was sent (`Reaped`). A view of a renewal sent
   * before it asks for no reap of its own: that reap came after it (a driver blocked in a slow reap
   * otherwise found every view queued meanwhile saying "expired", and reaped once per view).
   */
  readonly reapSentAt?: number | undefined
  /**
   * Since when (member's clock) every renewal's view has shown an older epoch than the one the member
   * knows (the database went back: a restore, a failover that lost commits), and whether it has said
   * so. Such views ask for no reap (see `reapIf`); once they have shown it for a lease and one of them
   * says a member's lease ran out, the member says, once, that the group will not move on by itself
   * (a crashed member's index unworked, fenced writes refused as stale) until a join or a leave.
   * Cleared by a view of the known epoch or a newer one (a single late reply is not the database
   * going back).
   */
  readonly behind?: { readonly since: number; readonly said: boolean } | undefined
}

/**
 * A member that has not joined yet.
 *
 * @since 0.1.0
 * @category constructors
 */
export const initialMember = (timing: Timing, instanceId?: string | undefined): Member => ({
  timing,
  state: MemberState.Joining(),
  deadline: undefined,
  term: 0,
  acked: 0,
  joinFailures: 0,
  barrierSince: undefined,
  stuckSince: undefined,
  reapAfter: Number.NEGATIVE_INFINITY,
  clockReading: undefined,
  clockStepLogged: false,
  fencedFor: undefined,
  closing: false,
  ...(instanceId === undefined ? {} : { instanceId, instanceBusyLogged: false })
})

/**
 * What a renewal came back with.
 *
 * @since 0.1.0
 * @category models
 */
export type RenewalReply = Data.TaggedEnum<{
  /** The call failed or timed out. */
  Failed: { readonly reason: string }
  /** No live row: reaped, expired or deleted. */
  NoRow: {}
  /** The group's view. */
  View: { readonly view: GroupView }
}>

/**
 * @since 0.1.0
 * @category constructors
 */
export const RenewalReply = Data.taggedEnum<RenewalReply>()

/**
 * What a fiber of the interpreter observed and applies at once (not through the driver's queue):
 * observations change the member's numbers and may report an `Event` to the driver, never the state.
 * (At scope close, `StuckHeartbeat` also alarms and renews: the final leave runs it, not the driver.)
 *
 * @since 0.1.0
 * @category models
 */
export type Observation = Data.TaggedEnum<{
  /**
   * The lease keeper's renewal, sent at `sentAt` in `term`, came back at `receivedAt`. `renewal`: its
   * number in the lease keeper's order (absent: the final leave's).
   */
  RenewalReplied: {
    readonly term: number
    readonly sentAt: number
    readonly receivedAt: number
    readonly reply: RenewalReply
    readonly renewal?: number | undefined
  }
  /**
   * The lease keeper is about to send renewal number `renewal` acknowledging the group's epoch
   * (`ackCurrent`), if the member waits (`Awaiting`: no work runs). Recorded only then
   * (`Member.ackingFrom`), atomically with that check; the lease keeper acknowledges the group's
   * epoch only if it was.
   */
  AckingCurrent: { readonly renewal: number }
  /** A reap sent at `sentAt` (member's clock) succeeded (`Member.reapSentAt`). */
  Reaped: { readonly sentAt: number }
  /** The fence timer looks at the deadline. */
  DeadlineCheck: {}
  /** An `Ack` command has made sure no older work runs: renewals acknowledge `epoch` from now on. */
  Acknowledged: { readonly epoch: number }
  /** Work that was stuck past `stopTimeout` has stopped at last. */
  StuckWorkStopped: {}
  /** At scope close, while the work will not stop (`HoldUntilStopped`): a heartbeat has come. */
  StuckHeartbeat: {}
  /**
   * At scope close, while the final leave waits for the work to stop (before `stopTimeout`): a
   * heartbeat has come (the lease keeper has stopped; the lease is kept until the work has stopped).
   */
  StoppingHeartbeat: {}
  /** Slots mode: every work fiber of `slot` under `generation` has stopped (after `StopSlots`). */
  SlotStopped: { readonly slot: number; readonly generation: number }
  /**
   * Slots mode: the release of `stopped` was answered at `at` (member's clock): `released`, the slots
   * it released; absent when its outcome is unknown (it failed or timed out, and may still apply).
   */
  SlotsReleased: {
    readonly stopped: ReadonlyArray<StoppedSlot>
    readonly released?: ReadonlyArray<number> | undefined
    readonly at: number
  }
}>

/**
 * @since 0.1.0
 * @category constructors
 */
export const Observation = Data.taggedEnum<Observation>()

/**
 * Every observation tag (used by the step table and the diagram).
 *
 * @since 0.1.0
 * @category constants
 */
export const observationTags = [
  "RenewalReplied",
  "AckingCurrent",
  "Reaped",
  "DeadlineCheck",
  "Acknowledged",
  "StuckWorkStopped",
  "StuckHeartbeat",
  "StoppingHeartbeat",
  "SlotStopped",
  "SlotsReleased"
] as const satisfies ReadonlyArray<Observation["_tag"]>

/**
 * What the interpreter runs: the state machine's commands with their timing decided, and the
 * bookkeeping around them.
 *
 * @since 0.1.0
 * @category models
 */
export type Instruction = Data.TaggedEnum<{
  /** Run the join transaction (after any old work has fully stopped). */
  Join: {}
  /** Send `RetryJoin` after `millis`. */
  RetryJoinIn: { readonly millis: number }
  /** Wait until no older work runs, then apply `Acknowledged(epoch)` and renew at once. */
  Ack: { readonly epoch: number }
  /** Delete expired members and bump the epoch; renew at once. */
  Reap: {}
  /** Start the registered work under this slot. */
  StartWork: { readonly slot: Slot }
  /** Interrupt the work and wait for it (bounded by the stop timeout, then watched in the background). */
  StopWork: {}
  /** Interrupt the work now, without waiting for it (the fence: the driver may be blocked). */
  InterruptWork: {}
  /** Delete this member's row. */
  Leave: {}
  /**
   * Delete this member's row, retrying every `everyMillis` for up to the statement timeout (at scope
   * close: a leave that fails makes the others wait a lease, G5), then report `LeaveDone`.
   */
  LeaveRetried: { readonly everyMillis: number }
  /**
   * At scope close, work past `stopTimeout`: wait for it to stop, applying `StuckHeartbeat` at once and
   * then every `everyMillis` meanwhile; once it has stopped, apply `StuckWorkStopped`.
   */
  HoldUntilStopped: { readonly everyMillis: number }
  /** Renew the lease now (the lease keeper has stopped), and apply the reply as `RenewalReplied`. */
  Renew: { readonly stuck: boolean }
  /**
   * Static membership: release this member's row instead of deleting it (index kept, epoch
   * unchanged; its work has stopped). Reports `LeaveDone` like `Leave`.
   */
  Release: {}
  /**
   * Static membership, for `status` only: write (or refresh) this member's waiter row, saying it
   * waits for `instanceId`, held by `holder`. Best effort; nothing in the protocol reads it.
   */
  RecordWaiting: { readonly instanceId: string; readonly holder: string }
  /** Static membership: the wait is over (a join succeeded, or the member leaves): delete the waiter row. */
  ClearWaiting: {}
  /** Slots mode: start the registered slot work of `slot` under `generation`. */
  StartSlot: { readonly slot: number; readonly generation: number }
  /**
   * Slots mode: interrupt the work of these slots (only theirs), and apply `SlotStopped` for each
   * once all its fibers have ended.
   */
  StopSlots: { readonly slots: ReadonlyArray<StoppedSlot> }
  /** Slots mode: release these stopped slots (`releaseSlots`), then apply `SlotsReleased`. */
  ReleaseSlots: { readonly stopped: ReadonlyArray<StoppedSlot> }
  /** Slots mode: take `slot` back at a new generation (`retakeSlot`), then renew. */
  RetakeSlot: { readonly slot: number; readonly generation: number }
  /** Log an error and count it (`modulo_group_alarms_total`). */
  Alarm: { readonly reason: string }
  /** Log a line. */
  Log: { readonly level: "Warning" | "Error" | "Info"; readonly message: string }
  /** Hand `event` to the driver. */
  Report: { readonly event: Event }
  /** Record a metric: counters add `value`, the histogram records it, the gauge is set to it. */
  Measure: { readonly metric: "failedHeartbeats" | "clockSteps" | "barrierSeconds" | "stuckWork"; readonly value: number }
}>

/**
 * @since 0.1.0
 * @category constructors
 */
export const Instruction = Data.taggedEnum<Instruction>()

/**
 * The result of `step`.
 *
 * @since 0.1.0
 * @category models
 */
export type MemberStep = readonly [Member, ReadonlyArray<Instruction>]

/** The backoff of a join retry after `failures` failures in a row: 50 ms doubling, at most a heartbeat. */
const joinBackoff = (timing: Timing, failures: number): number =>
  Math.min(timing.heartbeatMs, 50 * 2 ** Math.min(failures, 10))

/**
 * A join treats a member as overdue when its last renewal (store clock) is this old while its lease
 * still holds: two heartbeats of the joiner (members of a group share their timing), at least a
 * heartbeat + 100 ms. A live member renews every heartbeat plus a round trip, so only a crashed or
 * hung one, or one whose renewals take a whole heartbeat, looks overdue; a wrong guess only delays
 * the join (until that member's next renewal, at most one lease), never the others.
 *
 * @since 0.1.0
 * @category getters
 */
export const overdueAfterMs = (timing: Timing): number =>
  Math.max(timing.heartbeatMs * 2, timing.heartbeatMs + 100)

/** A waiting joiner asks again this often (each time one short change transaction). */
const waitingPollMs = (timing: Timing): number => Math.max(10, timing.heartbeatMs / 4)

/** The final leave retries the delete this often (within the statement timeout). */
const leaveRetryMs = 100

const isObservation = (input: Event | Observation): input is Observation =>
  (observationTags as ReadonlyArray<string>).includes(input._tag)

/**
 * One step of a member at time `now` (the member's clock, in milliseconds). An `Event` goes through
 * `transition`; an `Observation` only updates the member's numbers. Returns the same `member` (by
 * reference) when nothing changes.
 *
 * @since 0.1.0
 * @category transition
 */
export const step = (member: Member, input: Event | Observation, now: number): MemberStep =>
  isObservation(input) ? observe(member, input, now) : onEvent(member, input, now)

const onEvent = (member: Member, event: Event, now: number): MemberStep => {
  // A reply to a renewal sent before the latest join is about the old row.
  if ("term" in event && event.term !== undefined && event.term !== member.term) return [member, []]
  const { timing } = member
  let m = member
  // Waiting for a busy instance id: a successful join, a leave or the scope's close ends the wait.
  const waitOver = m.instanceBusyLogged === true &&
    (event._tag === "Joined" || event._tag === "LeaveRequested" || event._tag === "ScopeClosing")
  if (waitOver) m = { ...m, instanceBusyLogged: false }
  switch (event._tag) {
    case "Joined": {
      const sentAt = event.sentAt ?? now
      m = {
        ...m,
        term: m.term + 1,
        acked: event.view.epoch,
        joinFailures: 0,
        clockReading: { sentAt, database: event.view.clock, roundTrip: (event.receivedAt ?? now) - sentAt },
        longestLeaseMs: event.view.longestLeaseMs,
        deadline: sentAt + timing.validMs
      }
      if (m.waitingSince !== undefined) m = { ...m, waitingSince: undefined }
      break
    }
    case "JoinWaiting":
      break
    case "JoinFailed":
      m = { ...m, joinFailures: m.joinFailures + 1 }
      break
    case "InstanceBusy":
      m = { ...m, joinFailures: m.joinFailures + 1 }
      break
    case "StopTimedOut":
      if (m.stuckSince === undefined) m = { ...m, stuckSince: now }
      break
    case "LeaveDone":
      if (m.deadline !== undefined) m = { ...m, deadline: undefined }
      break
    case "ScopeClosing":
      if (!m.closing && m.state._tag !== "Left") m = { ...m, closing: true }
      break
    case "Notified":
      // Slots mode has no barrier to stop for; after a false claim, none until the epoch moves.
      if (m.slots !== undefined || !claimsCount(m)) return [m, []]
      break
  }
  const claimSettled = claimOutcome(m, event)
  if (claimSettled !== undefined) m = { ...m, claim: undefined }
  // The view of an older epoch than the member knows (see `Member.behind`).
  const known = knownEpoch(m.state)
  const older = event._tag === "Renewed" && known !== undefined && event.view.epoch < known
  if (event._tag === "Renewed" && known !== undefined) {
    m = older ? (m.behind === undefined ? { ...m, behind: { since: now, said: false } } : m) : m.behind === undefined ? m : { ...m, behind: undefined }
  }
  const behindSaid: Array<Instruction> = []
  if (older && event.view.expired && m.behind !== undefined && !m.behind.said && now - m.behind.since >= holdOffMs(m)) {
    m = { ...m, behind: { ...m.behind, said: true } }
    behindSaid.push(Instruction.Log({
      level: "Error",
      message: `modulo-group: the database has been at epoch ${event.view.epoch}, below the epoch ${known} this member ` +
        "works, for a lease (a restore from a backup, or a failover that lost commits?), and a member's lease has run out. " +
        "Nobody reaps while the database is behind (a member whose row it lost may still work): that member's share " +
        "stays unworked and fenced writes are refused as stale until a member joins or leaves. Restart one member to move the group on."
    }))
  }
  let [after, commands] = transition(m.state, event)
  // Slots mode, a refused view: the work has stopped now (the lease was kept until then): rejoin.
  if (m.refusing === true && event._tag === "WorkStopped" && after._tag === "Fenced" && !after.stopping) {
    after = MemberState.Lost()
    commands = [Command.Join()]
  }
  // A view of a renewal sent before one that acknowledged the group's epoch (maybe a newer one than
  // this view's: the others may start it) must not start work: wait for that renewal's view.
  if (
    event._tag === "Renewed" && event.renewal !== undefined && m.ackingFrom !== undefined &&
    event.renewal < m.ackingFrom && after._tag === "Assigned" && commands.some((c) => c._tag === "StartWork")
  ) {
    after = MemberState.Awaiting(slotOf(after))
    commands = commands.filter((c) => c._tag !== "StartWork")
  }
  if (event._tag === "Notified" && after._tag === "Renegotiating" && m.state._tag === "Assigned") {
    m = { ...m, claim: { epoch: event.epoch, from: m.state.epoch, at: now, afterRenewal: event.afterRenewal } }
  }
  // A renewal sent while waiting acknowledged the database's epoch (see `Notified`): record it, as an
  // `Ack` would (the member is not working, so any epoch it acknowledges is safe).
  if (
    event._tag === "Renewed" && event.view.slots === undefined && event.view.acked > m.acked &&
    event.view.acked <= event.view.epoch && m.state._tag === "Awaiting"
  ) {
    m = { ...m, acked: event.view.acked }
  }
  // A reply that arrives after the lease deadline must not start work: fenced instead (G3); the
  // next renewal in time starts the work.
  const start = commands.find((c) => c._tag === "StartWork")
  if (start !== undefined && (m.deadline === undefined || now >= m.deadline) && after._tag === "Assigned") {
    after = MemberState.Fenced({ ...slotOf(after), stopping: false, stuck: false })
    commands = commands.filter((c) => c !== start)
  }
  // Slots mode: the member's slots follow its views (docs/slots.md, "A renewal").
  const slotSteps: Array<Instruction> = []
  if (m.slots !== undefined && commands.some((c) => c._tag === "RejoinWhenStopped")) {
    // Refused by `transition` (its epoch with another index or size): as below.
    m = { ...m, slots: Holdings.empty(m.slots.count) }
  } else {
    const [slots, actions] = slotsOnEvent(m, event, after, now)
    const contradiction = actions.find((a) => a._tag === "Contradiction")
    if (contradiction !== undefined && (after._tag === "Assigned" || after._tag === "Fenced") && slots !== undefined) {
      // Refuse the view, as a contradicting index is refused: stop everything, keeping the row and
      // the lease while any of it may run (with work that will not stop, a lapsed lease let another
      // member start its slots beside it), then rejoin (`RejoinWhenStopped`), acting on no view
      // until then. The StopWork stops every slot's work: no slot is stopped on its own (a stop of a
      // slot by its number, still running in the background when the rejoin started that slot again,
      // stopped the new work), and the slots are forgotten as a lost member's are (the rejoin
      // re-issues them).
      after = MemberState.Fenced({ ...slotOf(after), stopping: true, stuck: after._tag === "Fenced" && after.stuck })
      commands = [
        Command.Alarm({ reason: `${contradiction.reason}; ${refusingWhileStopping}` }),
        Command.StopWork(),
        Command.RejoinWhenStopped()
      ]
      m = { ...m, slots: Holdings.empty(slots.count) }
    } else {
      if (slots !== m.slots) m = { ...m, slots }
      for (const a of actions) slotSteps.push(slotInstruction(a))
    }
    if (event._tag === "Renewed" && event.view.slots !== undefined && event.view.epoch > m.acked && contradiction === undefined) {
      // No barrier in slots mode: renewals record the epoch they saw (for status; nobody waits on it).
      m = { ...m, acked: event.view.epoch }
    }
  }
  const instructions: Array<Instruction> = [...(waitOver ? [Instruction.ClearWaiting()] : []), ...behindSaid]
  if (claimSettled === "false" && m.claim === undefined && event._tag === "Renewed") {
    const through = Math.max(event.view.epoch, member.claim?.from ?? 0)
    m = { ...m, claimsIgnoredIn: through }
    instructions.push(Instruction.Log({
      level: "Warning",
      message: `a notification claimed epoch ${member.claim?.epoch} but the database is at epoch ${event.view.epoch}: ` +
        `the work stopped for nothing; notifications stop no work until the group's epoch moves past ${through} ` +
        "(is something else sending NOTIFY on the group's channel?)"
    }))
  }
  if (event._tag === "JoinWaiting" && commands.length > 0 && m.waitingSince === undefined) {
    // Said once per wait (until a join succeeds).
    m = { ...m, waitingSince: now }
    instructions.push(Instruction.Log({
      level: "Warning",
      message: `waiting to join: member ${event.overdue} has not renewed for ${event.heartbeatAgeMs} ms ` +
        `(lease left ${event.leaseLeftMs} ms); the group keeps working, and this member joins when that ` +
        "member renews or is reaped"
    }))
  }
  if (event._tag === "InstanceBusy" && commands.length > 0) {
    if (m.instanceBusyLogged !== true) {
      // Said once per wait (until a join succeeds), not at every retry.
      m = { ...m, instanceBusyLogged: true }
      instructions.push(Instruction.Log({
        level: "Warning",
        message: `instance id ${JSON.stringify(event.instanceId)} is held by a live member (${event.holder}); ` +
          "waiting until it releases or its lease expires"
      }))
    }
    // At every retry: `status` shows waiters seen within their lease.
    instructions.push(Instruction.RecordWaiting({ instanceId: event.instanceId, holder: event.holder }))
  }
  // Stuck at scope close: nobody renews nor watches the work in the background any more. The final
  // leave holds the barrier itself, alarming every heartbeat and the first time at once, with how
  // long the work has run on (`StuckHeartbeat`): that alarm stands for the stop timeout's.
  const holdAtClose = m.closing && event._tag === "StopTimedOut" && holdsLease(after)
  for (const c of commands) {
    switch (c._tag) {
      case "Alarm":
        if (!holdAtClose) instructions.push(c)
        break
      case "RejoinWhenStopped":
        m = { ...m, refusing: true }
        break
      case "Leave":
        // At scope close, retried; static membership: a graceful leave releases the row (the work
        // has stopped by now).
        instructions.push(
          m.closing ? Instruction.LeaveRetried({ everyMillis: leaveRetryMs }) : m.instanceId !== undefined ? Instruction.Release() : c
        )
        break
      case "ScheduleJoinRetry":
        instructions.push(Instruction.RetryJoinIn({
          millis: event._tag === "JoinWaiting" ? waitingPollMs(timing) : joinBackoff(timing, m.joinFailures)
        }))
        break
      case "RejoinAfterLease":
        instructions.push(Instruction.RetryJoinIn({ millis: holdOffMs(m) }))
        break
      case "Reap":
        // A view older than the last reap: that reap already came after what it saw.
        if (event._tag === "Renewed" && event.sentAt !== undefined && m.reapSentAt !== undefined && event.sentAt <= m.reapSentAt) break
        instructions.push(
          now < m.reapAfter
            ? Instruction.Log({
              level: "Warning",
              message: "not reaping: the database clock stepped recently; leases may look expired early"
            })
            : Instruction.Reap()
        )
        break
      default:
        instructions.push(c)
    }
  }
  instructions.push(...slotSteps)
  if (holdAtClose) instructions.push(Instruction.HoldUntilStopped({ everyMillis: timing.heartbeatMs }))
  if (!Equal.equals(after, m.state)) {
    const before = m.state
    m = { ...m, state: after }
    if ((before._tag === "Assigned" || before._tag === "Joining" || before._tag === "Lost") && after._tag !== "Assigned") {
      if (m.barrierSince === undefined) m = { ...m, barrierSince: now }
    }
    if (after._tag === "Assigned") {
      if (m.barrierSince !== undefined) {
        instructions.push(Instruction.Measure({ metric: "barrierSeconds", value: (now - m.barrierSince) / 1000 }))
      }
      m = { ...m, barrierSince: undefined }
    }
    if (!holdsLease(after) && m.deadline !== undefined) m = { ...m, deadline: undefined }
    if (m.refusing === true && after._tag !== "Fenced") m = { ...m, refusing: undefined }
  }
  return [m, instructions]
}

/**
 * Whether a notification's claim may stop this member's work now (`Notified`): it works, no claim it
 * stopped on is still open (`Member.claim`: unsettled until a renewal sent after it replies), and it
 * has not found a claim false in its epoch or an older one (`Member.claimsIgnoredIn`). A claim while
 * one is open replaced it: a forger that claimed a few milliseconds after each renewal went out
 * paused the work about every round trip (the renewal in flight, sent before the claim, settled
 * nothing and restarted the work), and no claim was ever proven false (an adversarial review;
 * `test/safety/claimCycle.test.ts`).
 *
 * @since 0.3.0
 * @category transition
 */
export const claimsCount = (m: Member): boolean =>
  m.state._tag === "Assigned" && m.claim === undefined &&
  m.state.epoch > (m.claimsIgnoredIn ?? Number.NEGATIVE_INFINITY)

/**
 * Whether `event` settles the member's pending claim (`Member.claim`): "true" when a renewal sent
 * after the claim shows a newer epoch than the member worked in, "false" when it shows none, and
 * "moot" when the member left the claim's path (lost its row, left, rejoined).
 */
const claimOutcome = (m: Member, event: Event): "true" | "false" | "moot" | undefined => {
  const claim = m.claim
  if (claim === undefined) return undefined
  switch (event._tag) {
    case "Renewed":
      // A renewal sent before the claim may predate the change it announces: it proves nothing. Nor
      // does one numbered before it (sent in the claim's millisecond, its view may be from before
      // the change: it found a genuine claim false), nor, unnumbered, one of that millisecond.
      if (event.sentAt === undefined || event.sentAt < claim.at) return undefined
      if (event.renewal !== undefined && claim.afterRenewal !== undefined) {
        if (event.renewal <= claim.afterRenewal) return undefined
      } else if (event.sentAt === claim.at) return undefined
      return event.view.epoch > claim.from ? "true" : "false"
    case "Gone":
    case "Joined":
    case "LeaveRequested":
    case "ScopeClosing":
    case "DeadlinePassed":
      return "moot"
    default:
      return undefined
  }
}

/** A slot action of `internal/slots/holdings.ts` as an instruction (contradictions are handled by the caller). */
const slotInstruction = (a: Holdings.Action): Instruction => {
  switch (a._tag) {
    case "Start":
      return Instruction.StartSlot({ slot: a.slot, generation: a.generation })
    case "Stop":
      return Instruction.StopSlots({ slots: a.slots })
    case "Release":
      return Instruction.ReleaseSlots({ stopped: a.stopped })
    case "Retake":
      return Instruction.RetakeSlot({ slot: a.slot, generation: a.generation })
    case "Contradiction":
      return Instruction.Alarm({ reason: a.reason })
  }
}

/**
 * Slots mode, after `transition` took `event` to `after`: the member's slots and what to do about
 * them. A join starts over (its member's earlier slots were re-issued at new generations); a view
 * starts, stops and releases slots (starts only while assigned with the deadline ahead); the deadline
 * stops every slot; a member that stops all its work (lost, leaving) forgets its slots (the change
 * that deletes its row hands them over).
 */
const slotsOnEvent = (
  m: Member,
  event: Event,
  after: MemberState,
  now: number
): readonly [Holdings.Holdings | undefined, ReadonlyArray<Holdings.Action>] => {
  const mayStart = after._tag === "Assigned" && m.deadline !== undefined && now < m.deadline
  if (event._tag === "Joined") {
    const view = event.view.slots
    if (view === undefined) return [undefined, []]
    return Holdings.onView(Holdings.empty(view.count), view, mayStart, Number.NEGATIVE_INFINITY)
  }
  const h = m.slots
  if (h === undefined) return [undefined, []]
  if (after._tag === "Lost" || after._tag === "Leaving" || after._tag === "Left" || after._tag === "Joining") {
    return [h.working.size + h.stopping.size + h.inflight.size === 0 ? h : Holdings.empty(h.count), []]
  }
  if (event._tag === "DeadlinePassed") return Holdings.stopAll(h)
  // Refusing (a contradicting view): no view is acted on until the member has rejoined.
  if (m.refusing === true) return [h, []]
  if (event._tag === "Renewed" && event.view.slots !== undefined && (after._tag === "Assigned" || after._tag === "Fenced")) {
    // A view of an older epoch than this member has seen starts no slot: the database went back (a
    // restore, a failover to a standby that had not received the last commits), and the view may
    // show a slot this member had released as held by it again, at the generation its new holder may
    // still work under (an adversarial review). It still stops, releases and is refused as any view:
    // ignoring it altogether (as modulo mode's `settle` does) kept members working slots the database
    // had given back to a member whose leave was lost, never reaped it, and the next change handed
    // those slots out again at the same generations (a second review).
    // Older than the newest epoch this member has acted on, not only than its state's: a member
    // `Fenced` while its work stops keeps the epoch it was fenced in while it acts on the views of
    // newer epochs (it releases the slots given away), and then, stopped, took rows put back to that
    // epoch for current and started a slot it had released beside its new holder (a third review).
    // `acked` is that newest epoch in slots mode (each renewal's, a join's).
    const known = Math.max(epochOf(m.state) ?? 0, m.acked)
    const older = event.view.epoch < known
    return Holdings.onView(h, event.view.slots, mayStart && !older, event.sentAt ?? now)
  }
  return [h, []]
}

const observe = (member: Member, observation: Observation, now: number): MemberStep => {
  const { timing } = member
  switch (observation._tag) {
    case "SlotStopped": {
      if (member.slots === undefined) return [member, []]
      const [slots, actions] = Holdings.onStopped(member.slots, observation.slot, observation.generation)
      return [slots === member.slots ? member : { ...member, slots }, actions.map(slotInstruction)]
    }
    case "SlotsReleased": {
      if (member.slots === undefined) return [member, []]
      const slots = Holdings.onReleased(member.slots, observation.stopped, observation.released, observation.at)
      return [{ ...member, slots }, []]
    }
    case "RenewalReplied": {
      // At scope close a renewal only keeps the lease while the work stops: the final leave waits for
      // the work alone, and no reply (a failure, a lost row) counts or lets it leave sooner. A row
      // found gone while the work may still run is said, loudly: the others may start its assignment
      // beside it (its lease ran out, or it was deleted by hand).
      if (member.closing) {
        return observation.reply._tag === "NoRow" && member.state._tag === "Leaving" && member.state.stopping
          ? [member, [Instruction.Alarm({
            reason: "leaving, and this member's row is gone while its work has not stopped (its lease ran out, " +
              "or the row was deleted): the others may start its assignment beside that work (G2)"
          })]]
          : [member, []]
      }
      const { receivedAt, reply, sentAt, term } = observation
      if (reply._tag === "Failed") {
        return [member, [
          Instruction.Measure({ metric: "failedHeartbeats", value: 1 }),
          Instruction.Report({ event: Event.RenewFailed({ reason: reply.reason, term }) })
        ]]
      }
      if (reply._tag === "NoRow") {
        // Early: the row went while the local deadline was still ahead (see `Gone`).
        const early = member.deadline !== undefined && receivedAt < member.deadline
        return [member, [Instruction.Report({ event: Event.Gone({ early, term }) })]]
      }
      // Back after the deadline it would set: it proves nothing about the lease now.
      if (sentAt + timing.validMs <= receivedAt) {
        return [member, [
          Instruction.Measure({ metric: "failedHeartbeats", value: 1 }),
          Instruction.Report({ event: Event.RenewFailed({ reason: "renewal came back after its deadline", term }) })
        ]]
      }
      // Slots mode: with its send time, against the last release's reply (see `Holdings.onView`).
      const renewed = Instruction.Report({
        event: Event.Renewed({ view: reply.view, term, sentAt, ...(observation.renewal === undefined ? {} : { renewal: observation.renewal }) })
      })
      if (term !== member.term) return [member, [renewed]]
      // A view of an older epoch than the member knows (the database went back) reads rows that may
      // lack the longest lease of the epoch the member knows: the lease of a member whose row it lost,
      // which the member's waits (`holdOffMs`) must cover. Such a view lowers no lease read before (a
      // review, attack94: a member of lease 10 s whose row a restore took away).
      const known = knownEpoch(member.state)
      const longestLeaseMs = known !== undefined && reply.view.epoch < known && member.longestLeaseMs !== undefined
        ? Math.max(member.longestLeaseMs, reply.view.longestLeaseMs ?? 0)
        : reply.view.longestLeaseMs
      const [checked, clockInstructions] = checkClock({ ...member, longestLeaseMs }, {
        sentAt,
        database: reply.view.clock,
        roundTrip: receivedAt - sentAt
      }, receivedAt)
      const deadline = Math.max(member.deadline ?? Number.NEGATIVE_INFINITY, sentAt + timing.validMs)
      return [{ ...checked, deadline }, [...clockInstructions, renewed]]
    }
    case "DeadlineCheck": {
      const d = member.deadline
      if (d === undefined || now < d || member.fencedFor === d) return [member, []]
      // Stop work now, without waiting for the driver (which may be blocked on a hung call).
      return [{ ...member, fencedFor: d }, [
        Instruction.InterruptWork(),
        Instruction.Report({ event: Event.DeadlinePassed() })
      ]]
    }
    case "Acknowledged":
      return observation.epoch > member.acked ? [{ ...member, acked: observation.epoch }, []] : [member, []]
    case "Reaped":
      return observation.sentAt > (member.reapSentAt ?? Number.NEGATIVE_INFINITY)
        ? [{ ...member, reapSentAt: observation.sentAt }, []]
        : [member, []]
    case "AckingCurrent":
      return member.state._tag === "Awaiting" && !member.closing && observation.renewal > (member.ackingFrom ?? Number.NEGATIVE_INFINITY)
        ? [{ ...member, ackingFrom: observation.renewal }, []]
        : [member, []]
    case "StuckWorkStopped":
      return [{ ...member, stuckSince: undefined }, [
        Instruction.Measure({ metric: "stuckWork", value: 0 }),
        Instruction.Report({ event: Event.WorkStopped() })
      ]]
    case "StoppingHeartbeat":
      // At scope close the loops have stopped, and the final leave waits up to `stopTimeout` for the
      // work to stop: the lease is kept meanwhile, as the lease keeper keeps it while a leave or a
      // renegotiation stops the work (G2: never let the lease lapse while work may run). Without it a
      // cleanup longer than what was left of the lease ran beside the next epoch (an adversarial review).
      if (!member.closing || member.state._tag !== "Leaving" || !member.state.stopping || member.state.stuck) return [member, []]
      // Work stuck before the scope closed (its stop timed out, and no stop has been reported since)
      // still holds the barrier: said, and renewed as stuck, as `StuckHeartbeat` does (a renewal
      // saying "not stuck" cleared the row's `stopping_since`, and `status` hid the stuck work for a
      // stop timeout, then showed it as newly stuck: a review).
      return [member, member.stuckSince !== undefined ? holdingBarrier(member, now) : [Instruction.Renew({ stuck: false })]]
    case "StuckHeartbeat":
      // Holding the barrier at scope close (G2): never leave, nor let the lease lapse, while the work
      // may still run. Say so loudly, and renew (saying the work is stuck) every heartbeat.
      return !member.closing || !isStuck(member.state) ? [member, []] : [member, holdingBarrier(member, now)]
  }
}

/** At scope close, work that has not stopped: said loudly, and the lease renewed saying it is stuck. */
const holdingBarrier = (member: Member, now: number): Array<Instruction> => {
  const seconds = (now - (member.stuckSince ?? now)) / 1000
  return [
    Instruction.Measure({ metric: "stuckWork", value: seconds }),
    Instruction.Alarm({
      reason: `leaving, but work has not stopped for ${seconds.toFixed(1)} s; ` +
        "holding the barrier (renewing the lease) until it does"
    }),
    Instruction.Renew({ stuck: true })
  ]
}

/** The epoch a member's state works, awaits or moves to; none while joining, lost or leaving. */
const knownEpoch = (state: MemberState): number | undefined => {
  switch (state._tag) {
    case "Awaiting":
    case "Assigned":
    case "Fenced":
      return state.epoch
    case "Renegotiating":
      return state.next.epoch
    default:
      return undefined
  }
}

/**
 * How long the member waits out leases that may still run after it learned of a clock step or found
 * its row gone early: its own lease, or the longest of the group's rows as its join or last renewal read them
 * if longer (members of one group may run with different leases: an adversarial review).
 */
const holdOffMs = (member: Member): number => Math.max(member.timing.leaseMs, member.longestLeaseMs ?? 0)

/**
 * The database clock against this member's clock: each renewal's database time is compared with the
 * previous reading's. Their differences may disagree by at most the two round trips (plus half the
 * fence margin); more is a step of the database clock.
 */
const checkClock = (member: Member, reading: ClockReading, receivedAt: number): MemberStep => {
  const prev = member.clockReading
  const m: Member = { ...member, clockReading: reading }
  if (prev === undefined) return [m, []]
  const drift = (reading.database - prev.database) - (reading.sentAt - prev.sentAt)
  const threshold = member.timing.fenceMarginMs / 2 + prev.roundTrip + reading.roundTrip
  if (Math.abs(drift) <= threshold) return [{ ...m, clockStepLogged: false }, []]
  const ahead = drift > 0
  const stepped: Member = { ...m, reapAfter: ahead ? receivedAt + holdOffMs(member) : m.reapAfter, clockStepLogged: true }
  const measure = Instruction.Measure({ metric: "clockSteps", value: 1 })
  if (member.clockStepLogged) return [stepped, [measure]]
  return [stepped, [
    measure,
    Instruction.Log({
      level: "Error",
      message: `modulo-group: the database clock moved ${ahead ? "ahead" : "back"} by about ${Math.abs(Math.round(drift))} ms ` +
        `against this member's clock between two renewals. ` +
        (ahead
          ? "Leases are judged on the database clock: members may look expired early. No reaping for one lease."
          : "Crashed members will be noticed later than the lease.")
    })
  ]]
}

/**
 * The assignment work may run under at `now`: only while assigned and before the lease deadline.
 *
 * @since 0.1.0
 * @category getters
 */
export const workable = (member: Member, now: number): Assignment | undefined =>
  member.deadline !== undefined && now < member.deadline ? assignmentOf(member.state) : undefined
