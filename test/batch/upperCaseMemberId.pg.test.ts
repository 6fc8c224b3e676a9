/**
 * A member id in upper case (a valid uuid, as an app's `MemberIdentity` may give) renewed fine alone,
 * but in a batch of two or more its answer was looked up by the id as given while the batch statement
 * returns `member_id::text`, lower case: its renewal was reported as "no row" although the statement
 * renewed it, and the member went `Gone`, again and again (an adversarial review; liveness only).
 */
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Layer, Option } from "effect"
import * as Membership from "../../src/Membership.js"
import * as MembershipConfig from "../../src/MembershipConfig.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import type { MemberInfo } from "../../src/MembershipStore.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { waitFor } from "../faults/support.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { makeRecorder } from "../support/Recorder.js"

it.live("a member id in upper case gets its view in a batch as alone", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("upper")
    const store = yield* PgMembershipStore.make()
    const upper: MemberInfo = { memberId: crypto.randomUUID().toUpperCase(), name: "upper", host: "t", pid: 1 }
    const lower: MemberInfo = { memberId: crypto.randomUUID(), name: "lower", host: "t", pid: 1 }
    yield* store.join(groupId, upper, 10_000)
    const joined = yield* store.join(groupId, lower, 10_000)
    expect(Option.isSome(yield* store.heartbeat(groupId, upper.memberId, joined.epoch, 10_000))).toBe(true)
    // Together with another member's renewal (held 50 ms: one batch).
    const [u, l] = yield* Effect.all([
      store.heartbeat(groupId, upper.memberId, joined.epoch, 10_000, { holdMs: 50 }),
      store.heartbeat(groupId, lower.memberId, joined.epoch, 10_000, { holdMs: 50 })
    ], { concurrency: "unbounded" })
    expect(Option.isSome(l)).toBe(true)
    expect(Option.isSome(u)).toBe(true)
  }).pipe(Effect.provide(Notifier.layer.pipe(Layer.provideMerge(PgLive)))), 30_000)

it.live("members whose ids are in upper case, sharing a store, settle into one epoch", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("upper-members")
    const store = yield* PgMembershipStore.make()
    const rec = yield* makeRecorder
    const identity = { host: "t", pid: 1, newMemberId: Effect.sync(() => crypto.randomUUID().toUpperCase()) }
    for (let i = 0; i < 3; i++) {
      const m = yield* Membership.make({
        groupId,
        name: `u${i}`,
        heartbeat: "200 millis",
        lease: "2 seconds",
        fenceMargin: "500 millis",
        statementTimeout: "1 second"
      }).pipe(Effect.provideService(MembershipStore, store), Effect.provideService(MembershipConfig.MemberIdentity, identity))
      yield* rec.track(m, `u${i}`)
    }
    // Before the fix, members went Gone at every batched renewal: never three at once for long.
    yield* waitFor(() => rec.working().length === 3 && new Set(rec.working().map((w) => w.epoch)).size === 1, Duration.seconds(15), "3 working")
    const settled = rec.marks.length
    // An observation window of ten heartbeats: no one stopped.
    yield* Effect.sleep(Duration.seconds(2))
    expect(rec.marks.length).toBe(settled)
    expect(rec.violations).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(Notifier.layer.pipe(Layer.provideMerge(PgLive)))), 30_000)
