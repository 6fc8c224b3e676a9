/**
 * Calls of one store that ride along another's change (docs/protocol.md, "Changes of one process go
 * together"). A store's changes of a group take their turns one at a time (`inTurn` in
 * PgMembershipStore.ts); a join, a leave or a reap waiting for its turn is a **rider**: the change
 * whose turn it is may take every rider of its kind waiting then into its own transaction, under the
 * group lock, so that a thousand members of one process joining (or leaving) at once make a few
 * changes, not a thousand.
 *
 * A rider taken by a change is `taken` until that change's attempt ends: after a commit, its
 * `result` is set (its call is then done: it returns the result at its turn, without a statement of
 * its own); after a failure or a timeout it is free again, and its call goes on as if it had not
 * been taken (its own turn, or another change that takes it). Results are set only after a commit,
 * never from a transaction that rolled back. Only a call that is `waiting` is ever taken (see
 * `RiderState`).
 *
 * Only an order among this process's own calls: the group's lock in the database stays the arbiter
 * of every change.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"

/**
 * Where a call stands: `waiting` (for its turn, or in its backoff: the only state in which a change
 * may take it), `own` (an attempt of its own is under way: a change of its own, or a busy join's
 * transaction under the lock shared, whose outcome only the call itself learns), `taken` (by a change
 * in progress), `done` (it has its result, from its own attempt or from a change that took it).
 *
 * A call must never be taken once an attempt of its own may have done its work: a busy join that
 * took its row (committed) and is about to return that view, taken by the next change, had its row
 * deleted and inserted again acknowledging an epoch it never saw, while it worked the old one (found
 * by an adversarial run: two members on one index). So `own` lasts from before its attempt's first
 * statement until the call knows how that attempt ended.
 */
export type RiderState = "waiting" | "own" | "taken" | "done"

/** One call, as a possible rider. */
export interface Rider<In, Out> {
  readonly input: In
  state: RiderState
  /** Set after the commit of the change that took it: the call's result. */
  result: Out | undefined
}

/** Riders of one kind (joins, leaves, reaps), by group. */
export interface Riders<In, Out> {
  /** Runs `call` with `self` waiting as a rider of `groupId` meanwhile. */
  readonly ride: <A, E, R>(
    groupId: string,
    input: In,
    call: (self: Rider<In, Out>) => Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E, R>
  /**
   * Under the group lock, by the change of `leader`: takes every rider (at most `maxRiders`) that is
   * `waiting`, other than `leader`, for which `eligible` holds.
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
        const self: Rider<In, Out> = { input, state: "waiting", result: undefined }
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
        if (r === leader || r.state !== "waiting" || !eligible(r.input)) continue
        r.state = "taken"
        taken.push(r)
      }
      return taken
    }
  }
}

/**
 * An attempt of the call's own (`self` is then `own`): its change at its turn, or a busy join's
 * transaction. When it ends, the call is `done` if `finished` says its result is the call's result,
 * else `waiting` again. Not for a call that is `taken`: the caller checks first (see `PgMembershipStore`).
 */
export const own = <In, Out, A, E, R>(
  self: Rider<In, Out>,
  attempt: Effect.Effect<A, E, R>,
  finished: (a: A) => boolean
): Effect.Effect<A, E, R> =>
  Effect.suspend(() => {
    self.state = "own"
    return Effect.onExit(attempt, (exit) =>
      Effect.sync(() => {
        if (self.state === "own") self.state = Exit.isSuccess(exit) && finished(exit.value) ? "done" : "waiting"
      }))
  })

/**
 * The riders one attempt of a change took, and their results once it has committed. `settle` runs
 * when the attempt ends: on success it hands each its result (`done`); every other one it took is
 * `waiting` again. `abandon` runs when the leader's call stops waiting for the attempt (its timeout,
 * its interruption) while the attempt may still be running (a COMMIT whose reply hangs): the riders it
 * took are `waiting` again at once, and the attempt's late end hands out nothing (an adversarial
 * review: riders stayed taken until the reply came, each retrying its turn for the busy budget, 30 s,
 * while the change had committed). A rider whose row that attempt did commit joins again (its store's
 * own row is deleted and inserted anew), a reap reaps again, a leave finds its row gone.
 */
export const attempt = <In, Out>() => {
  let took: Array<Rider<In, Out>> = []
  let results: Array<readonly [Rider<In, Out>, Out]> = []
  let abandoned = false
  const free = () => {
    for (const r of took) if (r.state === "taken") r.state = "waiting"
    took = []
    results = []
  }
  return {
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
        if (Exit.isSuccess(exit) && !abandoned) {
          for (const [r, out] of results) {
            r.result = out
            r.state = "done"
          }
        }
        free()
      }),
    /** The leader stopped waiting: the riders are free now, and nothing is handed out later. */
    abandon: () => {
      abandoned = true
      free()
    }
  }
}
