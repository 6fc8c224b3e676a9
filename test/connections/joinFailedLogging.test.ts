/**
 * `sayJoinFailed` (src/internal/membership/driver.ts) says a repeated join failure with the same
 * reason once, then once a minute. A failure said in between by another channel (the database
 * refusing connections, `refusedOnce`; an instance id held by a live member, `InstanceBusy`) resets
 * it: when the first failure comes back, it is said again. Before, only a successful join reset it,
 * and the log's last word stayed the other failure, which was over (a review; failed before).
 */
import { expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as InMemoryMembershipStore from "../../src/InMemoryMembershipStore.js"
import * as Membership from "../../src/Membership.js"
import * as MembershipConfig from "../../src/MembershipConfig.js"
import { StoreError } from "../../src/MembershipError.js"
import type { MembershipStoreService } from "../../src/MembershipStore.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import { waitForEffect } from "../support/Wait.js"
import { collectLogs } from "../safety/support.js"

const fast = { heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const

it.live("a join refused for a row elsewhere, then the database refusing connections, then the row elsewhere again: the refusal by name is said again", () => {
  const logs = collectLogs()
  return Effect.gen(function*() {
    const { store } = yield* InMemoryMembershipStore.make
    const knobs = { refuse: false }
    const wrapped: MembershipStoreService = {
      ...store,
      join: (...args: Parameters<MembershipStoreService["join"]>) =>
        knobs.refuse
          ? Effect.fail(new StoreError({
            operation: "join",
            reason: "connect ECONNREFUSED 127.0.0.1:5432",
            cause: { code: "ECONNREFUSED", message: "connect ECONNREFUSED 127.0.0.1:5432" }
          }))
          : store.join(...args)
    }
    const id = crypto.randomUUID()
    // The id's row in another group, live for a minute (its earlier membership's leave gave up).
    yield* store.join("g1", { memberId: id, host: "h", pid: 1, name: "old" }, 60_000)
    const identity = { host: "h", pid: 2, newMemberId: Effect.succeed(id) }
    yield* Membership.make({ groupId: "g2", ...fast }).pipe(
      Effect.provideService(MembershipConfig.MemberIdentity, identity),
      Effect.provide(Layer.succeed(MembershipStore, wrapped))
    )
    const elsewhere = () => logs.lines.filter((l) => l.message.includes("still has a row in group")).length
    const refused = () => logs.lines.findIndex((l) => l.message.includes("refuses connections"))
    yield* waitForEffect(Effect.sync(() => elsewhere() === 1), "5 seconds", "said once")
    // The database restarts: connections refused for a while (said once).
    knobs.refuse = true
    yield* waitForEffect(Effect.sync(() => refused() >= 0), "5 seconds", "refusal said")
    yield* Effect.sleep("600 millis")
    // Back: every join gets through to the database again and is refused by name, at every attempt.
    knobs.refuse = false
    yield* Effect.sleep("3 seconds")
    const after = logs.lines.slice(refused() + 1)
    // The failure changed (from no connection to a row elsewhere): that must be said, and the
    // refusal's "said once until a call gets through" closed.
    expect(after.map((l) => l.message).filter((m) => m.includes("still has a row in group") || m.includes("connected"))).not.toEqual([])
  }).pipe(Effect.provide(logs.layer), Effect.scoped)
}, 30_000)
