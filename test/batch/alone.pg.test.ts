/**
 * A member alone in its store does not float its renewals (issue 15): holding a renewal to share a
 * statement costs its process a race and a timer per heartbeat, and a lone member has nobody to
 * share with. Once a second member renews through the same store, both float again; when it leaves,
 * the first stops.
 */
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Layer, Scope, TestClock } from "effect"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { waitFor } from "../support/Wait.js"

const StoreLive = PgMembershipStore.layerUsingNotifier().pipe(Layer.provideMerge(Notifier.layer), Layer.provideMerge(PgLive))

// Window: min(heartbeat / 2, slack / 2) = 100 ms.
const timing = { heartbeat: "200 millis", lease: "4 seconds", fenceMargin: "1 second", statementTimeout: "1 second" } as const

it.live("a member alone in its store renews without holding; with a second member renewing through it, both hold; after its leave, not", () =>
  Effect.gen(function*() {
    const store = yield* MembershipStore
    // Every renewal's hold, per member, as the lease keeper asks for it.
    const holds = new Map<string, Array<number>>()
    const recording = {
      ...store,
      heartbeat: ((groupId, memberId, ack, leaseMs, options) => {
        holds.set(memberId, [...(holds.get(memberId) ?? []), options?.holdMs ?? 0])
        return store.heartbeat(groupId, memberId, ack, leaseMs, options)
      }) satisfies typeof store.heartbeat
    }
    const join = (groupId: string, scope: Scope.Scope) =>
      Membership.make({ groupId, ...timing }).pipe(
        Effect.provideService(MembershipStore, recording),
        Scope.extend(scope)
      )
    const heldOf = (id: string, from: number) => (holds.get(id) ?? []).slice(from).filter((h) => h > 0).length
    const countOf = (id: string) => (holds.get(id) ?? []).length

    const scopeA = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scopeA, Exit.void))
    const a = yield* join(randomGroupId("alone"), scopeA)
    yield* a.awaitAssigned
    // Alone: ten heartbeats, none held.
    const a0 = countOf(a.memberId)
    yield* waitFor(() => countOf(a.memberId) >= a0 + 10, Duration.seconds(20), "10 renewals of a")
    expect(heldOf(a.memberId, a0)).toBe(0)
    expect(yield* store.sharesHeartbeatsNow!(a.memberId)).toBe(false)

    // A member of another group in the same store: a's periodic renewals float again.
    const scopeB = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scopeB, Exit.void))
    const b = yield* join(randomGroupId("alone"), scopeB)
    yield* waitFor(() => countOf(b.memberId) > 0, Duration.seconds(20), "b renews")
    expect(yield* store.sharesHeartbeatsNow!(a.memberId)).toBe(true)
    const a1 = countOf(a.memberId)
    yield* waitFor(() => heldOf(a.memberId, a1) >= 3 && heldOf(b.memberId, 0) >= 3, Duration.seconds(20), "a and b hold renewals")
    expect(Math.max(...(holds.get(a.memberId) ?? []))).toBe(100)

    // b leaves: a is alone again, and stops holding. The renewal a is waiting to ask for now was
    // decided while b renewed (it may be held): counted from the one after it.
    yield* Scope.close(scopeB, Exit.void)
    expect(yield* store.sharesHeartbeatsNow!(a.memberId)).toBe(false)
    const a2 = countOf(a.memberId) + 1
    yield* waitFor(() => countOf(a.memberId) >= a2 + 5, Duration.seconds(20), "5 more renewals of a")
    expect(heldOf(a.memberId, a2)).toBe(0)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)

it.effect("a member that stops renewing without leaving counts as sharing until its lease would have run out", () =>
  Effect.gen(function*() {
    const store = yield* MembershipStore
    const groupId = randomGroupId("alone")
    const a = { memberId: crypto.randomUUID(), name: "a", host: "h", pid: 1 }
    const b = { memberId: crypto.randomUUID(), name: "b", host: "h", pid: 2 }
    yield* store.join(groupId, a, 60_000)
    yield* store.join(groupId, b, 60_000)
    // Neither has renewed through this store yet: nobody to share with.
    expect(yield* store.sharesHeartbeatsNow!(a.memberId)).toBe(false)
    yield* store.heartbeat(groupId, b.memberId, 0, 400, {})
    expect(yield* store.sharesHeartbeatsNow!(a.memberId)).toBe(true)
    expect(yield* store.sharesHeartbeatsNow!(b.memberId)).toBe(false)
    // b's lease (400 ms, as it asked) runs out: a is alone again.
    yield* TestClock.adjust(Duration.millis(399))
    expect(yield* store.sharesHeartbeatsNow!(a.memberId)).toBe(true)
    yield* TestClock.adjust(Duration.millis(1))
    expect(yield* store.sharesHeartbeatsNow!(a.memberId)).toBe(false)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)
