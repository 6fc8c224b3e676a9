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
import { Duration, Effect, Layer, Ref } from "effect"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"

const StoreLive = PgMembershipStore.layerUsingNotifier().pipe(Layer.provideMerge(Notifier.layer), Layer.provideMerge(PgLive))

const stall = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)

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
    const groupId = randomGroupId("hurried-stalled-g2")
    const armed = yield* Ref.make(false)
    const log: Array<string> = []
    const t0 = performance.now()
    const marks: Array<string> = []
    let fencedSeen = false
    let m0WorkEnded: number | undefined
    let m1NewEpochAt: number | undefined
    const m1 = yield* Membership.make({
      groupId, name: "m1", heartbeat: "200 millis", lease: "10 seconds", fenceMargin: "1200 millis",
      statementTimeout: "500 millis", notifications: false
    })
    const first = yield* m1.awaitAssigned
    const m0 = yield* Membership.make({
      groupId, name: "m0", heartbeat: "1 second", lease: "3 seconds", fenceMargin: "1200 millis",
      statementTimeout: "500 millis", notifications: false
    }).pipe(Effect.provideService(MembershipStore, wrap(store, armed, log, t0, 600, () => { fencedSeen = true })))
    yield* m0.whileAssigned((a) =>
      Effect.never.pipe(Effect.onInterrupt(() =>
        Effect.sleep(Duration.millis(1_100)).pipe(Effect.zipRight(Effect.sync(() => {
          if (m0WorkEnded === undefined && fencedSeen) m0WorkEnded = performance.now()
          marks.push(`m0 work of epoch ${a.epoch} ended at ${(performance.now() - t0).toFixed(0)}`)
        })))
      ))
    )
    yield* m1.whileAssigned((a) =>
      Effect.sync(() => {
        marks.push(`m1 work of epoch ${a.epoch} started at ${(performance.now() - t0).toFixed(0)}`)
        if (fencedSeen && m1NewEpochAt === undefined) m1NewEpochAt = performance.now()
      }).pipe(Effect.zipRight(Effect.never))
    )
    const both = yield* m0.awaitAssigned
    expect(both.epoch).toBeGreaterThan(first.epoch)
    yield* Effect.sleep(Duration.millis(1_500))
    yield* Ref.set(armed, true)
    // Wait until call 2 has stalled (the stall blocks this fiber too).
    yield* Effect.sleep(Duration.seconds(9))
    console.log(log.join("\n") + "\n" + marks.join("\n"))
    expect(m0WorkEnded, "m0's work ended").toBeDefined()
    expect(m1NewEpochAt === undefined || m1NewEpochAt >= m0WorkEnded!, `m1 started a new epoch ${m1NewEpochAt !== undefined ? (m0WorkEnded! - m1NewEpochAt).toFixed(0) : "?"} ms before m0's work ended`).toBe(true)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)
