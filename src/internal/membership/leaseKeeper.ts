/**
 * The lease keeper: renews the lease every heartbeat (faster while waiting at the barrier, at once
 * when poked, soon after a notification) and hands each reply to `Transition.step` as a
 * `RenewalReplied` observation, which decides what it means.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Ref from "effect/Ref"
import { renewalWindowMs } from "../../MembershipConfig.js"
import * as State from "../../MemberState.js"
import * as Transition from "../../Transition.js"
import type { Observation } from "../../Transition.js"
import type { MemberContext } from "./context.js"
import { connected, nowMillis, recordHeartbeatAge, refusedOnce } from "./context.js"
import type * as Signal from "./signal.js"

/** At most this many notification wake-ups in a row bring a renewal forward (then they are rate-limited). */
const wakeBurst = 8

/** While the store listens for notifications, this many renewals at the barrier are fast, then they slow down. */
const listeningFastPolls = 2

export const leaseKeeper = (ctx: MemberContext, observe: (o: Observation) => Effect.Effect<void>) =>
  Effect.gen(function*() {
    const { config, groupId, store } = ctx
    const heartbeatMs = ctx.timing.heartbeatMs
    const barrierPollMs = Duration.toMillis(config.barrierPoll)
    const statementTimeoutMs = Duration.toMillis(config.statementTimeout)

    // While waiting at the barrier, poll fast (doubling from `barrierPoll`, capped at a tenth of a
    // heartbeat): without notifications the barrier then clears within about a heartbeat of the
    // last acknowledgement. While the store listens for the group's notifications, the barrier's
    // own notification wakes the member (the acknowledgement that completes it announces it), and
    // only the first `listeningFastPolls` renewals at the barrier are fast: the one that
    // acknowledges (or the join) and one poll `2 × barrierPoll` after it, which finds a barrier
    // that two last acknowledgements completed together, neither seeing the other, so that neither
    // announced it (the poll that finds it announces it). Then the member polls every quarter
    // heartbeat. Every poll of every member is a renewal: at 16 processes the fast polls were most
    // of a change's statements, and slowed the change they waited for (docs/benchmarks.md).
    let fastPolls = 0
    const nextDelay = (state: State.MemberState): number => {
      if (state._tag !== "Awaiting") {
        fastPolls = 0
        return heartbeatMs
      }
      const cap = Math.max(barrierPollMs, heartbeatMs / 10)
      const d = ctx.listening.current && fastPolls >= listeningFastPolls
        ? Math.max(cap, heartbeatMs / 4)
        : Math.min(cap, barrierPollMs * 2 ** fastPolls)
      fastPolls = Math.min(fastPolls + 1, 30)
      return d
    }

    // A wake-up (a notification, which anyone can send) only brings the next renewal forward, and
    // at most `wakeBurst` times in a row: a flood of notifications costs a bounded number of renewals.
    const wakeRefillMs = Math.max(barrierPollMs, heartbeatMs / 20)
    let wakeTokens = wakeBurst
    /** When the bucket was last refilled (member's clock; undefined: never, it is full). */
    let wakeRefilledAt: number | undefined = undefined
    /**
     * Takes a wake token if there is one (0), or returns how long until the next one (ms), after
     * which the caller takes it (`tokenTaken`). A clock that went back refills nothing (it used to
     * make the wait hours long, for a member whose clock read before the epoch of its first wake).
     */
    const refill = (now: number) => {
      const elapsed = wakeRefilledAt === undefined ? 0 : Math.max(0, now - wakeRefilledAt)
      wakeTokens = Math.min(wakeBurst, wakeTokens + elapsed / wakeRefillMs)
      wakeRefilledAt = now
    }
    /** Whether a wake token is there now (not taken). */
    const hasWakeToken = (now: number): boolean => {
      refill(now)
      return wakeTokens >= 1
    }
    const wakeTokenIn = (now: number): number => {
      refill(now)
      if (wakeTokens >= 1) {
        wakeTokens -= 1
        return 0
      }
      return (1 - wakeTokens) * wakeRefillMs
    }
    const tokenTaken = (now: number) => {
      wakeTokens = 0
      wakeRefilledAt = now
    }
    /**
     * Whatever ended a wait of `waitMs` begun at `startedAt` (`reason`): a wake first waits for its
     * token, at most for what is left of that wait (then it is the timer's turn) and only until a
     * poke (which asks for a renewal now; a wake that comes meanwhile stays pending).
     */
    const afterWait = (reason: Signal.Reason, startedAt: number, waitMs: number): Effect.Effect<Signal.Reason> =>
      reason !== "wake" ? Effect.succeed(reason) : Effect.gen(function*() {
        const now = yield* nowMillis
        const tokenMs = wakeTokenIn(now)
        if (tokenMs === 0) return "wake"
        const leftMs = Math.max(0, waitMs - Math.max(0, now - startedAt))
        const waited = yield* ctx.signal.wait(Math.min(tokenMs, leftMs), { wakes: false })
        if (waited === "poke") return "poke"
        if (tokenMs > leftMs) return "timer"
        tokenTaken(yield* nowMillis)
        return "wake"
      })

    // A plain periodic renewal (the member is Assigned, the timer ran out) floats over the last
    // `renewalWindow` of its heartbeat: it is asked for that much early and the store may hold it
    // until the heartbeat is due, to send it in one statement with other members' renewals. So no
    // renewal goes later than without the window (its deadline counts from the time it was asked
    // for, earlier still); a wake-up or a poke while it is held sends it at once.
    // Only while another member renews through the same store: a member alone has nobody to share a
    // statement with, and holding its renewal (then a race with the poke and the wake-up, a timer in
    // the batcher) cost its process about as much CPU as the rest of the renewal (docs/benchmarks.md).
    const fullWindowMs = store.sharesHeartbeats === true ? renewalWindowMs(config) : 0
    const windowNow: Effect.Effect<number> = fullWindowMs === 0 || store.sharesHeartbeatsNow === undefined
      ? Effect.succeed(fullWindowMs)
      : Effect.map(store.sharesHeartbeatsNow(ctx.info.memberId), (shared) => (shared ? fullWindowMs : 0))
    // While a renewal is held, a poke sends it at once, and so does a wake that finds a token; one
    // that finds none stays pending (the renewal goes at its time, and the next wait takes the wake).
    // As does any that comes once the renewal is on its way: that renewal was sent before it. A race
    // of the held call with a wait for the signal (two fibers, one interrupted, and a second call
    // when the wait won) cost about a fifth of a renewal's allocation (docs/benchmarks.md).
    const serveWhileHeld = (sendNow: Effect.Effect<boolean>) => (reason: "poke" | "wake") =>
      reason === "poke" ? sendNow : Effect.flatMap(nowMillis, (now) => {
        if (!hasWakeToken(now)) return Effect.succeed(false)
        return Effect.tap(sendNow, (sent) => {
          if (sent) wakeTokens -= 1
        })
      })
    const holdUntilSignal = (sendNow: Effect.Effect<boolean>) => ctx.signal.hold(serveWhileHeld(sendNow))

    /** The lease deadline a renewal was last sent early for (in the loop below). */
    let hurriedFor: number | undefined = undefined
    /** Whether the last renewal came back with a view (it renewed the lease). */
    let lastRenewed = false

    /** `windowMs`: a plain periodic renewal that floats over that much of its heartbeat (0: none). */
    const renew = (windowMs: number) => Effect.gen(function*() {
      const member = yield* Ref.get(ctx.member)
      const state = member.state
      if (!Transition.holdsLease(state)) {
        lastRenewed = false
        return
      }
      // Renewals are numbered in the order sent (`Member.ackingFrom`, a claim's `afterRenewal`).
      const renewal = ++ctx.renewalsNumbered.current
      // Waiting at the barrier (no state but `Assigned` runs work, and `Awaiting` is entered only
      // once it has stopped): acknowledge whatever epoch the group is in, so that the renewal that
      // learns a change acknowledges it too (Transition's `Notified`). The state read above may be
      // behind views still queued for the driver; `AckingCurrent` checks `Awaiting` and records this
      // renewal's number in one step, after which no view of an earlier renewal starts work.
      let ackCurrent = false
      if (state._tag === "Awaiting" && ctx.config.slots === undefined) {
        yield* observe(Transition.Observation.AckingCurrent({ renewal }))
        ackCurrent = (yield* Ref.get(ctx.member)).ackingFrom === renewal
      }
      const stuck = State.isStuck(state)
      if (stuck && member.stuckSince !== undefined) {
        const seconds = ((yield* nowMillis) - member.stuckSince) / 1000
        yield* Metric.set(ctx.metrics.stuckWork, seconds)
        yield* Effect.logError(
          `modulo-group: work has not stopped for ${seconds.toFixed(1)} s (${State.format(state)}); ` +
            "the group cannot move on until it does"
        )
      }
      const sentAt = yield* nowMillis
      const call = (holdMs: number, early?: (sendNow: Effect.Effect<boolean>) => Effect.Effect<void>) =>
        Effect.either(
          store.heartbeat(groupId, ctx.info.memberId, member.acked, ctx.timing.leaseMs, {
            // A waiting member that finds the barrier down announces it, unless it has heard it
            // announced (then it was woken by that: announcing again would wake everyone again).
            announce: state._tag === "Awaiting" && ctx.heardReady.current !== state.epoch,
            stuck,
            slots: ctx.config.slots !== undefined,
            ackCurrent,
            // Modulo mode: the place the acknowledged epoch gave it (slots mode has no barrier).
            ackPlace: ctx.config.slots === undefined ? Transition.ackPlace(member) : undefined,
            holdMs,
            early
          })
        )
      const held = windowMs > 0 && state._tag === "Assigned" && !stuck
      const result = held
        ? yield* Effect.ensuring(call(windowMs, holdUntilSignal), ctx.signal.unhold)
        : yield* call(0)
      const receivedAt = yield* nowMillis
      lastRenewed = result._tag === "Right" && result.right._tag === "Some"
      if (result._tag === "Left") {
        if (!(yield* refusedOnce(ctx, "heartbeat", result.left))) yield* Effect.logWarning(`heartbeat failed: ${result.left.reason}`)
      } else {
        yield* connected(ctx)
      }
      yield* observe(Transition.Observation.RenewalReplied({
        renewal,
        term: member.term,
        sentAt,
        receivedAt,
        reply: result._tag === "Left"
          ? Transition.RenewalReply.Failed({ reason: result.left.reason })
          : result.right._tag === "None"
          ? Transition.RenewalReply.NoRow()
          : Transition.RenewalReply.View({ view: result.right.value })
      }))
    })

    return yield* Effect.gen(function*() {
      // Said before the state is read: a join that lands in between is then poked for (at worst
      // once more than needed), never missed.
      ctx.keeperBeforeJoin.current = true
      const { deadline, state } = yield* Ref.get(ctx.member)
      const joined = Transition.holdsLease(state)
      ctx.keeperBeforeJoin.current = !joined
      const delay = nextDelay(state)
      const windowMs = yield* windowNow
      const startedAt = yield* nowMillis
      // Never so late that the renewal may not come back before the lease deadline: when a renewal
      // sent on schedule (after `delay`) could take its whole statement timeout and come back after
      // the deadline, it goes at the last moment from which it cannot (the deadline less the
      // statement timeout), at once if that has passed. After a reply that came back late (a paused
      // process, a slow server), a full heartbeat's wait missed the deadline: the member stopped its
      // work for want of a renewal it could have sent (or, with work that will not stop, worked past
      // its lease: the model test found that). A config with little slack (lease - heartbeat -
      // fenceMargin - statementTimeout, below the round trip) takes this path after every renewal,
      // at about the heartbeat's cadence (sent at once, it renewed back to back: an adversarial
      // review). Only after a renewal that renewed (a failed one leaves the deadline as it was:
      // renewals keep their cadence through an outage), and once per deadline. Also when the
      // deadline has passed: a reply read after it (the process stalled between the statement and
      // its reply) leaves the deadline where it was, yet the lease that statement wrote on the
      // database runs on, and the member, fenced, keeps it while its work stops only by renewing
      // now; after a heartbeat's wait the lease had run out and the next epoch started beside the
      // work still stopping (G2: an adversarial review, attack78; test/safety/pauseInCall.pg.test.ts).
      // After every such renewal, not once per deadline: the one stalled may itself have been the
      // early renewal of that deadline (a review of the first version of this, attack80). No storm:
      // a renewal that renewed and left the deadline passed came back at least `validMs` after it
      // was sent (or was a reply of the term before a rejoin, once).
      const passed = deadline !== undefined && deadline <= startedAt
      const urgent = joined && lastRenewed && deadline !== undefined &&
        (passed || (deadline !== hurriedFor && deadline - startedAt < delay + statementTimeoutMs))
      if (urgent) hurriedFor = deadline
      const floating = !urgent && windowMs > 0 && delay === heartbeatMs && (yield* Ref.get(ctx.member)).state._tag === "Assigned"
      // The first of the timer, a poke and a wake (internal/membership/signal.ts).
      const waitMs = urgent ? Math.max(0, deadline - startedAt - statementTimeoutMs) : floating ? heartbeatMs - windowMs : delay
      const reason = yield* Effect.flatMap(ctx.signal.wait(waitMs), (woke) => afterWait(woke, startedAt, waitMs))
      ctx.keeperBeforeJoin.current = false
      // Joined during this wait, into a barrier: this renewal is the join's at the barrier, as an
      // acknowledgement's is (the wait before an acknowledgement's renewal already counted one).
      if (!joined && (yield* Ref.get(ctx.member)).state._tag === "Awaiting") fastPolls = 1
      const periodic = reason === "timer"
      yield* renew(periodic && floating ? windowMs : 0)
      yield* recordHeartbeatAge(ctx)
    }).pipe(Effect.forever)
  })
