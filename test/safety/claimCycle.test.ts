/**
 * Forged claims timed against a member's renewals (an adversarial review of 8267c0e, reproduced on
 * PostgreSQL: 121 restarts in 5 s, one epoch). A claim of a newer epoch stops a working member; the
 * claim is settled by the first renewal sent after it. A renewal already in flight when the claim
 * came (sent before it) settles nothing and, showing the barrier of the epoch the member works in,
 * restarts the work; a new claim while the first was still open replaced it, before any renewal sent
 * after it had replied. So a forger that claims a few milliseconds after each renewal goes out paused
 * the work about every round trip, for ever, and never had a claim proven false. Now a claim counts
 * only while none is open (`Transition.claimsCount`): the renewal after the first settles it false,
 * and claims stop nothing more in that epoch.
 *
 * In-memory store, TestClock; each renewal takes 10 ms there and back.
 */
import { expect, it } from "@effect/vitest"
import { Clock, Duration, Effect, PubSub, Scope, Stream, TestClock } from "effect"
import * as InMemoryMembershipStore from "../../src/InMemoryMembershipStore.js"
import * as Membership from "../../src/Membership.js"
import type { MembershipStoreService, Wakeup } from "../../src/MembershipStore.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import { at, now } from "./support.js"

it.scoped("claims timed against the member's renewals pause its work once per epoch", () =>
  Effect.gen(function*() {
    const { store } = yield* InMemoryMembershipStore.make
    const forged = yield* PubSub.unbounded<Wakeup>()
    let renewals = 0
    const distant: MembershipStoreService = {
      ...store,
      heartbeat: (...args: Parameters<MembershipStoreService["heartbeat"]>) =>
        Effect.sync(() => void renewals++).pipe(
          Effect.zipRight(Effect.sleep(Duration.millis(5))),
          Effect.zipRight(store.heartbeat(...args)),
          Effect.tap(() => Effect.sleep(Duration.millis(5)))
        ),
      wakeups: (g) => Effect.map(store.wakeups(g), (w) => Stream.merge(w, Stream.fromPubSub(forged)))
    }
    const m = yield* Membership.make({ groupId: "safety-claim-cycle", name: "a" }).pipe(
      Effect.provideService(MembershipStore, distant)
    )
    const runs: Array<{ readonly epoch: number; readonly start: number }> = []
    yield* m.whileAssigned((a) =>
      Effect.flatMap(Clock.currentTimeMillis, (start) => Effect.sync(() => void runs.push({ epoch: a.epoch, start }))).pipe(
        Effect.zipRight(Effect.never)
      )
    ).pipe(Scope.extend(yield* Effect.scope))
    while (runs.length === 0) yield* TestClock.adjust(Duration.millis(1))
    const e = runs[0]!.epoch
    const claim = PubSub.publish(forged, { payload: `${e + 5}` })
    // The forger: 3 ms after a renewal goes out, then 3 ms after every restart, for 1.5 s.
    yield* at(3_000)
    const sent = renewals
    while (renewals === sent) yield* TestClock.adjust(Duration.millis(1))
    yield* TestClock.adjust(Duration.millis(3))
    yield* claim
    let seen = runs.length
    const end = (yield* now) + 1_500
    while ((yield* now) < end) {
      yield* TestClock.adjust(Duration.millis(1))
      if (runs.length > seen) {
        seen = runs.length
        yield* TestClock.adjust(Duration.millis(3))
        if ((yield* m.state)._tag === "Assigned") yield* claim
      }
    }
    expect(new Set(runs.map((r) => r.epoch))).toEqual(new Set([e]))
    // One pause (the first claim), one restart; before: about one restart per round trip (~150).
    expect(runs.length).toBeLessThanOrEqual(2)
    // And no stream of renewals: about one a heartbeat, a few more around the pause.
    expect(renewals).toBeLessThanOrEqual(12)
  }))
