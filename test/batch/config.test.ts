/**
 * `renewalWindow` (issue 15): how much of a heartbeat a periodic renewal floats so that a process's
 * members share statements. Its default, its bounds, and that it comes out of the lease's slack.
 */
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as MembershipConfig from "../../src/MembershipConfig.js"

const make = (input: Omit<MembershipConfig.MembershipConfigInput, "groupId">) =>
  MembershipConfig.make({ groupId: "g", ...input }).pipe(
    Effect.map((c) => MembershipConfig.renewalWindowMs(c)),
    Effect.mapError((e) => e._tag === "InvalidConfig" ? `${e.field}: ${e.reason}` : e._tag)
  )

it.effect("the default is half the heartbeat, at most half the lease's slack", () =>
  Effect.gen(function*() {
    // 10 s - 1 s - 2 s - 2 s leaves 5 s: half the heartbeat.
    expect(yield* make({})).toBe(500)
    // 2 s - 200 ms - 500 ms - 1 s leaves 300 ms: 100 ms (half the heartbeat) is below half of it.
    expect(yield* make({ heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" })).toBe(100)
    // 3.6 s - 1 s - 1 s - 1 s leaves 600 ms: half of it.
    expect(yield* make({ heartbeat: "1 second", lease: "3600 millis", fenceMargin: "1 second", statementTimeout: "1 second" })).toBe(300)
  }))

it.effect("0 turns it off; at or above the heartbeat, or beyond the lease's slack, it is refused", () =>
  Effect.gen(function*() {
    expect(yield* make({ renewalWindow: 0 })).toBe(0)
    expect(yield* make({ renewalWindow: "250 millis" })).toBe(250)
    expect(yield* Effect.flip(make({ renewalWindow: "1 second" }))).toMatch(/renewalWindow: .*below heartbeat/)
    expect(yield* Effect.flip(make({ renewalWindow: -5 }))).toMatch(/renewalWindow: .*not a finite duration/)
    expect(yield* Effect.flip(make({ lease: "5500 millis", renewalWindow: "600 millis" }))).toMatch(
      /renewalWindow: lease .* must exceed heartbeat \+ fenceMargin \+ statementTimeout \+ renewalWindow/
    )
  }))
