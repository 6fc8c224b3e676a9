/**
 * G3 and G2 (an adversarial review; the PostgreSQL version is riderLateView.pg.test.ts): a member
 * whose join's view came back late (the join ran at once: its lease began then) and showed the
 * barrier down went straight to `Assigned` and started its work, and nothing looked at its deadline
 * for up to a heartbeat: the fence timer had found no deadline while the member was joining and slept
 * a whole heartbeat, and the lease keeper's wait (a heartbeat long, begun before the join) was poked
 * only for a join into `Awaiting`. Work ran 3 s past the member's lease, beside the next epoch. Now
 * the fence timer waits for the step that sets a deadline (`stepNow`), and the lease keeper is poked
 * when a join into `Assigned` leaves too little of the lease for its wait.
 *
 * Heartbeat 5 s, lease 7 s, fenceMargin 0.5 s, statementTimeout 1 s (valid: lease > heartbeat +
 * fenceMargin + statementTimeout + renewalWindow); notifications off (G7). The in-memory store's
 * first join (a's) runs at once (its row's lease: until t=7) and answers at t=5.5; b joins at t=1
 * (epoch 2) and waits for a's acknowledgement. Without the fix: a starts epoch 1 at 5.5 s, its local
 * deadline 6.5 s passes unwatched, b reaps it at 7 s and starts epoch 3 alone while a works; a stops
 * at 10 s. The first test lets a renew (the poke: it renews at 5.5 s, learns epoch 2); the second
 * hangs a's renewals, so that only the fence timer stops it (at its deadline, 6.5 s).
 */
import { expect, it } from "@effect/vitest"
import { Clock, Duration, Effect, Exit, Scope } from "effect"
import * as InMemoryMembershipStore from "../../src/InMemoryMembershipStore.js"
import * as Membership from "../../src/Membership.js"
import type { MembershipStoreService } from "../../src/MembershipStore.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import { makeRecorder } from "../support/Recorder.js"
import { at, now } from "../safety/support.js"

const timing = {
  heartbeat: "5 seconds",
  lease: "7 seconds",
  fenceMargin: "500 millis",
  statementTimeout: "1 second",
  notifications: false
} as const
const LEASE = 7_000

const lateJoin = (renewalsOfA: "answer" | "hang") =>
  Effect.gen(function*() {
    const { store } = yield* InMemoryMembershipStore.make
    const rec = yield* makeRecorder
    const groupId = `late-join-view-${renewalsOfA}`
    // The first join (a's) runs at once; its answer comes 5.5 s later.
    let first = true
    let joinRanAt: number | undefined = undefined
    let a: string | undefined = undefined
    const lateFirstJoin: MembershipStoreService = {
      ...store,
      heartbeat: (...args: Parameters<MembershipStoreService["heartbeat"]>) =>
        renewalsOfA === "hang" && args[1] === a ? Effect.never : store.heartbeat(...args),
      join: (...args: Parameters<MembershipStoreService["join"]>) =>
        Effect.suspend(() => {
          if (!first) return store.join(...args)
          first = false
          a = args[1].memberId
          return Effect.gen(function*() {
            joinRanAt = yield* Clock.currentTimeMillis
            const view = yield* store.join(...args)
            yield* Effect.sleep(Duration.millis(5_500))
            return view
          })
        })
    }
    const member = (name: string) =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const m = yield* Membership.make({ groupId, name, ...timing }).pipe(
          Effect.provideService(MembershipStore, lateFirstJoin),
          Scope.extend(scope)
        )
        yield* rec.track(m, name).pipe(Scope.extend(scope))
        return { m, close: Scope.close(scope, Exit.void) }
      })

    const t0 = yield* now
    yield* member("a")
    yield* at(t0 + 1_000)
    yield* member("b")
    // Step through 12 s of the TestClock, 10 ms at a time.
    for (let t = t0 + 1_000; t <= t0 + 12_000; t += 10) yield* at(t)

    const aRuns = rec.marks.filter((k) => k.member === "a")
    expect(joinRanAt).toBe(t0)
    const aStart = aRuns.find((k) => k.kind === "start")
    expect(aStart).toBeDefined()
    // G3: a's work stops before its lease (from its join's write, at t0) can run out in the store.
    const aEnd = aRuns.find((k) => k.kind === "end")?.at ?? Infinity
    expect(aEnd - t0, "a's work ended (ms after its join wrote its lease)").toBeLessThanOrEqual(LEASE)
    // G2: nobody starts a newer epoch while a works.
    expect(rec.violations).toEqual([])
    if (renewalsOfA === "hang") expect(aEnd - t0, "a stopped at its local deadline").toBe(6_500)
    // Liveness: a renewal in time (at once), which acknowledged epoch 2: a works in it before its
    // first lease could have run out, not reaped and back later.
    else expect(aRuns.find((k) => k.kind === "start" && k.epoch === 2)?.at ?? Infinity).toBeLessThan(t0 + LEASE)
  })

it.scoped("a join's late view that starts work at once: the lease keeper renews at once, in time (G3, G2)", () => lateJoin("answer"), 60_000)

it.scoped("a join's late view that starts work at once, its renewals hanging: the fence timer stops it at its deadline (G3, G2)", () =>
  lateJoin("hang"), 60_000)
