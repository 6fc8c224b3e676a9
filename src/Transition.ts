/**
 * The protocol's decisions: a pure `(state, event) -> [state, commands]` function. No I/O, no clock:
 * the interpreter in `Membership` carries events in and commands out.
 *
 * @since 0.1.0
 */
import { Data } from "effect"
import type { Slot } from "./MemberState.js"
import { MemberState } from "./MemberState.js"
import type { GroupView } from "./MembershipStore.js"

/**
 * What can happen to a member. Every event comes from the database (a store call's result), the
 * member's own clock, or its own work; none comes from a notification, which anyone can send and
 * which only makes the member ask the database sooner.
 *
 * @since 0.1.0
 * @category models
 */
export type Event = Data.TaggedEnum<{
  /** The join transaction committed. */
  Joined: { readonly view: GroupView }
  /** The join transaction failed or timed out. */
  JoinFailed: { readonly reason: string }
  /** Time to retry a failed join. */
  RetryJoin: {}
  /** A renewal succeeded in time (its lease deadline is still ahead). */
  Renewed: { readonly view: GroupView }
  /**
   * A renewal found no live row: reaped, expired or deleted. `early`: the local lease deadline was
   * still ahead, so the row went while this member could still have been working: someone judged
   * its lease by a clock that disagrees (a stepped database clock, a restore) or deleted it by hand,
   * and other members of its epoch may still be working too.
   */
  Gone: { readonly early: boolean }
  /** A renewal failed, timed out or came back too late to count. */
  RenewFailed: { readonly reason: string }
  /** The local lease deadline passed (the fence timer has interrupted the work). */
  DeadlinePassed: {}
  /** Every work fiber has stopped and its finalizers ran. */
  WorkStopped: {}
  /** Work did not stop within the stop timeout (it is still being waited for). */
  StopTimedOut: {}
  /** The app asked to leave (or its scope closed). */
  LeaveRequested: {}
  /** The leave transaction finished (or gave up: the lease then expires on its own). */
  LeaveDone: {}
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
  "LeaveDone"
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

const reapIf = (view: GroupView): ReadonlyArray<Command> => (view.expired ? [Command.Reap()] : [])

/**
 * A view of the epoch the member already knows that names another index or size: no committed state
 * of the tables says both (an edit by hand, or a store bug). The member refuses it.
 */
const contradicts = (known: Slot, view: GroupView): boolean =>
  view.epoch === known.epoch && (view.index !== known.index || view.size !== known.size)

/**
 * Refuse a contradicting view: never act on it. The member can no longer tell that its index is its
 * own, so it stops any work and rejoins (its join waits for the work to stop, then bumps the epoch:
 * everyone renegotiates from one state again).
 */
const refuse = (known: Slot, view: GroupView, stopWork: boolean): Step => [
  MemberState.Lost(),
  [
    Command.Alarm({
      reason: `the database says [${view.index}/${view.size}] in epoch ${view.epoch}, ` +
        `but this member holds [${known.index}/${known.size}] in that epoch; refusing the view and rejoining`
    }),
    ...(stopWork ? [Command.StopWork()] : []),
    Command.Join()
  ]
]

/** A member that is not working learns `view`: acknowledge a newer epoch, or start when the barrier is down. */
const settle = (state: MemberState, known: Slot, view: GroupView): Step => {
  if (view.epoch < known.epoch) return stay(state)
  if (contradicts(known, view)) return refuse(known, view, false)
  if (view.epoch > known.epoch) {
    return [MemberState.Awaiting(slotOf(view)), [Command.Ack({ epoch: view.epoch }), ...reapIf(view)]]
  }
  // Start only when everyone, this member included, has acknowledged this very epoch (G2), as read
  // from one committed state by a renewal.
  if (view.allAcked && view.acked >= view.epoch) {
    const slot = slotOf(known)
    return [MemberState.Assigned(slot), [Command.StartWork({ slot }), ...reapIf(view)]]
  }
  return [MemberState.Awaiting(slotOf(known)), reapIf(view)]
}

const joining = (state: MemberState, event: Event): Step => {
  switch (event._tag) {
    case "Joined":
      return enter(event.view)
    case "JoinFailed":
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
  view.allAcked && view.acked >= view.epoch
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
            "(a database clock step, a restore or an edit by hand); rejoining after one lease"
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
 * One step of the protocol. Events that do not apply to a state are ignored (the state is kept and
 * no command issued): replies can arrive late and out of order, so every decision compares epochs.
 *
 * @since 0.1.0
 * @category transition
 */
export const transition = (state: MemberState, event: Event): Step =>
  MemberState.$match(state, {
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
          if (view.epoch > s.epoch) {
            return [
              MemberState.Renegotiating({ ...slotOf(s), next: slotOf(view), stuck: false }),
              [Command.StopWork(), ...reapIf(view)]
            ]
          }
          if (contradicts(s, view)) return refuse(s, view, true)
          return [state, view.epoch === s.epoch ? reapIf(view) : []]
        }
        case "Gone":
          return lost(event, true)
        case "DeadlinePassed":
          return [MemberState.Fenced({ ...slotOf(s), stopping: true, stuck: false }), [Command.StopWork()]]
        case "LeaveRequested":
          return leave(true)
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
 * Whether the member holds a lease that renewals must keep alive: as a member, and while leaving
 * until its work has stopped (a member never lets its lease lapse while its work may run).
 *
 * @since 0.1.0
 * @category getters
 */
export const holdsLease = (state: MemberState): boolean =>
  state._tag === "Awaiting" || state._tag === "Assigned" || state._tag === "Renegotiating" ||
  state._tag === "Fenced" || (state._tag === "Leaving" && state.stopping)
