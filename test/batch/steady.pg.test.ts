/**
 * Issue 15 end to end: members in one process over one PostgreSQL store, working in a settled
 * group, renew in about one statement per heartbeat in all (their periodic renewals float over the
 * last `renewalWindow` of the heartbeat and go together), not one per member.
 */
import * as Statement from "@effect/sql/Statement"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Layer, Scope } from "effect"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { exactCover, makeRecorder } from "../support/Recorder.js"
import { waitFor } from "../support/Wait.js"

const StoreLive = PgMembershipStore.layerUsingNotifier().pipe(Layer.provideMerge(Notifier.layer), Layer.provideMerge(PgLive))

const N = 48
const timing = { heartbeat: "500 millis", lease: "5 seconds", fenceMargin: "1 second", statementTimeout: "1 second" } as const

it.live(`${N} members of one process in a settled group make about one renewal statement per heartbeat in all`, () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("steady")
    const rec = yield* makeRecorder
    const counts = { batch: 0, single: 0 }
    // Counts the renewal statements of every fiber the members fork (the store's batches included).
    const counted = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      Statement.withTransformer(effect, (statement) => {
        const text = statement.compile()[0]
        if (text.includes("json_to_recordset")) counts.batch++
        else if (text.includes("prev AS (")) counts.single++
        return Effect.succeed(statement)
      })
    const scopes: Array<Scope.CloseableScope> = []
    yield* Effect.addFinalizer(() => Effect.forEach(scopes, (s) => Scope.close(s, Exit.void), { discard: true }))
    for (let i = 0; i < N; i += 16) {
      yield* Effect.forEach(Array.from({ length: Math.min(16, N - i) }), () =>
        Effect.gen(function*() {
          const scope = yield* Scope.make()
          scopes.push(scope)
          const m = yield* counted(Membership.make({ groupId, ...timing })).pipe(Scope.extend(scope))
          yield* rec.track(m).pipe(Scope.extend(scope))
        }), { concurrency: "unbounded" })
      yield* waitFor(() => exactCover(rec.working(), i + Math.min(16, N - i)), Duration.seconds(30))
    }
    // Settled: a few heartbeats for the phases to gather, then a window of 10 heartbeats.
    yield* Effect.sleep(Duration.seconds(3))
    const marks0 = rec.marks.length
    const before = { ...counts }
    yield* Effect.sleep(Duration.seconds(5))
    const batches = counts.batch - before.batch
    const singles = counts.single - before.single
    console.log(`steady: ${N} members, heartbeat 500 ms, 5 s: ${batches} batched and ${singles} single renewal statements (${((batches + singles) / 5).toFixed(1)} per second; without batching about ${N * 2} per second)`)
    // Nobody renegotiated or fenced meanwhile.
    expect(rec.marks.length).toBe(marks0)
    expect(rec.violations).toEqual([])
    // Without batching: N renewals per heartbeat, 480 in the window. Allow slack for a loaded machine.
    expect(singles).toBe(0)
    expect(batches).toBeLessThanOrEqual(40)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 120_000)
