/**
 * Shared by the overdue suites: real members on real PostgreSQL, each behind a store that can hang
 * (a SIGSTOP or a kill -9), and a group of three of them whose third has hung until it is overdue.
 */
import { type Duration, Effect, Exit, Layer, Option, Scope } from "effect"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import type { MembershipConfigInput } from "../../src/MembershipConfig.js"
import type { MembershipStoreService } from "../../src/MembershipStore.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { exactCover, makeRecorder } from "../support/Recorder.js"
import { waitFor, waitForEffect } from "../support/Wait.js"

/** Heartbeat 200 ms (overdue after 400 ms), statement timeout 1 s (a lock wait of 750 ms). */
export const fast = (lease: Duration.DurationInput) =>
  ({ heartbeat: "200 millis", lease, fenceMargin: "500 millis", statementTimeout: "1 second" }) as const

export const StoreLive = PgMembershipStore.layerUsingNotifier({ statementTimeout: "1 second" }).pipe(
  Layer.provideMerge(Notifier.layer),
  Layer.provideMerge(PgLive)
)

/** The store as one member sees it: once `hung`, none of its calls returns (a SIGSTOP or a kill -9). */
const hangable = (base: MembershipStoreService, member: { hung: boolean }): MembershipStoreService => {
  const gate = <A, E, R>(call: () => Effect.Effect<A, E, R>) => Effect.suspend(() => (member.hung ? Effect.never : call()))
  return {
    ...base,
    join: (...a) => gate(() => base.join(...a)),
    heartbeat: (...a) => gate(() => base.heartbeat(...a)),
    reap: (...a) => gate(() => base.reap(...a)),
    leave: (...a) => gate(() => base.leave(...a)),
    release: (...a) => gate(() => base.release(...a))
  }
}

/**
 * a, b and c working in a group of `config`; then c hangs, and this returns once it is overdue (no
 * renewal for 500 ms): `join` more members (`flag.hung` hangs one, `close` stops it gracefully), `rowOf` a member's row by name,
 * `before` the epoch c worked in, `hungAt` when it hung.
 */
export const withOverdueMember = (label: string, config: Partial<MembershipConfigInput>) =>
  Effect.gen(function*() {
    const groupId = randomGroupId(label)
    const rec = yield* makeRecorder
    const base = yield* MembershipStore
    const join = (name: string, input: Partial<MembershipConfigInput> = {}) =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const flag = { hung: false }
        const m = yield* Membership.make({ groupId, ...config, name, ...input }).pipe(
          Effect.provideService(MembershipStore, hangable(base, flag)),
          Scope.extend(scope)
        )
        yield* rec.track(m, name).pipe(Scope.extend(scope))
        yield* Effect.addFinalizer(() => Effect.sync(() => void (flag.hung = false)).pipe(Effect.zipRight(Scope.close(scope, Exit.void))))
        return { m, flag, close: Scope.close(scope, Exit.void) }
      })
    yield* join("a")
    yield* join("b")
    const c = yield* join("c")
    yield* waitFor(() => exactCover(rec.working(), 3), undefined, "three members working")
    const before = Option.getOrThrow(yield* base.group(groupId)).epoch
    c.flag.hung = true
    const hungAt = Date.now()
    const rowOf = (name: string) => Effect.map(base.members(groupId), (rows) => rows.find((r) => r.name === name))
    // Overdue: two heartbeats (400 ms) without a renewal, by the database clock.
    yield* waitForEffect(Effect.map(rowOf("c"), (r) => r !== undefined && r.heartbeatAgeMs > 500), undefined, "c overdue")
    return { groupId, rec, base, join, rowOf, before, hungAt }
  })

/** Samples every 10 ms until a and b work again in an epoch after `before`: how long they did not (up to 10 s). */
export const idleOfSurvivors = (rec: Effect.Effect.Success<typeof makeRecorder>, before: number) =>
  Effect.gen(function*() {
    let stoppedAt: number | undefined
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline) {
      const w = rec.working().filter((x) => x.member === "a" || x.member === "b")
      if (stoppedAt === undefined && w.length < 2) stoppedAt = Date.now()
      if (stoppedAt !== undefined && w.length === 2 && w.every((x) => x.epoch > before)) return Date.now() - stoppedAt
      yield* Effect.sleep("10 millis")
    }
    return undefined
  })
