/**
 * A review of 2c51c89 (migration 0012): a join that rides along another member's change (internal/pg/riders.ts) whose
 * member id is live under another store. `deleteRiderRows` now leaves that foreign row alone, but
 * nothing checks the rider's id for `foreign` (only the leader's, in `deleteExpiredAndOwnRow`), so
 * `insertRiders` hits the primary key (23505) and the whole change rolls back: the LEADER, a member
 * with an id of its own, fails its join. (Its rider alone would have been refused cleanly.)
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Either, Fiber, Layer } from "effect"
import type { MemberInfo } from "../../src/MembershipStore.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { waitFor } from "../support/Wait.js"

const lease = 60_000
const info = (memberId: string, name: string, pid: number): MemberInfo => ({ memberId, name, host: `host-${name}`, pid })

it.live("a legitimate member's join is not failed by a rider whose id another process holds", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("rider-foreign")
    const dup = crypto.randomUUID()
    const legit = crypto.randomUUID()
    // Process A: a live member with id `dup`.
    const a = yield* PgMembershipStore.make()
    yield* a.join(groupId, info(dup, "a", 1), lease)
    // Process B: its first join's change pauses at its first statement until the second join waits
    // for its turn (a rider).
    const gate = yield* Deferred.make<void>()
    let paused = false
    const b = yield* PgMembershipStore.make({
      onStatement: (op, step) =>
        op === "join" && step === "lock" && !paused ? Effect.zipRight(Effect.sync(() => { paused = true }), Deferred.await(gate)) : Effect.void
    })
    const leader = yield* Effect.fork(Effect.either(b.join(groupId, info(legit, "legit", 2), lease)))
    yield* waitFor(() => paused, Duration.seconds(5), "the leader's change paused")
    const rider = yield* Effect.fork(Effect.either(b.join(groupId, info(dup, "dup", 2), lease)))
    // No event says the second join waits for its turn (a rider): give it the time to get there.
    yield* Effect.sleep("200 millis")
    yield* Deferred.succeed(gate, undefined)
    const l = yield* Fiber.join(leader)
    const r = yield* Fiber.join(rider)
    // The duplicate is refused, naming the member that holds its id; the member with its own id joined.
    expect(Either.isLeft(r) && r.left.message).toMatch(/is in use by a live member of group/)
    expect(Either.isLeft(l) ? l.left.message : "joined").toBe("joined")
  }).pipe(Effect.scoped, Effect.provide(Notifier.layer.pipe(Layer.provideMerge(PgLive)))), 30_000)
