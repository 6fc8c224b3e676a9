/**
 * What a member waits out for the others is the longest lease of the group's live rows
 * (`GroupView.longestLeaseMs`, test/safety/mixedLeases.test.ts). A review of that: read from a row's
 * times (`lease_expires_at - heartbeat_at`), a dead member's lease set far ahead by hand (a state
 * test/badinput/tampered.pg.test.ts repairs) counted as a member's lease of an hour or a century (at
 * most 2^31 - 1 ms, 24.8 days): the repair of that row deleted by hand waited an hour, and after a
 * small step of the database clock nobody reaped for 24.8 days, also after the documented repair
 * (`SET lease_expires_at = now()`). A row's lease is the one its member runs with now, as its join or
 * last renewal recorded it (`lease_ms`, migration 0014).
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Layer } from "effect"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { groupRow, makeGroup, StoreLive, waitFor } from "../faults/support.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { exactCover } from "../support/Recorder.js"
import { steppedClock } from "../support/SteppedClock.js"

/**
 * Three members form; one crashes, and its lease is set `interval` ahead by hand; the survivors then
 * renew for a second, reading the row with its lease set ahead.
 */
const deadLeaseAhead = (prefix: string, interval: string) =>
  Effect.gen(function*() {
    const group = yield* makeGroup(randomGroupId(prefix))
    const members = yield* Effect.forEach([0, 1, 2], () => group.join(), { concurrency: "unbounded" })
    yield* waitFor(() => exactCover(group.rec.working(), 3), Duration.seconds(20), "formed")
    const sql = yield* SqlClient.SqlClient
    const dead = members[2]!
    yield* dead.crash
    yield* Effect.sleep(Duration.millis(300))
    yield* sql`UPDATE modulo_group.members SET lease_expires_at = now() + ${interval}::interval WHERE member_id = ${dead.m.memberId}`
    yield* Effect.sleep(Duration.seconds(1))
    return { dead, group, sql }
  })

for (const [what, interval] of [["an hour", "1 hour"], ["a century", "100 years"]] as const) {
  it.live(`a dead member's lease set ${what} ahead by hand, then its row deleted: the group re-forms within a few leases`, () =>
    Effect.gen(function*() {
      const { dead, group, sql } = yield* deadLeaseAhead("tampered-longest", interval)
      yield* sql`DELETE FROM modulo_group.members WHERE member_id = ${dead.m.memberId}`
      // One lease (2 s) of the survivors' and a heartbeat, not the hand-set lease.
      yield* waitFor(() => exactCover(group.rec.working(), 2), Duration.seconds(15), "re-formed without the deleted row")
      expect((yield* groupRow(group.groupId))!.size).toBe(2)
      expect(group.rec.violations).toEqual([])
    }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)
}

const EffectClockStore = PgMembershipStore.layer({ clock: "effect" }).pipe(Layer.provideMerge(PgLive))

it.live("a dead member's lease set a century ahead, a 1.5 s step of the database clock, then the documented repair: the group re-forms", () =>
  Effect.gen(function*() {
    const { clock, step } = yield* steppedClock
    yield* Effect.gen(function*() {
      const { dead, group, sql } = yield* deadLeaseAhead("tampered-step", "100 years")
      // A step of 1.5 s (below the survivors' lease of 2 s: nobody expires), seen by every survivor.
      step(1_500)
      yield* Effect.sleep(Duration.seconds(1))
      // The operator expires the dead row, as docs/operations.md says.
      yield* sql`UPDATE modulo_group.members SET lease_expires_at = now() - interval '1 hour' WHERE member_id = ${dead.m.memberId}`
      // Reaping was held off for a lease (2 s) after the step, not for the hand-set century.
      yield* waitFor(() => exactCover(group.rec.working(), 2), Duration.seconds(15), "re-formed without the dead member")
      expect(group.rec.violations).toEqual([])
    }).pipe(Effect.withClock(clock))
  }).pipe(Effect.scoped, Effect.provide(EffectClockStore)), 60_000)
