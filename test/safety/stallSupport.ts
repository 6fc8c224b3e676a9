/**
 * For the tests of a process that stalls around its renewal (pauseInCall, hurriedThenStalled): the
 * stall (the event loop blocked, `Atomics.wait`: no fiber runs, the fence timer included, as under
 * SIGSTOP), and the G2 check with a second member.
 */
import { expect } from "@effect/vitest"
import { Duration, Effect, Layer } from "effect"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import type { MembershipStore } from "../../src/MembershipStore.js"
import { MembershipStore as Store } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive } from "../support/Database.js"

export const StoreLive = PgMembershipStore.layerUsingNotifier().pipe(Layer.provideMerge(Notifier.layer), Layer.provideMerge(PgLive))

/** Blocks this process's event loop for `ms`. */
export const stall = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)

/**
 * Two members of `groupId` in this process: m1 (heartbeat 200 ms, lease 10 s: it keeps its row
 * through the stall) and m0 over `m0Store` (heartbeat 1 s, lease 3 s, fence margin 1.2 s, statement
 * timeout 0.5 s), whose work, once interrupted, takes 1.1 s to stop: within its fence margin. Once
 * both work, 1.5 s later, `arm` (the store's wrapper then stalls as its test says, and `stalled()`
 * turns true), then `afterMs`. Checks that m1 started no epoch, after the stall, before m0's work of
 * the older epoch had ended (G2).
 */
export const nextEpochAfterStoppedWork = (options: {
  readonly groupId: string
  readonly m0Store: MembershipStore["Type"]
  readonly arm: Effect.Effect<void>
  readonly stalled: () => boolean
  readonly afterMs: number
  readonly log?: ReadonlyArray<string>
}) =>
  Effect.gen(function*() {
    const { groupId } = options
    const marks: Array<string> = []
    const t0 = performance.now()
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
    }).pipe(Effect.provideService(Store, options.m0Store))
    yield* m0.whileAssigned((a) =>
      Effect.never.pipe(Effect.onInterrupt(() =>
        // Cleanup within fenceMargin (1.2 s) of the interruption.
        Effect.sleep(Duration.millis(1_100)).pipe(Effect.zipRight(Effect.sync(() => {
          if (m0WorkEnded === undefined && options.stalled()) m0WorkEnded = performance.now()
          marks.push(`m0 work of epoch ${a.epoch} ended at ${(performance.now() - t0).toFixed(0)}`)
        })))
      ))
    )
    yield* m1.whileAssigned((a) =>
      Effect.sync(() => {
        marks.push(`m1 work of epoch ${a.epoch} started at ${(performance.now() - t0).toFixed(0)}`)
        if (options.stalled() && m1NewEpochAt === undefined) m1NewEpochAt = performance.now()
      }).pipe(Effect.zipRight(Effect.never))
    )
    const both = yield* m0.awaitAssigned
    expect(both.epoch).toBeGreaterThan(first.epoch)
    yield* Effect.sleep(Duration.millis(1_500))
    yield* options.arm
    yield* Effect.sleep(Duration.millis(options.afterMs))
    console.log([...(options.log ?? []), ...marks].join("\n"))
    expect(m0WorkEnded, "m0's work ended").toBeDefined()
    expect(
      m1NewEpochAt === undefined || m1NewEpochAt >= m0WorkEnded!,
      `m1 started a new epoch ${m1NewEpochAt !== undefined ? (m0WorkEnded! - m1NewEpochAt).toFixed(0) : "?"} ms before m0's work ended`
    ).toBe(true)
  })
