/**
 * Which notifications bring a renewal forward (issue 15). A notification is a hint that anyone can
 * send: it never changes what a member believes, it only makes the member ask the database sooner.
 * So a member may also ignore one, as it would a lost one, when it claims only what the member
 * already knows from the database:
 *
 * - `E` (a join or a leave committed epoch E): the member knows epoch E or a later one;
 * - `E:ready` (the barrier of epoch E is down): the member works in epoch E or a later one, or knows
 *   a later epoch than E.
 *
 * Every other payload (`reap`, `leave`, `release`, anything unknown or forged) wakes the member, as
 * before. Ignoring a notification can only delay a member (until its next renewal), never let it
 * act on something the database did not say; and what is ignored is what the member has already
 * read from the database. At a change, every member that completes or sees the barrier announces
 * it: without this, each of those notifications woke every member of the group into a renewal of
 * its own after it had already started (16 processes: 16 announcements, each a renewal in every
 * process).
 */
import type { MemberState } from "../../MemberState.js"
import { epochOf } from "../../MemberState.js"

/** The newest epoch the member knows from the database, if it knows one (renegotiating: the next). */
const knownEpoch = (state: MemberState): number | undefined =>
  state._tag === "Renegotiating" ? state.next.epoch : epochOf(state)

const change = /^(\d{1,15})$/
const ready = /^(\d{1,15}):ready$/

/**
 * The epoch a barrier announcement (`E:ready`) names, if `payload` is one. A member waiting in epoch
 * E that heard one for E does not announce that barrier again (leaseKeeper.ts): someone did. A
 * forged one can only keep that member from announcing E, which the others' polls make up for.
 */
export const announced = (payload: string | undefined): number | undefined => {
  const down = payload === undefined ? null : ready.exec(payload)
  return down === null ? undefined : Number(down[1])
}

/**
 * The epoch a change's notification (`E`: a join or a leave committed epoch E) claims exists, if
 * `payload` is one. A working member stops on it (Transition's `Notified`); a forged one costs a
 * pause of the work, and then claims are ignored until the group's epoch moves.
 */
export const claimedEpoch = (payload: string | undefined): number | undefined => {
  const joined = payload === undefined ? null : change.exec(payload)
  return joined === null ? undefined : Number(joined[1])
}

/** Whether a notification with `payload` should bring the member's next renewal forward. */
export const matters = (state: MemberState, payload: string | undefined): boolean => {
  if (payload === undefined) return true
  const known = knownEpoch(state)
  if (known === undefined) return true
  const joined = change.exec(payload)
  if (joined !== null) return Number(joined[1]) > known
  const down = ready.exec(payload)
  if (down !== null) {
    const epoch = Number(down[1])
    return epoch > known || (epoch === known && state._tag !== "Assigned")
  }
  return true
}
