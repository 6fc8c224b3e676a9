/**
 * Calls of one store that ride along another's change (docs/protocol.md, "Changes of one process go
 * together"). A store's changes of a group take their turns one at a time (`inTurn` in
 * PgMembershipStore.ts); a join or a leave waiting for its turn is a **rider**: the change whose turn
 * it is may take every rider waiting then into its own transaction, under the group lock, so that a
 * thousand members of one process joining (or leaving) at once make a few changes, not a thousand.
 *
 * A rider taken by a change is `taken` until that change's attempt ends: after a commit, its
 * `result` is set (its call is then done: it returns the result at its turn, without a statement of
 * its own); after a failure or a timeout it is free again, and its call goes on as if it had not
 * been taken (its own turn, or another change that takes it). Results are set only after a commit,
 * never from a transaction that rolled back.
 *
 * Only an order among this process's own calls: the group's lock in the database stays the arbiter
 * of every change.
 */
import { Effect, Exit } from "effect"

/** One call waiting for its turn, as a possible rider. */
export interface Rider<In, Out> {
  readonly input: In
  /** Taken by a change in progress (not yet committed or failed). */
  taken: boolean
  /** Set after the commit of the change that took it: the call's result. */
  result: Out | undefined
}

/** Riders of one kind (joins, leaves), by group. */
export interface Riders<In, Out> {
  /** Runs `call` with `self` waiting as a rider of `groupId` meanwhile. */
  readonly ride: <A, E, R>(
    groupId: string,
    input: In,
    call: (self: Rider<In, Out>) => Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E, R>
  /**
   * Under the group lock, by the change of `leader`: takes every waiting rider (at most `max`) that
   * is not taken and has no result, other than `leader`, for which `eligible` holds.
   */
  readonly take: (
    groupId: string,
    leader: Rider<In, Out>,
    eligible: (input: In) => boolean
  ) => Array<Rider<In, Out>>
}

/** At most this many riders per change (bounds the statement and the transaction). */
export const maxRiders = 2_000

export const make = <In, Out>(): Riders<In, Out> => {
  const waiting = new Map<string, Set<Rider<In, Out>>>()
  return {
    ride: (groupId, input, call) =>
      Effect.suspend(() => {
        const self: Rider<In, Out> = { input, taken: false, result: undefined }
        return Effect.acquireUseRelease(
          Effect.sync(() => {
            let set = waiting.get(groupId)
            if (set === undefined) {
              set = new Set()
              waiting.set(groupId, set)
            }
            set.add(self)
          }),
          () => call(self),
          () =>
            Effect.sync(() => {
              const set = waiting.get(groupId)
              set?.delete(self)
              if (set?.size === 0) waiting.delete(groupId)
            })
        )
      }),
    take: (groupId, leader, eligible) => {
      const taken: Array<Rider<In, Out>> = []
      for (const r of waiting.get(groupId) ?? []) {
        if (taken.length >= maxRiders) break
        if (r === leader || r.taken || r.result !== undefined || !eligible(r.input)) continue
        r.taken = true
        taken.push(r)
      }
      return taken
    }
  }
}

/**
 * The riders one attempt of a change took, and their results once it has committed. `settle` runs
 * when the attempt ends: on success it hands each its result, whatever the outcome it frees them.
 */
export const attempt = <In, Out>() => {
  let took: Array<Rider<In, Out>> = []
  let results: Array<readonly [Rider<In, Out>, Out]> = []
  return {
    get took(): ReadonlyArray<Rider<In, Out>> {
      return took
    },
    /** Records what this attempt took (under the lock). */
    record: (riders: Array<Rider<In, Out>>) => {
      took = riders
      return riders
    },
    /** The results, in the transaction; handed over by `settle` only if it commits. */
    resultsAre: (r: Array<readonly [Rider<In, Out>, Out]>) => {
      results = r
    },
    settle: <A, E>(exit: Exit.Exit<A, E>) =>
      Effect.sync(() => {
        if (Exit.isSuccess(exit)) for (const [r, out] of results) r.result = out
        for (const r of took) r.taken = false
        took = []
        results = []
      })
  }
}
