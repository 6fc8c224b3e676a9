/**
 * A static member (instance id) that joins beside an overdue member waits in a waiting row like any
 * joiner, and then dies (a kill -9) or stops gracefully (a static member's stop releases its row),
 * on real PostgreSQL with real members (found by a review, attack96). A static row is held for its
 * rejoin grace after its lease ends, so that a restart takes its place back with no change; the
 * waiting row carried its joiner's grace too, although it held no place. The reap of the overdue
 * member gave that dead row an index, and nobody worked the index for the rest of the grace (28 s of
 * the default 30 s). A waiting row now has no grace until its joiner takes the index it was given
 * (`adoptRow`): a dead one is deleted when its lease runs out, before or after its promotion.
 */
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { exactCover } from "../support/Recorder.js"
import { waitFor, waitForEffect } from "../support/Wait.js"
import { fast, StoreLive, withOverdueMember } from "./support.js"

/**
 * a, b, c working, c overdue; static j joins and waits; `stop` stops it at c's `leftMs` of lease. Returns
 * how long after c's row is gone a and b cover the group again (at most 10 s; the default grace is 30 s).
 */
const scenario = (label: string, stop: "kill" | "graceful", leftMs: number) =>
  Effect.gen(function*() {
    const { join, rec, rowOf } = yield* withOverdueMember(label, fast("2500 millis"))
    const j = yield* join("j", { instanceId: `${label}-j` })
    yield* waitForEffect(Effect.map(rowOf("j"), (r) => r !== undefined && r.index === null), undefined, "j waiting")
    yield* waitForEffect(Effect.map(rowOf("c"), (r) => r === undefined || r.leaseLeftMs < leftMs), undefined, "c's lease nearly out")
    if (stop === "kill") j.flag.hung = true
    else yield* j.close
    yield* waitForEffect(Effect.map(rowOf("c"), (r) => r === undefined), "10 seconds", "c reaped")
    const reapedAt = Date.now()
    const covered = yield* Effect.either(waitFor(() => exactCover(rec.working(), 2), "10 seconds", "a and b cover the group"))
    expect(rec.violations).toEqual([])
    return covered._tag === "Right" ? Date.now() - reapedAt : Infinity
  }).pipe(Effect.scoped)

it.live("a static joiner that dies while it waits, long before the reap, leaves no index unworked", () =>
  Effect.gen(function*() {
    // Its row runs out 400 ms after its last poll, well before c's reap: deleted, never promoted.
    expect(yield* scenario("static-waiter-dead", "kill", 1_800)).toBeLessThan(3_000)
  }).pipe(Effect.provide(StoreLive)), 60_000)

it.live("a static joiner that stops gracefully while it waits leaves no index unworked", () =>
  Effect.gen(function*() {
    expect(yield* scenario("static-waiter-stop", "graceful", 1_800)).toBeLessThan(3_000)
  }).pipe(Effect.provide(StoreLive)), 60_000)

it.live("a static joiner that dies just before the reap: its promoted row, never taken, has no grace", () =>
  Effect.gen(function*() {
    // Its row is live at c's reap and is given an index; the barrier waits for j, whose row runs out
    // its waiting interval after the promotion and is reaped then (no rejoin grace).
    expect(yield* scenario("static-waiter-late", "kill", 250)).toBeLessThan(3_000)
  }).pipe(Effect.provide(StoreLive)), 60_000)
