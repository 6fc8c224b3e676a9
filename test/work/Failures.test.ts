/**
 * Work that keeps failing (issue 17, item 4a): besides the warning for each failure, one warning says
 * that the same work keeps failing (3 in a row), and one line when it succeeds again.
 */
import { expect, it } from "@effect/vitest"
import { Duration, Effect, TestClock } from "effect"
import * as Membership from "../../src/Membership.js"
import * as Work from "../../src/Work.js"
import { captureLogs } from "./logs.js"
import { assignment, stubMembership } from "./stub.js"

it.effect("periodic work that keeps failing: one warning per streak of 3 failures, one line when it recovers", () =>
  Effect.gen(function*() {
    const { layer, lines } = yield* captureLogs
    yield* Effect.gen(function*() {
      // Runs 1-5 fail, 6 succeeds, 7 on fail again.
      let runs = 0
      const m = yield* stubMembership([assignment(1, 0, 1)])
      yield* Work.runEvery("1 second", () => Effect.suspend(() => ++runs === 6 ? Effect.void : Effect.fail("boom"))).pipe(
        Effect.provideService(Membership.Membership, m)
      )
      yield* TestClock.adjust(Duration.millis(9_500))
      expect(runs).toBe(10)
    }).pipe(Effect.provide(layer), Effect.scoped)
    const failed = lines.filter((l) => l.message === "modulo-group: periodic work failed")
    expect(failed.length).toBe(9)
    expect(failed.every((l) => l.level === "WARN")).toBe(true)
    expect(lines.filter((l) => l.message.includes("keeps failing") || l.message.includes("succeeded again"))).toEqual([
      { level: "WARN", message: "modulo-group: periodic work keeps failing: 3 failures in a row" },
      { level: "INFO", message: "modulo-group: periodic work succeeded again after 5 failures in a row" },
      { level: "WARN", message: "modulo-group: periodic work keeps failing: 3 failures in a row" }
    ])
  }))

it.effect("a leader duty that keeps failing: one warning for the streak", () =>
  Effect.gen(function*() {
    const { layer, lines } = yield* captureLogs
    yield* Effect.gen(function*() {
      let attempts = 0
      const m = yield* stubMembership([assignment(1, 0, 1)])
      yield* Work.runAsLeader(Effect.suspend(() => (++attempts, Effect.fail("not yet"))), { retryDelay: "100 millis" }).pipe(
        Effect.provideService(Membership.Membership, m)
      )
      yield* TestClock.adjust(Duration.millis(950))
      expect(attempts).toBe(10)
    }).pipe(Effect.provide(layer), Effect.scoped)
    expect(lines.filter((l) => l.message.includes("keeps failing"))).toEqual([
      { level: "WARN", message: "modulo-group: leader duty keeps failing: 3 failures in a row" }
    ])
  }))
