/**
 * A held renewal (a plain periodic one, floating over the last `renewalWindow` of its heartbeat to
 * share a statement) goes at once when a notification wakes its member while it is held: a change
 * is learned within a round trip of its notification, not at the end of the window
 * (leaseKeeper.ts). That a wake or a poke that comes once the renewal is on its way stays pending for
 * the next renewal is test/signal.test.ts's.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Layer } from "effect"
import { channelFor } from "../../src/internal/pg/constants.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { waitFor } from "../support/Wait.js"

const StoreLive = PgMembershipStore.layerUsingNotifier().pipe(Layer.provideMerge(Notifier.layer), Layer.provideMerge(PgLive))

// Renewals held up to 3.5 s of a 4 s heartbeat (the slack, 20 - 4 - 1 - 1 s, allows it).
const timing = {
  heartbeat: "4 seconds",
  lease: "20 seconds",
  fenceMargin: "1 second",
  statementTimeout: "1 second",
  renewalWindow: "3500 millis"
} as const

interface Call {
  readonly member: string
  readonly holdMs: number
  readonly startedAt: number
  endedAt: number | undefined
}

it.live("a held renewal goes at once when a notification wakes its member, not at the end of its window", () =>
  Effect.gen(function*() {
    const store = yield* MembershipStore
    const sql = yield* SqlClient.SqlClient
    const calls: Array<Call> = []
    const recording = {
      ...store,
      heartbeat: ((groupId, memberId, ack, leaseMs, options) =>
        Effect.suspend(() => {
          const call: Call = { member: memberId, holdMs: options?.holdMs ?? 0, startedAt: Date.now(), endedAt: undefined }
          calls.push(call)
          return store.heartbeat(groupId, memberId, ack, leaseMs, options).pipe(
            Effect.ensuring(Effect.sync(() => {
              call.endedAt = Date.now()
            }))
          )
        })) satisfies typeof store.heartbeat
    }
    const groupId = randomGroupId("hurry")
    const join = Membership.make({ groupId, ...timing }).pipe(Effect.provideService(MembershipStore, recording))
    const a = yield* join
    const b = yield* join
    yield* a.awaitAssigned
    yield* b.awaitAssigned

    // Three rounds: a held renewal of a's, 300 ms into its hold, and a notification nobody reads as
    // news (a forged one: it only wakes). The renewal ends within a second of it (its window would
    // have held it 3.2 s more), and the member stays working.
    for (let round = 0; round < 3; round++) {
      const from = calls.length
      const held = () =>
        calls.slice(from).find((c) =>
          c.member === a.memberId && c.holdMs > 0 && c.endedAt === undefined && Date.now() - c.startedAt >= 300
        )
      yield* waitFor(() => held() !== undefined, Duration.seconds(20), "a held renewal of a's")
      const call = held()!
      const notifiedAt = Date.now()
      yield* sql`SELECT pg_notify(${channelFor(groupId)}, 'wake up')`
      yield* waitFor(() => call.endedAt !== undefined, Duration.seconds(10), "the held renewal ends")
      expect(call.endedAt! - notifiedAt).toBeLessThan(1_000)
      expect(call.endedAt! - call.startedAt).toBeLessThan(2_500)
    }
    expect((yield* a.state)._tag).toBe("Assigned")
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 90_000)
