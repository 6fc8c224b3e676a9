/**
 * Work already stuck (past `stopTimeout`) when the member's scope closes (a review of the final
 * leave's renewals): the closing renewals said the work was not stuck, which cleared the row's
 * `stopping_since` (`status`: "work stopping for ..."), and no error was logged, for a whole stop
 * timeout; then the final leave's own stop timed out and showed the work as newly stuck. Now a
 * stopping heartbeat of work stuck before the close says so and renews as stuck (`StuckHeartbeat`'s).
 *
 * Interleaving (lease 2 s, heartbeat 200 ms, stopTimeout 1 s): A and B work; C joins; A's work ignores
 * its interruption (8 s); A's stop times out, its row gets `stopping_since`; A's scope closes: the
 * row keeps that `stopping_since`, and errors go on every heartbeat.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Layer, Logger, Scope } from "effect"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { waitForEffect } from "../support/Wait.js"

const StoreLive = PgMembershipStore.layerUsingNotifier().pipe(Layer.provideMerge(Notifier.layer), Layer.provideMerge(PgLive))
/** Error logs saying the work has not stopped, with the time they were logged. */
const stuckErrors: Array<number> = []
const Capture = Logger.add(Logger.make(({ logLevel, message }) => {
  const text = Array.isArray(message) ? message.join(" ") : String(message)
  if (logLevel._tag === "Error" && /not stopped/.test(text)) stuckErrors.push(Date.now())
}))

// A stop timeout of 1 s: the close is looked at for 0.9 s, before the final leave's own stop times out.
const fast = {
  heartbeat: "200 millis",
  lease: "2 seconds",
  fenceMargin: "500 millis",
  statementTimeout: "1 second",
  stopTimeout: "1 second"
} as const

it.live("work stuck at scope close keeps members.stopping_since (status: 'work stopping for ...') and its errors", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const groupId = randomGroupId("stuck-at-close")
    const join = (stuckMs: number) =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const m = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(scope))
        yield* m.whileAssigned(() =>
          stuckMs > 0 ? Effect.zipRight(Effect.uninterruptible(Effect.sleep(Duration.millis(stuckMs))), Effect.never) : Effect.never
        ).pipe(Scope.extend(scope))
        return { m, close: Scope.close(scope, Exit.void) }
      })
    const stoppingSince = (memberId: string) =>
      Effect.map(
        sql<{ s: string | null }>`SELECT (extract(epoch FROM stopping_since) * 1000)::bigint::text AS s FROM modulo_group.members WHERE member_id = ${memberId}::uuid`,
        // "gone": no row (reaped); null: the row says the work is not stuck.
        (rows) => rows.length === 0 ? "gone" : rows[0]!.s
      )
    const a = yield* join(8_000)
    yield* a.m.awaitAssigned
    const b = yield* join(0)
    yield* b.m.awaitAssigned
    // A and B both work now; C's join makes A stop, which it will not do.
    const c = yield* join(0)
    let before: string | null = null
    yield* waitForEffect(
      Effect.map(stoppingSince(a.m.memberId), (s) => {
        before = s
        return s !== null && s !== "gone"
      }),
      Duration.seconds(15),
      "A's row says its work is stuck"
    )
    // A's scope closes while its work is stuck.
    const closedAt = Date.now()
    yield* Effect.forkDaemon(a.close)
    const samples: Array<string | null> = []
    for (let i = 0; i < 9; i++) {
      yield* Effect.sleep(Duration.millis(100))
      samples.push(yield* stoppingSince(a.m.memberId))
    }
    yield* b.close
    yield* c.close
    // Errors in the first 0.9 s of the close (before its own stop times out): "an error at every heartbeat".
    const errorsEarly = stuckErrors.filter((t) => t > closedAt && t < closedAt + 900).length
    expect({ keptStoppingSince: samples.every((s) => s === before), errorsEarly: errorsEarly > 0 }).toEqual({
      keptStoppingSince: true,
      errorsEarly: true
    })
  }).pipe(Effect.provide(StoreLive), Effect.provide(Capture)), 90_000)
