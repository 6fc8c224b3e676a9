/**
 * G2 at scope close (an adversarial review): the final leave stopped the work without renewing. The
 * loops (lease keeper, fence timer) are interrupted before `finalLeave` runs, and it renewed only once
 * `stopTimeout` had passed (`HoldUntilStopped`): a cleanup shorter than `stopTimeout` but longer than
 * what was left of the lease ran on after the lease had run out on the database clock, the database
 * reachable all along; the others reaped the leaver and started the next epoch beside it. Now the
 * final leave renews every heartbeat while it waits for the work (`StoppingHeartbeat`), from a
 * heartbeat after the last renewal that renewed (at once if that is past).
 *
 * Interleaving before the fix (lease 2 s, heartbeat 200 ms, stopTimeout 5 s, the default; cleanup 3.5 s):
 *   t=0     A and B work epoch E (size 2); A's scope closes: its loops are interrupted; the final
 *           leave interrupts A's work and waits up to stopTimeout for it, renewing nothing.
 *   t<=2.2  A's lease runs out; B's next renewal sees it expired and reaps A.
 *   t~2.3   B, alone in epoch E+1, starts, while A's cleanup of epoch E runs until 3.5 s.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Clock, Duration, Effect, Exit, Layer, Scope } from "effect"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { waitFor } from "../support/Wait.js"

const StoreLive = PgMembershipStore.layerUsingNotifier().pipe(Layer.provideMerge(Notifier.layer), Layer.provideMerge(PgLive))

// A valid configuration (the validation accepts it); stopTimeout is the default, 5 s.
const fast = { heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const

/**
 * Members of `groupId` whose runs record when they start and end (their cleanup, `cleanupMs`, and
 * `stuckMs` of ignoring the interruption, included), and any start beside a run of another epoch.
 */
const tracked = (groupId: string, timing: Partial<typeof fast>) => {
  const log: Array<string> = []
  const open = new Map<string, number>() // member -> epoch it works in
  const violations: Array<string> = []
  const mark = (who: string, kind: "start" | "end", epoch: number) =>
    Effect.map(Clock.currentTimeMillis, (at) => {
      log.push(`${at} ${who} ${kind} epoch ${epoch}`)
      if (kind === "start") {
        for (const [other, e] of open) {
          if (e !== epoch) violations.push(`${who} started epoch ${epoch} while ${other} still worked in epoch ${e}`)
        }
        open.set(who, epoch)
      } else open.delete(who)
    })
  const join = (who: string, cleanupMs: number, stuckMs = 0) =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const m = yield* Membership.make({ groupId, ...timing }).pipe(Scope.extend(scope))
      yield* m.whileAssigned((a) =>
        Effect.acquireRelease(
          mark(who, "start", a.epoch),
          () => Effect.zipRight(Effect.sleep(Duration.millis(cleanupMs)), mark(who, "end", a.epoch))
        ).pipe(
          // stuckMs > 0: work that ignores its interruption for that long (it holds the barrier).
          Effect.zipRight(stuckMs > 0 ? Effect.uninterruptible(Effect.sleep(Duration.millis(stuckMs))) : Effect.void),
          Effect.zipRight(Effect.never),
          Effect.scoped
        )
      ).pipe(Scope.extend(scope))
      return { m, close: Scope.close(scope, Exit.void) }
    })
  const bothWorking = waitFor(() => open.size === 2 && new Set(open.values()).size === 1, Duration.seconds(20), "both working one epoch")
  return { log, open, violations, join, bothWorking }
}

const scenario = (aCleanupMs: number, aStuckMs: number) =>
  Effect.gen(function*() {
    const { bothWorking, join, log, violations } = tracked(randomGroupId("final-leave"), fast)
    // The cleanup: within stopTimeout (5 s), longer than the lease (2 s).
    const a = yield* join("A", aCleanupMs, aStuckMs)
    const b = yield* join("B", 0)
    yield* bothWorking

    // A's scope closes (SIGTERM under runMain, or the app's own scope): in the background, as it waits.
    yield* Effect.forkDaemon(a.close)
    // Give A's work time to finish; meanwhile B must not start a new epoch beside it.
    yield* Effect.sleep(Duration.millis(Math.max(aCleanupMs, aStuckMs) + 1_500))
    yield* b.close
    return { violations, log }
  }).pipe(Effect.provide(StoreLive))

/** B went on after A's leave: it started a later epoch than its first (A left, gracefully, in the end). */
const bMovedOn = (log: ReadonlyArray<string>) => {
  const epochs = log.flatMap((line) => /^\d+ B start epoch (\d+)$/.exec(line)?.slice(1).map(Number) ?? [])
  return epochs.length >= 2 && epochs[epochs.length - 1]! > epochs[0]!
}

it.live("G2: a cleanup at scope close longer than the lease's rest (within stopTimeout) keeps the lease: nobody starts beside it", () =>
  Effect.gen(function*() {
    const { log, violations } = yield* scenario(3_500, 0)
    expect(violations).toEqual([])
    expect(bMovedOn(log)).toBe(true)
  }), 60_000)

// Work that will not stop "holds the barrier, loudly: fail closed" (PROTOCOL.md; docs/guarantees.md
// G2: "at scope close (the leave waits, renewing)"). At scope close it does not: for stopTimeout the
// final leave renews nothing, the lease (2 s) lapses, B reaps A and starts the next epoch while A's
// work still runs; A's HoldUntilStopped renewals after 5 s find no row.
it.live("G2: work that will not stop at scope close holds the barrier, renewing, before and after stopTimeout", () =>
  Effect.gen(function*() {
    const { log, violations } = yield* scenario(0, 8_000)
    expect(violations).toEqual([])
    expect(bMovedOn(log)).toBe(true)
  }), 60_000)

/**
 * The same with the DEFAULT timing (heartbeat 1 s, lease 10 s, fenceMargin 2 s, statementTimeout 2 s,
 * stopTimeout 5 s): the gap opens whenever the member's last successful renewal is older than
 * lease - stopTimeout when its scope closes. Here an operator's session holds A's row lock for 6.5 s
 * (a slow database would do the same): A's renewals time out, A keeps working (its deadline is its
 * last good renewal + 8 s), then the lock goes and A's scope closes at once (SIGTERM). The database is
 * reachable from then on, A's cleanup takes 4.9 s (< stopTimeout), and A renews nothing: its lease runs
 * out about 10 s after its last good renewal, B reaps it and starts the next epoch while A's cleanup
 * of the old epoch still runs. (configuration.md: "`stopTimeout` ... applies while the member can
 * still renew (stuck work then holds the barrier)".)
 */
it.live("G2 with the default timing: renewals late before the close, then a cleanup within stopTimeout: the close renews at once", () =>
  Effect.gen(function*() {
    const { bothWorking, join, log, open, violations } = tracked(randomGroupId("final-leave-defaults"), {})
    const a = yield* join("A", 4_900)
    const b = yield* join("B", 0)
    yield* bothWorking
    const sql = yield* SqlClient.SqlClient
    // Hold A's row for 6.5 s (A's renewals time out meanwhile; A keeps working, within its deadline).
    yield* sql.withTransaction(Effect.zipRight(
      sql`SELECT 1 FROM modulo_group.members WHERE member_id = ${a.m.memberId}::uuid FOR UPDATE`,
      Effect.sleep(Duration.millis(6_500))
    ))
    expect(open.get("A")).toBeDefined() // still working
    yield* Effect.forkDaemon(a.close)
    yield* Effect.sleep(Duration.seconds(8))
    yield* b.close
    expect(violations).toEqual([])
    expect(bMovedOn(log)).toBe(true)
  }).pipe(Effect.provide(StoreLive)), 90_000)
