/**
 * For the busy-renewal suites (test/batch/slowHolds.pg.test.ts, deadBusyRenewal.pg.test.ts): three
 * tracked members of one group over the provided store, and a session that holds the group's member
 * rows (SELECT ... FOR UPDATE, then COMMIT) again and again, as a stream of slow changes would.
 */
import { Duration, Effect, Scope } from "effect"
import * as Membership from "../../src/Membership.js"
import type { MembershipConfigInput } from "../../src/MembershipConfig.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import { rawSession } from "./Database.js"
import { makeRecorder } from "./Recorder.js"
import { waitFor } from "./Wait.js"

/** Three members of `groupId` working (tracked by `rec`), in `scope`; default timing but `config`'s. */
export const formThree = (
  groupId: string,
  rec: Effect.Effect.Success<typeof makeRecorder>,
  scope: Scope.Scope,
  config: Partial<MembershipConfigInput> = {}
) =>
  Effect.gen(function*() {
    const store = yield* MembershipStore
    for (let i = 0; i < 3; i++) {
      yield* Membership.make({ ...config, groupId }).pipe(
        Effect.provideService(MembershipStore, store),
        Effect.tap((m) => rec.track(m)),
        Scope.extend(scope)
      )
    }
    yield* waitFor(() => rec.working().length === 3, Duration.seconds(20), "formed")
  })

/**
 * Holds `groupId`'s member rows for `holdMs()` at a time, `gapMs` apart, for `runMs`; returns the
 * work stops of `rec`'s members meanwhile (member and ms after the first hold) and the holds made.
 */
export const holdRows = (
  groupId: string,
  rec: Effect.Effect.Success<typeof makeRecorder>,
  options: { readonly name: string; readonly runMs: number; readonly gapMs: number; readonly holdMs: () => number }
) =>
  Effect.gen(function*() {
    const locker = yield* rawSession({ name: options.name })
    const marks = rec.marks.length
    const startedAt = Date.now()
    let holds = 0
    while (Date.now() - startedAt < options.runMs) {
      yield* Effect.promise(() => locker.query("BEGIN"))
      yield* Effect.promise(() =>
        locker.query("SELECT member_id FROM modulo_group.members WHERE group_id = $1 ORDER BY member_id FOR UPDATE", [groupId])
          .catch(() => undefined)
      )
      yield* Effect.sleep(Duration.millis(options.holdMs()))
      yield* Effect.promise(() => locker.query("COMMIT").catch(() => locker.query("ROLLBACK")))
      holds++
      yield* Effect.sleep(Duration.millis(options.gapMs))
    }
    const stops = rec.marks.slice(marks).filter((m) => m.kind === "end").map((m) => `${m.member.slice(0, 8)} at +${m.at - startedAt} ms`)
    return { stops, holds }
  }).pipe(Effect.scoped)
