/**
 * A late duplicate release must not hand away a slot its member works again (per-slot G2; an
 * adversarial review). `Holdings.onReleased` cleared a slot's in-flight release when one answer said
 * "released nothing", although a second send of the same release (re-sent by `onView` for a view that
 * still showed the slot held and not owned) was unanswered: one entry per slot, and a second send was
 * not counted. Once cleared, a view showing the slot held and owned at that generation started it
 * without a retake, and the second release, reaching the server later, handed it to whoever owned it
 * then. Now every send is counted (`Inflight.unanswered`) and the slot is retaken first.
 *
 * Interleaving (S = 2, member a holds slots 0 and 1; real PostgreSQL, real Membership members; a's
 * statements are delayed in flight, as on a slow network or behind a busy pool):
 *   1. c joins (change X1): slot 1 owner c, holder a. a's view: stop slot 1, release #1 (1, g): held
 *      in flight.
 *   2. a's next renewal (snapshot after X1) still shows slot 1 held, not owned: release #2 (1, g) sent;
 *      it is held in flight longer (its client gives up after the statement timeout, 1 s: outcome
 *      unknown, but the member by then no longer tracks the slot, so the answer is dropped).
 *   3. c leaves (change X2): slot 1 owner a again. #1 reaches the server: owner is a, no-op, answered
 *      "released nothing" -> the in-flight entry is cleared although #2 is unanswered.
 *   4. a's next renewal: slot 1 held and owned at g, nothing in flight -> a starts slot 1 at g (no retake).
 *   5. a's renewals stall (slow database; a keeps working until its deadline); d joins (change X3):
 *      slot 1 owner d, holder a (a release is due).
 *   6. #2 reaches the server: holder a, generation g, owner d, a's lease live -> holder d, g + 1.
 *      d starts slot 1 while a still works it at g.
 * How long each statement was in flight in the runs: #1 about 0.1-0.4 s (answered within the client's
 * 1 s bound), #2 about 1.1-1.4 s (its client gave up at 1 s; the statement reached the row later, as
 * one stalled before execution can: a parse/bind waiting for a table lock, a pooler queue, the
 * network; the store's own comments say nothing bounds that stall). The answer of #2 ("timed out")
 * arrives when the member no longer tracks slot 1 in flight and is dropped (`sent === undefined`).
 * Before the fix: slot 1 run by a and d at once for 2104-2196 ms (5 of 5 runs; a stops only at its
 * deadline).
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Scope } from "effect"
import { StoreError } from "../../src/MembershipError.js"
import type { MembershipStoreService } from "../../src/MembershipStore.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import { waitFor } from "../faults/support.js"
import { randomGroupId } from "../support/Database.js"
import { makeSlotRecorder } from "../support/SlotRecorder.js"
import { overlaps, StoreLive, trackedMember } from "./fiberGroup.js"

const config = { slots: 2, heartbeat: "200 millis", lease: "3 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const

it.live("per-slot G2: a release answered \"released nothing\" does not clear a later unanswered send of it: the slot is retaken, not handed away while it runs", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("late-release")
    const store = yield* MembershipStore
    const rec = yield* makeSlotRecorder(store, groupId)
    const g1 = yield* Deferred.make<void>()
    const g2 = yield* Deferred.make<void>()
    const log: Array<string> = []
    const t0 = Date.now()
    const say = (line: string) => log.push(`${Date.now() - t0} ms: ${line}`)
    let releases = 0
    let firstAnswered = false
    let hbHold: Deferred.Deferred<void> | undefined
    let hbFrozen = false
    const a: MembershipStoreService = {
      ...store,
      heartbeat: (...args) =>
        Effect.suspend(() =>
          hbFrozen ? Effect.never : hbHold !== undefined ? Effect.zipRight(Deferred.await(hbHold), store.heartbeat(...args)) : store.heartbeat(...args)
        ),
      releaseSlots: (groupId, memberId, stopped) =>
        Effect.suspend(() => {
          if (!stopped.some((s) => s.slot === 1)) return store.releaseSlots(groupId, memberId, stopped)
          const n = ++releases
          say(`release #${n} sent ${JSON.stringify(stopped)}`)
          if (n === 1) {
            return Effect.zipRight(Deferred.await(g1), store.releaseSlots(groupId, memberId, stopped)).pipe(
              Effect.tap((r) => Effect.sync(() => { firstAnswered = true; say(`release #1 answered ${JSON.stringify(r)}`) }))
            )
          }
          // Later ones: still in flight when the client gives up (statement timeout); they reach the
          // server once g2 opens.
          return Effect.zipRight(
            Effect.forkDaemon(Effect.zipRight(Deferred.await(g2), store.releaseSlots(groupId, memberId, stopped)).pipe(
              Effect.tap((r) => Effect.sync(() => say(`release #${n} applied on the server: ${JSON.stringify(r)}`))),
              Effect.ignore
            )),
            Effect.zipRight(Effect.sleep("1 second"), Effect.fail(new StoreError({ operation: "releaseSlots", reason: "timed out after 1000 ms" })))
          )
        })
    }
    const member = trackedMember(groupId, rec, config)
    const am = yield* member("a", a, { notifications: false })
    yield* waitFor(() => rec.covered() === 2, Duration.seconds(20), "a works both slots")
    // 1. c joins: slot 1 moves to c; a stops it and sends release #1 (held).
    const c = yield* member("c", store)
    yield* waitFor(() => releases >= 2, Duration.seconds(10), "a second release of slot 1 (2.)")
    // 3. c leaves (slot 1 back to a); a's renewals wait meanwhile; then #1 reaches the server.
    hbHold = yield* Deferred.make<void>()
    yield* Scope.close(c.scope, Exit.void)
    yield* Deferred.succeed(g1, undefined)
    yield* waitFor(() => firstAnswered, Duration.seconds(5), "release #1 answered")
    yield* Deferred.succeed(hbHold, undefined)
    hbHold = undefined
    // 4. a starts slot 1 again.
    yield* waitFor(() => rec.running().get(am.m.memberId)?.includes(1) === true, Duration.seconds(5), "a restarts slot 1")
    // 5. a's renewals stall; d joins: slot 1 is d's to take after a's release.
    hbFrozen = true
    say("a restarted slot 1; its renewals stall")
    const d = yield* member("d", store)
    yield* Effect.sleep("300 millis")
    // 6. the late release #2 reaches the server.
    say("d joined; the late release goes through")
    yield* Deferred.succeed(g2, undefined)
    yield* waitFor(() => rec.running().get(d.m.memberId)?.includes(1) === true || !rec.running().has(am.m.memberId),
      Duration.seconds(10), "d starts slot 1 or a fences").pipe(Effect.exit)
    yield* waitFor(() => !rec.running().has(am.m.memberId), Duration.seconds(10), "a fenced").pipe(Effect.exit)
    const found = overlaps(rec.events, Date.now())
    console.log(log.join("\n"), "\nviolations", rec.violations, "\noverlaps ms", found)
    expect(rec.violations).toEqual([])
    expect(found).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 90_000)
