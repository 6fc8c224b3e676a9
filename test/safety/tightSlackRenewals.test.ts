/**
 * The lease keeper's early renewal (internal/membership/leaseKeeper.ts) over a config with little
 * slack: lease 5010 ms > heartbeat 1 s + fenceMargin 2 s + statementTimeout 2 s (10 ms to spare, a
 * valid config), and every reply 15 ms after its statement (a round trip). Each renewal then comes
 * back "late" by the rule (a renewal sent a heartbeat later could take its statement timeout and come
 * back past the deadline), and the first version of the rule sent the next one at once: back to back,
 * 67 a second instead of one (an adversarial review, 2026-12-07; 162 a second for four members of one
 * store on PostgreSQL). Now it goes at the deadline less the statement timeout: about one a heartbeat,
 * and the member keeps its lease.
 */
import { expect, it } from "@effect/vitest"
import { Clock, Duration, Effect, Exit, Scope } from "effect"
import * as InMemoryMembershipStore from "../../src/InMemoryMembershipStore.js"
import * as Membership from "../../src/Membership.js"
import type { MembershipStoreService } from "../../src/MembershipStore.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import { at, now } from "./support.js"

it.scoped("a steady 15 ms round trip over a config with 10 ms of slack: one renewal a heartbeat, the lease kept", () =>
  Effect.gen(function*() {
    const { store } = yield* InMemoryMembershipStore.make
    const sends: Array<number> = []
    const slow: MembershipStoreService = {
      ...store,
      heartbeat: (...args: Parameters<MembershipStoreService["heartbeat"]>) =>
        Effect.gen(function*() {
          sends.push(yield* Clock.currentTimeMillis)
          const reply = yield* store.heartbeat(...args)
          yield* Effect.sleep(Duration.millis(15))
          return reply
        })
    }
    const scope = yield* Scope.make()
    const m = yield* Membership.make({
      groupId: "tight-slack-renewals",
      name: "a",
      heartbeat: "1 second",
      lease: Duration.millis(5_010),
      fenceMargin: "2 seconds",
      statementTimeout: "2 seconds",
      notifications: false
    }).pipe(Effect.provideService(MembershipStore, slow), Scope.extend(scope))
    const t0 = yield* now
    // Every 50 ms of virtual time for 12 s, the state checked at each step.
    let left = 0
    for (let t = t0; t <= t0 + 12_000; t += 50) {
      yield* at(t)
      if ((yield* m.state)._tag !== "Assigned" && t > t0 + 1_000) left++
    }
    yield* Scope.close(scope, Exit.void)
    const inLastTen = sends.filter((s) => s >= t0 + 2_000 && s < t0 + 12_000).length
    expect(left, "steps not Assigned after the first second").toBe(0)
    // About one a heartbeat (each at the deadline less the statement timeout: 1010 ms apart).
    expect(inLastTen, "renewals in 10 virtual seconds (heartbeat 1 s)").toBeGreaterThanOrEqual(9)
    expect(inLastTen, "renewals in 10 virtual seconds (heartbeat 1 s)").toBeLessThanOrEqual(11)
  }), 120_000)
