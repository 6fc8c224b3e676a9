/**
 * A member's process stalls (a GC pause, SIGSTOP, a blocked event loop) after its renewal has run on
 * the server and before it reads the reply, and resumes past that reply's own deadline (send time +
 * lease - fenceMargin) but inside the lease the renewal wrote on the database. The reply counts as a
 * late one (the deadline stays), the fence fires at once, and the member's work stops within
 * fenceMargin, as docs/guarantees.md asks. An adversarial review (attack78) found that the lease
 * keeper, seeing the deadline passed, waited a whole heartbeat before it renewed: the lease ran out
 * meanwhile, another member reaped the row and started the next epoch 54-159 ms before the stalled
 * member's work of the older epoch had ended (G2, 7 of 7 runs alone), and a member alone lost its
 * row and rejoined (two changes) where one renewal as it resumed kept it. Now, after a renewal that
 * renewed, the keeper renews at once when the deadline has passed too (once per deadline), and the
 * member keeps its lease while its work stops (leaseKeeper.ts, "urgent").
 *
 * The stall is the process's own: the event loop is blocked (`Atomics.wait`), so no fiber runs, the
 * fence timer included, as under SIGSTOP. Its timing is set by a wrapper of the store's heartbeat
 * that blocks once the statement's reply is in (before handing it on).
 */
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Ref } from "effect"
import * as Membership from "../../src/Membership.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import { randomGroupId } from "../support/Database.js"
import { nextEpochAfterStoppedWork, stall, StoreLive } from "./stallSupport.js"

// Valid: lease 3 s > heartbeat 1 s + fenceMargin 1 s + statementTimeout 0.5 s (a lone member: no window).
const timing = { heartbeat: "1 second", lease: "3 seconds", fenceMargin: "1 second", statementTimeout: "500 millis" } as const


const run = (where: "after the reply came in" | "before the renewal is sent") =>
  Effect.gen(function*() {
    const store = yield* MembershipStore
    const armed = yield* Ref.make(false)
    const stalled = yield* Ref.make(false)
    const stallMs = 2_300 // the reply's deadline is 2 s after its send; the lease 3 s
    const wrapped = {
      ...store,
      heartbeat: ((groupId, memberId, ack, leaseMs, options) =>
        Effect.gen(function*() {
          const go = (yield* Ref.get(armed)) && !(yield* Ref.get(stalled))
          if (go) yield* Ref.set(stalled, true)
          // A stall before the send: the last renewal's lease runs as long as the caught one's would.
          if (go && where === "before the renewal is sent") {
            // Stall through what is left of the last lease but 0.7 s: resumes as the other case does.
            stall(stallMs - 1_000)
          }
          const reply = yield* store.heartbeat(groupId, memberId, ack, leaseMs, options)
          if (go && where === "after the reply came in") stall(stallMs)
          return reply
        })) satisfies typeof store.heartbeat
    }
    const m = yield* Membership.make({ groupId: randomGroupId("pause-in-call"), ...timing, notifications: false }).pipe(
      Effect.provideService(MembershipStore, wrapped)
    )
    const first = yield* m.awaitAssigned
    yield* Effect.sleep(Duration.millis(1_500))
    yield* Ref.set(armed, true)
    // The stall, then 4 s: two leases' worth of renewals after it.
    yield* Effect.sleep(Duration.seconds(6))
    const state = yield* m.state
    return { first, state }
  })

it.live("stalled after its renewal ran, resumed inside that renewal's lease: the member keeps its row", () =>
  Effect.gen(function*() {
    const { first, state } = yield* run("after the reply came in")
    // Same epoch as before the stall: no loss of the row, no rejoin.
    expect(state._tag).toBe("Assigned")
    expect((state as { epoch: number }).epoch).toBe(first.epoch)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)

it.live("control: stalled just before the renewal is sent, resumed at the same point of the lease: it keeps its row", () =>
  Effect.gen(function*() {
    const { first, state } = yield* run("before the renewal is sent")
    expect(state._tag).toBe("Assigned")
    expect((state as { epoch: number }).epoch).toBe(first.epoch)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)

// With a second member, and work whose cleanup takes 1.1 s of its 1.2 s fenceMargin.
it.live("G2: work that stops within fenceMargin of its fence does not run beside the next epoch after a stall", () =>
  Effect.gen(function*() {
    const store = yield* MembershipStore
    const armed = yield* Ref.make(false)
    let stalled = false
    const m0Store = {
      ...store,
      heartbeat: ((g, memberId, ack, leaseMs, options) =>
        Effect.gen(function*() {
          const go = (yield* Ref.get(armed)) && !stalled
          if (go) stalled = true
          const reply = yield* store.heartbeat(g, memberId, ack, leaseMs, options)
          if (go) stall(2_300)
          return reply
        })) satisfies typeof store.heartbeat
    }
    yield* nextEpochAfterStoppedWork({
      groupId: randomGroupId("pause-in-call-g2"),
      m0Store,
      arm: Ref.set(armed, true),
      stalled: () => stalled,
      afterMs: 7_200
    })
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)
