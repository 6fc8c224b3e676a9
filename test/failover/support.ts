/**
 * Members for the failover suite: fibers of this process, each `Membership.join` over a store
 * (`PgMembership.layerStore`) whose pool connects through a switch, and a recorder of every member's
 * work intervals keyed by the fencing token (incarnation, epoch): epochs start over in a new
 * incarnation, so G1 and G2 are judged on tokens, not on epoch numbers alone.
 */
import type { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Context, Duration, Effect, Exit, Layer, Logger, LogLevel, Redacted, Scope } from "effect"
import * as Membership from "../../src/Membership.js"
import type { MembershipConfigInput } from "../../src/MembershipConfig.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembership from "../../src/PgMembership.js"
import { urlOf } from "./Cluster.js"

/** One member's work under one assignment. `end` is undefined while it runs. */
export interface Interval {
  readonly member: string
  readonly incarnation: number
  readonly epoch: number
  readonly index: number
  readonly size: number
  readonly start: number
  end: number | undefined
}

const tokenOf = (i: Interval) => `${i.incarnation}/${i.epoch}`

export const makeRecorder = () => {
  const intervals: Array<Interval> = []
  const violations: Array<string> = []
  const open = () => intervals.filter((i) => i.end === undefined)

  const start = (member: string, a: { incarnation: number; epoch: number; index: number; size: number }) => {
    const now = Date.now()
    const mine: Interval = { member, ...a, start: now, end: undefined }
    for (const o of open()) {
      // G1: no index twice in one epoch. G2: no work of two epochs at once.
      if (tokenOf(o) === tokenOf(mine) && o.index === mine.index) {
        violations.push(`G1: ${member} started [${mine.index}/${mine.size}] of ${tokenOf(mine)} while ${o.member} held it`)
      }
      if (tokenOf(o) !== tokenOf(mine)) {
        violations.push(
          `G2: ${member} started [${mine.index}/${mine.size}] of ${tokenOf(mine)} while ${o.member} still worked ` +
            `[${o.index}/${o.size}] of ${tokenOf(o)}`
        )
      }
    }
    intervals.push(mine)
    return mine
  }

  /** Runs a worker on `m` that records the start and the end (finalizer) of each assignment. */
  const track = (m: Membership.MembershipService, label: string) =>
    m.whileAssigned((a) =>
      Effect.acquireRelease(
        Effect.sync(() => start(label, a)),
        (i) =>
          Effect.sync(() => {
            i.end = Date.now()
          })
      ).pipe(Effect.zipRight(Effect.never))
    )

  /** Whether exactly `n` members work, in one token, with indices 0..n-1. */
  const covered = (n: number) => {
    const w = open()
    const tokens = new Set(w.map(tokenOf))
    const idx = w.map((i) => i.index).sort((x, y) => x - y)
    return w.length === n && tokens.size === 1 && w.every((i) => i.size === n) && idx.every((x, k) => x === k)
  }

  return { intervals, violations, open, covered, track }
}

export type Recorder = ReturnType<typeof makeRecorder>

/** A store through `port` (a switch): one pool, one LISTEN connection, shared by its members. */
export const storeVia = (port: number, name: string) =>
  Layer.build(
    PgMembership.layerStore({ startupTimeout: "20 seconds" }).pipe(
      Layer.provideMerge(
        PgClient.layer({
          url: Redacted.make(urlOf(port)),
          applicationName: `modulo-group-failover-${name}`,
          connectTimeout: "1 second"
        })
      )
    )
  )

export type StoreContext = Context.Context<MembershipStore | SqlClient.SqlClient | PgClient.PgClient>

/**
 * A member of `groupId` over `store`, tracked by `rec` as `label`, in a scope of its own: `close`
 * leaves (bounded: its database may be gone).
 */
export const joinMember = (
  store: StoreContext,
  rec: Recorder,
  groupId: string,
  label: string,
  config: Omit<MembershipConfigInput, "groupId">
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const m = yield* Membership.join(groupId, { name: label, ...config }).pipe(
      Effect.provide(store),
      Effect.provide(PgMembership.nodeIdentity),
      // Every member logs each failed heartbeat while the database is away: errors only, here.
      Logger.withMinimumLogLevel(LogLevel.Error),
      Scope.extend(scope)
    )
    yield* rec.track(m, label).pipe(Scope.extend(scope))
    const close = Scope.close(scope, Exit.void).pipe(Effect.timeout(Duration.seconds(10)), Effect.ignore)
    yield* Effect.addFinalizer(() => close)
    return { m, label, close }
  })

/** Polls `done` every 5 ms of real time; dies after `maxMs`; returns the milliseconds it took. */
export const waitFor = (what: string, done: () => boolean, maxMs = 30_000) =>
  Effect.gen(function*() {
    const start = Date.now()
    while (!done()) {
      if (Date.now() - start > maxMs) return yield* Effect.dieMessage(`${what}: not within ${maxMs} ms`)
      yield* Effect.sleep(Duration.millis(5))
    }
    return Date.now() - start
  })
