/**
 * Liveness: a `whileAssigned` registration made at the instant the lease deadline passes, before a
 * renewal (sent in time, answered at that instant) moves the deadline and before the fence timer
 * looks. `register` finds `live` false; before, it started nothing and said nothing, the renewal
 * moved the deadline, no fence came, and the member stayed `Assigned` with the registered work not
 * running for as long as the epoch lasted (an adversarial review; failed before). A start refused
 * while work runs is now looked at again until the work is interrupted or it may start
 * (workRunner.ts `refused`). In memory, TestClock (sleepers of one instant wake last-registered
 * first), default timings.
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Exit, Option, Scope } from "effect"
import * as InMemoryMembershipStore from "../../src/InMemoryMembershipStore.js"
import * as Membership from "../../src/Membership.js"
import { StoreError } from "../../src/MembershipError.js"
import type { MembershipStoreService } from "../../src/MembershipStore.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import { at, now, until } from "../safety/support.js"

describe("a registration at the lease deadline's instant", () => {
  const scenario = (offsetMs: number) =>
    Effect.gen(function*() {
      const { store: base } = yield* InMemoryMembershipStore.make
      let aId = ""
      let mode: "ok" | "fail" | "delay" = "ok"
      let lastGood = 0
      let deadline = 0
      let delayedSentAt: number | undefined = undefined
      const store: MembershipStoreService = {
        ...base,
        heartbeat: (...args: Parameters<MembershipStoreService["heartbeat"]>) =>
          Effect.gen(function*() {
            const sent = yield* Clock.currentTimeMillis
            if (args[1] === aId && mode === "fail") {
              if (sent >= deadline - 1_000) {
                // Sent in time; its reply comes back exactly at the deadline.
                mode = "delay"
                delayedSentAt = sent
                yield* Effect.sleep(deadline - sent)
                return yield* base.heartbeat(...args)
              }
              return yield* Effect.fail(new StoreError({ operation: "heartbeat", reason: "slow (test)" }))
            }
            const view = yield* base.heartbeat(...args)
            if (args[1] === aId && Option.isSome(view) && mode === "ok") lastGood = sent
            return view
          })
      }
      const scope = yield* Scope.make()
      const a = yield* Membership.make({ groupId: "register-at-deadline", name: "a" }).pipe(
        Effect.provideService(MembershipStore, store),
        Scope.extend(scope)
      )
      aId = a.memberId
      yield* until(() => lastGood > 0, 5_000, 10)
      yield* at((yield* now) + 3_000)
      mode = "fail"
      deadline = lastGood + 8_000
      yield* until(() => delayedSentAt !== undefined, 10_000, 10)
      let started = 0
      // The app registers its work at the deadline's instant (after the renewal went out).
      yield* Effect.fork(
        Effect.sleep(deadline + offsetMs - (yield* now)).pipe(
          Effect.zipRight(a.whileAssigned(() => Effect.sync(() => started++).pipe(Effect.zipRight(Effect.never)))),
          Scope.extend(scope)
        )
      )
      mode = "delay"
      yield* at(deadline + 1)
      // From here every renewal succeeds.
      mode = "ok"
      yield* at(deadline + 10_000)
      const state = yield* a.state
      yield* Scope.close(scope, Exit.void).pipe(Effect.fork)
      return { state: state._tag, started }
    })

  it.scoped("control: registered 1 ms before the deadline, the work starts", () =>
    Effect.map(scenario(-1), (r) => expect(r).toEqual({ state: "Assigned", started: 1 })))

  it.scoped("work registered at the deadline's instant starts once a renewal has moved the deadline (the member is Assigned)", () =>
    Effect.map(scenario(0), (r) => expect(r).toEqual({ state: "Assigned", started: 1 })))
})
