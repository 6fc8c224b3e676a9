/**
 * Shared by the safety suites: the in-memory store recording every call with its virtual send and
 * return times (plus two fault knobs the store itself does not have: a slow reap and a view that
 * says "someone expired"), the work recorder, a log collector and TestClock helpers.
 */
import { Clock, Duration, Effect, Exit, Logger, Option, Scope, TestClock } from "effect"
import * as InMemoryMembershipStore from "../../src/InMemoryMembershipStore.js"
import * as Membership from "../../src/Membership.js"
import type { MembershipConfigInput } from "../../src/MembershipConfig.js"
import type { StoreError } from "../../src/MembershipError.js"
import type { GroupView, MembershipStoreService } from "../../src/MembershipStore.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import { makeRecorder } from "../support/Recorder.js"
import { stepUntil } from "../support/TestClock.js"

export const HEARTBEAT = 1_000
export const LEASE = 10_000
export const MARGIN = 2_000
export const STOP = 5_000

export interface Call {
  readonly op: string
  readonly member: string | undefined
  /** When the call was sent. */
  readonly at: number
  /** When it returned (undefined while it hangs), and how. */
  done?: number
  ok?: boolean
  result?: unknown
}

export const recordingStore = Effect.gen(function*() {
  const { control, store } = yield* InMemoryMembershipStore.make
  const calls: Array<Call> = []
  /** Extra latency of every reap (a reap waiting on the group row lock). */
  let reapDelayMs = 0
  /** Members whose next successful renewal reports `expired: true` (one shot each). */
  const injectExpired = new Set<string>()
  /** Members whose successful renewals' views are rewritten (until replaced): a view no committed state gives. */
  const injectView = new Map<string, (view: GroupView) => GroupView>()
  const record = <A>(op: string, member: string | undefined, effect: Effect.Effect<A, StoreError>) =>
    Effect.gen(function*() {
      const call: Call = { op, member, at: yield* Clock.currentTimeMillis }
      calls.push(call)
      const exit = yield* Effect.exit(effect)
      call.done = yield* Clock.currentTimeMillis
      call.ok = Exit.isSuccess(exit)
      if (Exit.isSuccess(exit)) call.result = exit.value
      return yield* exit
    })
  const recording: MembershipStoreService = {
    ...store,
    join: (...args: Parameters<MembershipStoreService["join"]>) => record("join", args[1].memberId, store.join(...args)),
    heartbeat: (...args: Parameters<MembershipStoreService["heartbeat"]>) =>
      record(
        "heartbeat",
        args[1],
        Effect.map(store.heartbeat(...args), (view) => {
          if (Option.isSome(view) && injectExpired.delete(args[1])) {
            return Option.some<GroupView>({ ...view.value, expired: true })
          }
          const rewrite = injectView.get(args[1])
          if (Option.isSome(view) && rewrite !== undefined) return Option.some(rewrite(view.value))
          return view
        })
      ),
    reap: (g) =>
      record("reap", undefined, Effect.zipRight(Effect.suspend(() => Effect.sleep(reapDelayMs)), store.reap(g))),
    leave: (g, memberId) => record("leave", memberId, store.leave(g, memberId))
  }
  const of = (op: string, member?: string) =>
    calls.filter((c) => c.op === op && (member === undefined || c.member === member))
  return {
    store: recording,
    control,
    calls,
    of,
    setReapDelay: (ms: number) => Effect.sync(() => void (reapDelayMs = ms)),
    injectExpired: (memberId: string) => Effect.sync(() => void injectExpired.add(memberId)),
    injectView: (memberId: string, rewrite: (view: GroupView) => GroupView) =>
      Effect.sync(() => void injectView.set(memberId, rewrite))
  }
})

export const setup = (groupId: string) =>
  Effect.gen(function*() {
    const s = yield* recordingStore
    const rec = yield* makeRecorder
    const join = (input: Partial<MembershipConfigInput> = {}, track = true) =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const m = yield* Membership.make({ groupId, ...input }).pipe(
          Effect.provideService(MembershipStore, s.store),
          Scope.extend(scope)
        )
        if (track) yield* rec.track(m, input.name ?? m.memberId).pipe(Scope.extend(scope))
        return { m, scope, id: m.memberId, name: input.name ?? m.memberId, close: Scope.close(scope, Exit.void) }
      })
    /** Last successful renewal of a member (send time). */
    const lastRenewal = (memberId: string) =>
      s.of("heartbeat", memberId).filter((c) => c.ok === true && Option.isSome(c.result as Option.Option<unknown>))
        .at(-1)?.at
    return { ...s, rec, join, lastRenewal }
  })

export interface LogLine {
  readonly at: number
  readonly level: string
  readonly message: string
}

/** A logger that keeps every line (instead of printing it), with the virtual time. */
export const collectLogs = () => {
  const lines: Array<LogLine> = []
  const logger = Logger.make(({ date, logLevel, message }) => {
    const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
    lines.push({ at: date.getTime(), level: logLevel.label, message: text })
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}

export const now = TestClock.currentTimeMillis

/** Moves the TestClock to `t` (absolute, in ms). */
export const at = (t: number) =>
  Effect.flatMap(now, (n) => (t > n ? TestClock.adjust(Duration.millis(t - n)) : Effect.void))

/** Advances in small steps until `done` holds; returns when (absolute ms). Dies after `max` ms. */
export const until = stepUntil

/** Like `until`, but with an effectful check. */
export const untilEffect = (done: Effect.Effect<boolean>, max = 60_000, step = 1) =>
  Effect.gen(function*() {
    const start = yield* now
    while (!(yield* done)) {
      if ((yield* now) - start > max) return yield* Effect.dieMessage(`not done within ${max} ms`)
      yield* TestClock.adjust(Duration.millis(step))
    }
    return yield* now
  })

/** A run of work: when it started and, once it has ended, when (virtual ms). */
export interface WorkRun {
  readonly start: number
  end?: number
}

/**
 * Work that records itself (`run(start)`) in `runs` and, when `stuck()` holds as it starts, ignores
 * its interruption for 3 × stopTimeout (an uninterruptible finalizer that sleeps 15 s).
 */
export const stuckWork = <R extends WorkRun>(runs: Array<R>, run: (start: number) => R, stuck: () => boolean) =>
  Effect.gen(function*() {
    const r = run(yield* Clock.currentTimeMillis)
    runs.push(r)
    const hold = stuck()
    yield* Effect.never.pipe(
      Effect.onInterrupt(() =>
        (hold ? Effect.sleep(3 * STOP) : Effect.void).pipe(
          Effect.zipRight(Effect.flatMap(Clock.currentTimeMillis, (t) => Effect.sync(() => void (r.end = t))))
        )
      )
    )
  })
