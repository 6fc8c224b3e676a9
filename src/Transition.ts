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
 * What can happen to a member.
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
  /** A notification: every member of `epoch` has acknowledged it. */
  BarrierDown: { readonly epoch: number }
  /** A renewal found no live row: reaped, expired or deleted. */
  Gone: {}
  /** A renewal failed, timed out or came back too late to count. */
  RenewFailed: { readonly reason: string }
  /** The local lease deadline passed. */
  DeadlinePassed: {}
  /** Every work fiber has stopped and its finalizers ran. */
  WorkStopped: {}
  /** Work did not stop within the stop timeout. */
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
  "BarrierDown",
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
  /** From now on renewals acknowledge `epoch`; renew at once. */
  Ack: { readonly epoch: number }
  /** Delete expired members and bump the epoch. */
  Reap: {}
  /** Start the registered work under this slot. */
  StartWork: { readonly slot: Slot }
  /** Interrupt the work and wait for its finalizers (bounded by the stop timeout). */
  StopWork: {}
  /** Delete this member's row; the others renegotiate at once. */
  Leave: {}
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

const slotOf = (view: Slot): Slot => ({ epoch: view.epoch, index: view.index, size: view.size })

const reapIf = (view: GroupView): ReadonlyArray<Command> => (view.expired ? [Command.Reap()] : [])

/** A member that is not working learns `view`: acknowledge a newer epoch, or start when the barrier is down. */
const settle = (known: Slot, view: GroupView): Step => {
  if (view.epoch > known.epoch) {
    return [MemberState.Awaiting(slotOf(view)), [Command.Ack({ epoch: view.epoch }), ...reapIf(view)]]
  }
  // Start only when everyone, this member included, has acknowledged this very epoch (G2).
  if (view.barrier && view.acked >= view.epoch) {
    const slot = slotOf(view)
    return [MemberState.Assigned(slot), [Command.StartWork({ slot }), ...reapIf(view)]]
  }
  return [MemberState.Awaiting(slotOf(view)), reapIf(view)]
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
      return [MemberState.Leaving(), [Command.Leave()]]
    default:
      return stay(state)
  }
}

/** A fresh member has acknowledged the epoch it created. */
const enter = (view: GroupView): Step =>
  view.barrier && view.acked >= view.epoch
    ? [MemberState.Assigned(slotOf(view)), [Command.StartWork({ slot: slotOf(view) })]]
    : [MemberState.Awaiting(slotOf(view)), []]

const leave = (working: boolean): Step => [
  MemberState.Leaving(),
  working ? [Command.StopWork(), Command.Leave()] : [Command.Leave()]
]

const lost = (working: boolean): Step => [
  MemberState.Lost(),
  working ? [Command.StopWork(), Command.Join()] : [Command.Join()]
]

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
          return event.view.epoch < s.epoch ? stay(state) : settle(s, event.view)
        case "BarrierDown":
          // Every member of this epoch, this one included, has acknowledged it: saves a round trip.
          if (event.epoch !== s.epoch) return stay(state)
          return [MemberState.Assigned(slotOf(s)), [Command.StartWork({ slot: slotOf(s) })]]
        case "Gone":
          return lost(false)
        case "DeadlinePassed":
          return [MemberState.Fenced(s), []]
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
            return [MemberState.Renegotiating({ ...s, next: slotOf(view) }), [Command.StopWork(), ...reapIf(view)]]
          }
          return [state, view.epoch === s.epoch ? reapIf(view) : []]
        }
        case "Gone":
          return lost(true)
        case "DeadlinePassed":
          return [MemberState.Fenced(s), [Command.StopWork()]]
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
          // Acknowledging now would let the next epoch start beside our old work (G2): leave instead,
          // and rejoin only once the work has really stopped.
          return [MemberState.Lost(), [Command.Leave(), Command.Join()]]
        case "Gone":
          return lost(true)
        case "DeadlinePassed":
          return [MemberState.Fenced({ epoch: s.epoch, index: s.index, size: s.size }), [Command.StopWork()]]
        case "LeaveRequested":
          return leave(true)
        default:
          return stay(state)
      }
    },
    Fenced: (s): Step => {
      switch (event._tag) {
        case "Renewed":
          return event.view.epoch < s.epoch ? stay(state) : settle(s, event.view)
        case "StopTimedOut":
          // Work fenced by the deadline would not stop: give up the membership rather than ever ack.
          return [MemberState.Lost(), [Command.Leave(), Command.Join()]]
        case "Gone":
          return lost(false)
        case "LeaveRequested":
          return leave(false)
        default:
          return stay(state)
      }
    },
    Leaving: (): Step => (event._tag === "LeaveDone" ? [MemberState.Left(), []] : stay(state)),
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
 * Whether the member holds a lease that renewals must keep alive.
 *
 * @since 0.1.0
 * @category getters
 */
export const holdsLease = (state: MemberState): boolean =>
  state._tag === "Awaiting" || state._tag === "Assigned" || state._tag === "Renegotiating" || state._tag === "Fenced"
