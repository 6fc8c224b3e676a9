/**
 * `fenced`'s `timeout` option is checked as the membership's durations are: a value that is not a
 * duration from 1 ms up to PostgreSQL's longest timeout less the backstop's slack fails with
 * `InvalidConfig` (field `timeout`) before anything is sent. An adversarial review (attack79) found
 * "abc" (a value read from an app's config) dying with "Invalid DurationInput", an infinite one failing
 * on the server (`statement_timeout` "Infinity", 22023), and -1, NaN and "-5 seconds" taken as 1 ms
 * (then `FenceTimeout`).
 */
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Exit } from "effect"
import * as Fenced from "../../src/Fenced.js"
import * as Membership from "../../src/Membership.js"
import * as PgMembership from "../../src/PgMembership.js"
import { PgLive, randomGroupId } from "../support/Database.js"

it.live("a timeout that is not a duration of 1 ms to about 24.8 days fails with InvalidConfig, and nothing is sent", () =>
  Effect.gen(function*() {
    const m = yield* Membership.Membership
    const assignment = yield* m.awaitAssigned
    let ran = 0
    const body = Effect.sync(() => void ran++)
    const bad: ReadonlyArray<readonly [string, Duration.DurationInput]> = [
      ["-1", -1],
      ["NaN", Number.NaN],
      ["'abc'", "abc" as Duration.DurationInput],
      ["0", 0],
      ["Infinity", Number.POSITIVE_INFINITY],
      ["Duration.infinity", Duration.infinity],
      ["'-5 seconds'", "-5 seconds" as Duration.DurationInput],
      ["2^31 - 1 ms (its backstop would not fit)", 2 ** 31 - 1]
    ]
    for (const [label, timeout] of bad) {
      const exit = yield* Effect.exit(Fenced.fenced(body, { assignment, timeout }))
      expect(Exit.isFailure(exit), label).toBe(true)
      if (Exit.isFailure(exit)) {
        const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
        expect(error?._tag, label).toBe("InvalidConfig")
        expect(error?._tag === "InvalidConfig" && error.field, label).toBe("timeout")
      }
    }
    expect(ran).toBe(0)
    // A duration in range runs the body.
    yield* Fenced.fenced(body, { assignment, timeout: "2 seconds" })
    expect(ran).toBe(1)
  }).pipe(
    Effect.provide(PgMembership.layer({ groupId: randomGroupId("fence-timeout-option") })),
    Effect.provide(PgLive)
  ), 60_000)
