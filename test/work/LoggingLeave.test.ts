/**
 * `logStateChanges: true` logs one INFO line per state change (README, docs/configuration.md), the
 * final leave's too. An adversarial review (attack79) found that closing the member's scope (the way
 * an app leaves: SIGINT/SIGTERM under `runMain`) logged no `state: leaving` nor `state: left` (the
 * final leave published its states without `recordState`), and that an explicit `leave` logged
 * `state: leaving` twice. In memory, TestClock.
 */
import { expect, it } from "@effect/vitest"
import { Effect, List, Logger, LogLevel } from "effect"
import * as InMemoryMembershipStore from "../../src/InMemoryMembershipStore.js"
import * as Membership from "../../src/Membership.js"
import { advanceUntil } from "../support/TestClock.js"

const run = (explicitLeave: boolean) =>
  Effect.gen(function*() {
    const lines: Array<string> = []
    const logger = Logger.make(({ message }) => {
      lines.push(List.isList(message) ? [...message].map(String).join(" ") : Array.isArray(message) ? message.map(String).join(" ") : String(message))
    })
    yield* Effect.gen(function*() {
      const m = yield* Membership.make({ groupId: "logs79", logStateChanges: true })
      yield* advanceUntil(() => lines.some((l) => l.startsWith("state: assigned")), undefined, undefined)
      if (explicitLeave) yield* m.leave
    }).pipe(
      Effect.scoped,
      Effect.provide(InMemoryMembershipStore.layer),
      Effect.provide(Logger.replace(Logger.defaultLogger, logger)),
      Logger.withMinimumLogLevel(LogLevel.All)
    )
    return lines.filter((l) => l.startsWith("state: "))
  })

it.effect("scope close: leaving and left are logged", () =>
  Effect.gen(function*() {
    const states = yield* run(false)
    expect(states).toEqual(["state: assigned epoch 1 [0/1]", "state: leaving", "state: left"])
  }))

it.effect("explicit leave: one line per state change (leaving once)", () =>
  Effect.gen(function*() {
    const states = yield* run(true)
    expect(states).toEqual(["state: assigned epoch 1 [0/1]", "state: leaving", "state: left"])
  }))
