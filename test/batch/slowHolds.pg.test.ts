/**
 * Busy renewals behind slow changes (a review of a first fix of the cross-group stall,
 * docs/operations.md). A group's member rows are held by transactions lasting 0.6-1.95 s
 * each (uniform, seeded), every one below the store's statement timeout (2 s), back to back with 20 ms
 * gaps: what a stream of slow changes of the group does (a large group on a loaded server; here a
 * session's SELECT ... FOR UPDATE, held, then COMMIT). A busy renewal must get through at the next
 * COMMIT, as when each waited a whole statement timeout: the fix that let one renewal per group wait at
 * most 500 ms, the others failing with it, failed 78 heartbeats in 60 s and fenced every member at +17 s.
 * Each busy renewal waits in the row lock's queue, up to a statement timeout (a later fix that made them
 * take turns, one per group at a time, passed here but let 8 or more members of one group be fenced).
 *
 * Default timing: heartbeat 1 s, lease 10 s, fenceMargin 2 s, store statement timeout 2 s.
 * ATTACK_HOLD_MS / ATTACK_HOLD_MAX_MS / ATTACK_GAP_MS / ATTACK_RUN_MS change the pattern.
 */
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Scope } from "effect"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { formThree, holdRows } from "../support/HeldRows.js"
import { makeRecorder } from "../support/Recorder.js"

const holdMs = Number(process.env["ATTACK_HOLD_MS"] ?? 600)
const gapMs = Number(process.env["ATTACK_GAP_MS"] ?? 20)
const runMs = Number(process.env["ATTACK_RUN_MS"] ?? 25_000)
// ATTACK_HOLD_MAX_MS: each hold uniform in [ATTACK_HOLD_MS, ATTACK_HOLD_MAX_MS] (a seeded generator).
const holdMaxMs = Number(process.env["ATTACK_HOLD_MAX_MS"] ?? 1_950)
let seed = 12345
const random = () => {
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed / 2147483648
}

it.live("member rows held 0.6-1.95 s at a time (each below the statement timeout), back to back: the members keep working", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("slow-holds")
    const rec = yield* makeRecorder
    const scope = yield* Scope.make()
    yield* formThree(groupId, rec, scope)
    const { holds, stops } = yield* holdRows(groupId, rec, {
      name: "test-slow-holds-locker",
      runMs,
      gapMs,
      holdMs: () => holdMs + Math.round(random() * (holdMaxMs - holdMs))
    })
    console.log(`holds: ${holds}; stops: ${JSON.stringify(stops)}`)
    expect({ stops, working: rec.working().length }).toEqual({ stops: [], working: 3 })
    expect(rec.violations).toEqual([])
    yield* Scope.close(scope, Exit.void)
  }).pipe(
    Effect.provide(PgMembershipStore.layer().pipe(Layer.provideMerge(PgLive))),
    Effect.scoped
  ), 120_000)
