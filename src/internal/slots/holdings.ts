/**
 * One member's slots in slots mode, and its per-slot decisions (docs/slots.md, "A renewal" and "The
 * release"), pure: what it works, what it is stopping, what it has released without knowing the
 * outcome. `Transition.step` runs these on the views of joins and renewals, on the end of a slot's
 * stop, and on a release's reply; the interpreter carries out the actions.
 *
 * The rules (the same as the model's members in test/slots/handoff.model.test.ts):
 * - a slot starts only when the view says this member holds it and owns it, at the generation the
 *   view gives (and only while the member may work: assigned, lease deadline ahead);
 * - a slot this member works that the view says it no longer owns is stopped, and released (at the
 *   generation it was worked under) only once its work has stopped;
 * - a slot it holds but neither works nor owns is released at once (no work of it runs here);
 * - a release whose outcome is unknown, or one of whose sends is unanswered, keeps the slot stopped
 *   until a view shows another holder or a higher generation; a view showing it held and owned again
 *   at the released generation makes the member retake it (a new generation) first, so the late
 *   release can no longer apply.
 * - a view that contradicts what this member works (a slot it works or stops is held by someone
 *   else, or at another generation) is refused: the member stops everything and rejoins.
 */
import type { SlotView, StoppedSlot } from "../../MembershipStore.js"

/** A slot whose work is stopping: at which generation, and whether to release it once stopped. */
export interface Stopping {
  readonly generation: number
  readonly release: boolean
}

/** A release sent for a slot (once, or again while unanswered). */
export interface Inflight {
  readonly generation: number
  readonly uncertain: boolean
  /**
   * Sends of it not answered yet. A release sent again while an earlier send is unanswered (the view
   * still showed the slot held) is two statements: a "released nothing" for one says nothing of the
   * other, which may still apply (an adversarial review: the first's answer cleared the slot, the
   * member worked it again at that generation, and the second, late, handed it to a newcomer while it
   * ran: 2.1 s of two holders).
   */
  readonly unanswered: number
}

/** One member's slots. */
export interface Holdings {
  /** The group's slot count. */
  readonly count: number
  /** Slots whose work was started, by slot: the generation it runs under. */
  readonly working: ReadonlyMap<number, number>
  /** Slots whose work was asked to stop and may still run. */
  readonly stopping: ReadonlyMap<number, Stopping>
  /**
   * Slots released at this generation whose release has not been answered, or was answered with an
   * unknown outcome (`uncertain`: a statement that failed or timed out may still apply later).
   */
  readonly inflight: ReadonlyMap<number, Inflight>
  /**
   * The member's clock when the last release was answered: the slot part of a renewal sent before
   * it may predate the release and is not acted on (the renewal itself still counts).
   */
  readonly viewsFrom: number
}

/** What the interpreter must do about slots, in order. */
export type Action =
  | { readonly _tag: "Start"; readonly slot: number; readonly generation: number }
  | { readonly _tag: "Stop"; readonly slots: ReadonlyArray<StoppedSlot> }
  | { readonly _tag: "Release"; readonly stopped: ReadonlyArray<StoppedSlot> }
  | { readonly _tag: "Retake"; readonly slot: number; readonly generation: number }
  | { readonly _tag: "Contradiction"; readonly reason: string }

export const empty = (count: number): Holdings => ({
  count,
  working: new Map(),
  stopping: new Map(),
  inflight: new Map(),
  viewsFrom: Number.NEGATIVE_INFINITY
})

/** The slots whose work may run: working or stopping, ascending. */
export const running = (h: Holdings): ReadonlyArray<number> =>
  [...new Set([...h.working.keys(), ...h.stopping.keys()])].sort((a, b) => a - b)

/**
 * A view of this member's slots (from a join or a renewal sent at `sentAt`). `mayStart`: the member
 * may start work now (assigned, lease deadline ahead).
 */
export const onView = (
  h: Holdings,
  view: SlotView,
  mayStart: boolean,
  sentAt: number
): readonly [Holdings, ReadonlyArray<Action>] => {
  if (sentAt < h.viewsFrom) return [h, []]
  // The group's slot count is fixed when it is created, and this member maps items to slots by the
  // count it joined with: a view of another count (`groups.slots` edited by hand, past migration
  // 0019's guard) says its slots now stand for other items, which another member may be given.
  if (view.count !== h.count) {
    return [h, [{
      _tag: "Contradiction",
      reason: `the database says the group has ${view.count} slots, but this member works its slots out of ` +
        `${h.count} (a group's slot count is fixed when it is created: changed by hand?)`
    }]]
  }
  const held = new Map(view.held.map((s) => [s.slot, s]))
  for (const [slot, generation] of h.working) {
    const now = held.get(slot)
    if (now === undefined || now.generation !== generation) {
      return [h, [{
        _tag: "Contradiction",
        reason: `the database says slot ${slot} is ${
          now === undefined ? "not held by this member" : `at generation ${now.generation}`
        }, but this member works it at generation ${generation}`
      }]]
    }
  }
  for (const [slot, stop] of h.stopping) {
    const now = held.get(slot)
    if (now === undefined || now.generation !== stop.generation) {
      return [h, [{
        _tag: "Contradiction",
        reason: `the database says slot ${slot} is ${
          now === undefined ? "not held by this member" : `at generation ${now.generation}`
        }, but this member's work on it (generation ${stop.generation}) is still stopping`
      }]]
    }
  }
  const working = new Map(h.working)
  const stopping = new Map(h.stopping)
  const inflight = new Map(h.inflight)
  // A release whose slot is held by another member now (or not at all): it applied.
  for (const slot of h.inflight.keys()) if (!held.has(slot)) inflight.delete(slot)
  const starts: Array<Action> = []
  const stops: Array<StoppedSlot> = []
  const releases: Array<StoppedSlot> = []
  const retakes: Array<Action> = []
  for (const s of view.held) {
    const generation = working.get(s.slot)
    if (generation !== undefined) {
      if (!s.owned) {
        working.delete(s.slot)
        stopping.set(s.slot, { generation, release: true })
        stops.push({ slot: s.slot, generation })
      }
      continue
    }
    const stop = stopping.get(s.slot)
    if (stop !== undefined) {
      // Stopping after a fence, and given away meanwhile: release it once stopped.
      if (!s.owned && !stop.release) stopping.set(s.slot, { ...stop, release: true })
      continue
    }
    const sent = inflight.get(s.slot)?.generation
    if (sent !== undefined) {
      if (s.generation > sent) {
        inflight.delete(s.slot) // it applied, and the slot came back: a slot like any other
      } else if (s.owned) {
        retakes.push({ _tag: "Retake", slot: s.slot, generation: sent })
        continue
      } else {
        // Not applied yet, or lost: sent again, one more send to be answered.
        const entry = inflight.get(s.slot)!
        inflight.set(s.slot, { ...entry, unanswered: entry.unanswered + 1 })
        releases.push({ slot: s.slot, generation: sent })
        continue
      }
    }
    if (s.owned) {
      if (mayStart) {
        working.set(s.slot, s.generation)
        starts.push({ _tag: "Start", slot: s.slot, generation: s.generation })
      }
    } else {
      // Held, never worked here (or stopped by a fence), owned by another: nothing to stop.
      inflight.set(s.slot, { generation: s.generation, uncertain: false, unanswered: 1 })
      releases.push({ slot: s.slot, generation: s.generation })
    }
  }
  const actions: Array<Action> = []
  // Stops first: the smaller set is in place before anything is released or started.
  if (stops.length > 0) actions.push({ _tag: "Stop", slots: stops })
  if (releases.length > 0) actions.push({ _tag: "Release", stopped: releases })
  actions.push(...retakes, ...starts)
  const changed = stops.length > 0 || releases.length > 0 || starts.length > 0 || inflight.size !== h.inflight.size ||
    [...stopping].some(([slot, stop]) => h.stopping.get(slot) !== stop)
  return [changed ? { ...h, working, stopping, inflight } : h, actions]
}

/** Every slot's work must stop now (the lease deadline passed): none is released for it. */
export const stopAll = (h: Holdings): readonly [Holdings, ReadonlyArray<Action>] => {
  if (h.working.size === 0) return [h, []]
  const stopping = new Map(h.stopping)
  const slots: Array<StoppedSlot> = []
  for (const [slot, generation] of h.working) {
    stopping.set(slot, { generation, release: false })
    slots.push({ slot, generation })
  }
  return [{ ...h, working: new Map(), stopping }, [{ _tag: "Stop", slots }]]
}

/** The work of `slot` under `generation` has stopped (all its fibers ended). */
export const onStopped = (
  h: Holdings,
  slot: number,
  generation: number
): readonly [Holdings, ReadonlyArray<Action>] => {
  const stop = h.stopping.get(slot)
  if (stop === undefined || stop.generation !== generation) return [h, []]
  const stopping = new Map(h.stopping)
  stopping.delete(slot)
  if (!stop.release) return [{ ...h, stopping }, []]
  const inflight = new Map(h.inflight)
  inflight.set(slot, { generation, uncertain: false, unanswered: 1 })
  return [{ ...h, stopping, inflight }, [{ _tag: "Release", stopped: [{ slot, generation }] }]]
}

/**
 * A release of `stopped` was answered at `at` (member's clock): `released` the slots it released, or
 * undefined when its outcome is unknown (failed or timed out: it may still apply later).
 */
export const onReleased = (
  h: Holdings,
  stopped: ReadonlyArray<StoppedSlot>,
  released: ReadonlyArray<number> | undefined,
  at: number
): Holdings => {
  const inflight = new Map(h.inflight)
  for (const { generation, slot } of stopped) {
    const sent = inflight.get(slot)
    if (sent === undefined || sent.generation !== generation) continue
    const unanswered = Math.max(0, sent.unanswered - 1)
    if (released === undefined) {
      // May still apply later: only a higher generation (another holder's release, or the retake)
      // makes it harmless.
      inflight.set(slot, { generation, uncertain: true, unanswered })
    } else if (released.includes(slot) || (!sent.uncertain && unanswered === 0)) {
      // This statement applied (a later send of this generation can no longer), or it did not and no
      // other send of this generation may still apply.
      inflight.delete(slot)
    } else {
      inflight.set(slot, { ...sent, unanswered })
    }
  }
  return { ...h, inflight, viewsFrom: Math.max(h.viewsFrom, at) }
}
