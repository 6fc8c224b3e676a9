/**
 * The stall of test/safety/pauseInCall.pg.test.ts one step later. A reply that comes back slow (0.8 s
 * of a 2 s valid lease) makes the next renewal an early one (sent at the deadline less the statement
 * timeout, once per deadline). The process then stalls (`Atomics.wait`, 2.3 s) after that early
 * renewal ran on the server, and resumes past its reply's deadline, inside the lease it wrote. A
 * review (attack80) of the first fix of pauseInCall found the renewal after the stall still a
 * heartbeat late: that fix renewed at once after a passed deadline only once per deadline, and the
 * late reply left the deadline as it was, already hurried for. The lease ran out: a member alone lost
 * its row and rejoined, and with a second member the next epoch started 192-324 ms before the stalled
 * member's work, stopping within its fence margin, had ended (G2; 4 of 4 runs each). Now every renewal
 * that renewed and left the deadline passed is followed by one at once.
 */
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Ref } from "effect"
import * as Membership from "../../src/Membership.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import { randomGroupId } from "../support/Database.js"
import { nextEpochAfterStoppedWork, stall, StoreLive } from "./stallSupport.js"

/** After arming: call 1's reply is handed on 800 ms late (a slow reply, fibers run); call 2 stalls the process 2.3 s after its reply came in. */
const wrap = (store: MembershipStore["Type"], armed: Ref.Ref<boolean>, log: Array<string>, t0: number, slowMs = 800, onStall = () => {}) => {
  let n = 0
  return {
    ...store,
    heartbeat: ((g, memberId, ack, leaseMs, options) =>
      Effect.gen(function*() {
        const go = yield* Ref.get(armed)
        const i = go ? ++n : 0
        const sent = performance.now()
        const reply = yield* store.heartbeat(g, memberId, ack, leaseMs, options)
        log.push(`call ${i} sent ${(sent - t0).toFixed(0)} replied ${(performance.now() - t0).toFixed(0)} ${reply._tag}`)
        if (i === 1) yield* Effect.sleep(Duration.millis(slowMs))
        if (i === 2) {
          onStall()
          stall(2_300)
        }
        return reply
      })) satisfies typeof store.heartbeat
  }
}

it.live("slow reply, then a stall after the urgent renewal: a lone member keeps its row", () =>
  Effect.gen(function*() {
    const store = yield* MembershipStore
    const armed = yield* Ref.make(false)
    const log: Array<string> = []
    const t0 = performance.now()
    const m = yield* Membership.make({
      groupId: randomGroupId("hurried-stalled"), heartbeat: "1 second", lease: "3 seconds", fenceMargin: "1 second",
      statementTimeout: "500 millis", notifications: false
    }).pipe(Effect.provideService(MembershipStore, wrap(store, armed, log, t0)))
    const first = yield* m.awaitAssigned
    yield* Effect.sleep(Duration.millis(1_500))
    yield* Ref.set(armed, true)
    yield* Effect.sleep(Duration.seconds(8))
    const state = yield* m.state
    console.log(log.join("\n"))
    expect(state._tag).toBe("Assigned")
    expect((state as { epoch: number }).epoch).toBe(first.epoch)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)

it.live("G2: slow reply, then a stall after the urgent renewal: the next epoch does not start beside the stopping work", () =>
  Effect.gen(function*() {
    const store = yield* MembershipStore
    const armed = yield* Ref.make(false)
    const log: Array<string> = []
    let stalled = false
    yield* nextEpochAfterStoppedWork({
      groupId: randomGroupId("hurried-stalled-g2"),
      m0Store: wrap(store, armed, log, performance.now(), 600, () => {
        stalled = true
      }),
      arm: Ref.set(armed, true),
      stalled: () => stalled,
      afterMs: 9_000,
      log
    })
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)
