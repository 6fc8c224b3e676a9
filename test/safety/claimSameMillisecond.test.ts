/**
 * A genuine claim is never found false by a renewal sent before it. The claim (a notification that
 * a newer epoch exists: the working member stops on its word, Transition's `Notified`) is settled by
 * the first renewal sent after it: a newer epoch proves it, none makes it false (a warning that
 * something else may be sending NOTIFY, and claims ignored until the epoch moves). "After" was judged
 * by the member's clock in milliseconds, so a renewal sent in the same millisecond as the claim, but
 * before the change it announces committed, counted as sent after it: it showed the old epoch and
 * settled a genuine claim false. Renewals are numbered in the order the lease keeper sends them; a
 * claim now records the last number issued, and only a later renewal settles it.
 *
 * In-memory store and TestClock, default config (heartbeat 1 s, lease 10 s); a's renewals reach the
 * store at once (their view is taken then) and reply 5 ms later.
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Duration, Effect, Option, Stream } from "effect"
import * as InMemoryMembershipStore from "../../src/InMemoryMembershipStore.js"
import * as Membership from "../../src/Membership.js"
import type { GroupView, MembershipStoreService } from "../../src/MembershipStore.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import { exactCover, makeRecorder } from "../support/Recorder.js"
import { at, collectLogs, until } from "./support.js"

const groupId = "safety-claim-same-ms"
const logs = collectLogs()

describe("a claim and a renewal in the same millisecond", () => {
  it.scoped("a renewal sent in the claim's millisecond, before the change it announces, does not settle it false", () =>
    Effect.gen(function*() {
      const { store } = yield* InMemoryMembershipStore.make
      const renewals: Array<{ at: number; done?: number; view?: GroupView | undefined }> = []
      const slow: MembershipStoreService = {
        ...store,
        // The in-memory store says it listens, as the PostgreSQL store does once LISTEN is up.
        wakeups: (g) => Effect.map(store.wakeups(g), Stream.map((w) => ({ ...w, listening: true }))),
        heartbeat: (...args: Parameters<MembershipStoreService["heartbeat"]>) =>
          Effect.gen(function*() {
            const call: (typeof renewals)[number] = { at: yield* Clock.currentTimeMillis }
            renewals.push(call)
            const view = yield* store.heartbeat(...args)
            yield* Effect.sleep(Duration.millis(5))
            call.done = yield* Clock.currentTimeMillis
            call.view = Option.getOrUndefined(view)
            return view
          })
      }
      const rec = yield* makeRecorder
      const a = yield* Membership.make({ groupId, name: "a" }).pipe(Effect.provideService(MembershipStore, slow))
      yield* rec.track(a, "a")
      yield* until(() => exactCover(rec.working(), 1))
      const e = rec.working()[0]!.epoch
      // A renewal of a reaches the store (epoch e) at t and replies at t + 5 ms; in the same
      // millisecond, after that view was taken, b joins: its notification claims epoch e + 1, and
      // a stops on its word.
      const count = renewals.length
      const t = yield* until(() => renewals.length > count)
      expect(renewals.at(-1)).toMatchObject({ at: t })
      expect(renewals.at(-1)!.done).toBeUndefined()
      yield* store.join(groupId, { memberId: crypto.randomUUID(), host: "test", pid: 2, name: "b" }, 10_000)
      yield* at(t + 1)
      expect(rec.marks.filter((m) => m.member === "a" && m.kind === "end").map((m) => m.at)).toEqual([t])
      // The in-flight renewal replies with epoch e; the renewals after it find e + 1 and a moves on.
      yield* until(() => rec.working().some((w) => w.epoch > e), 5_000, 5)
      expect(renewals.find((r) => r.at === t)!.view).toMatchObject({ epoch: e })
      expect(renewals.some((r) => r.at >= t && (r.view?.epoch ?? 0) > e)).toBe(true)
      expect(rec.violations).toEqual([])
      // No warning of a false claim: the claim was true.
      expect(logs.lines.filter((l) => /claimed epoch/.test(l.message))).toEqual([])
    }).pipe(Effect.provide(logs.layer)))
})
