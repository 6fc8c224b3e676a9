/**
 * What a member logs, as an operator reads it: state changes at INFO with one option
 * (`logStateChanges`), at DEBUG without it; a log line of the app's work carries the library's
 * annotations `modulo_group.group` and `modulo_group.member`, and no others. In-memory store,
 * TestClock.
 */
import { expect, it } from "@effect/vitest"
import { Effect, HashMap, List, Logger, LogLevel } from "effect"
import * as InMemoryMembershipStore from "../../src/InMemoryMembershipStore.js"
import * as Membership from "../../src/Membership.js"
import * as Work from "../../src/Work.js"
import { advanceUntil } from "../support/TestClock.js"

interface Line {
  readonly level: string
  readonly message: string
  readonly annotations: Record<string, unknown>
}

/** A logger that keeps every line (all levels) in `lines`. */
const capture = () => {
  const lines: Array<Line> = []
  const logger = Logger.make(({ annotations, logLevel, message }) => {
    const text = List.isList(message) ? [...message].map(String).join(" ") : Array.isArray(message) ? message.map(String).join(" ") : String(message)
    lines.push({ level: logLevel.label, message: text, annotations: Object.fromEntries(HashMap.toEntries(annotations)) })
  })
  const layer = Logger.replace(Logger.defaultLogger, logger)
  return { lines, layer }
}

const run = (logStateChanges: boolean | undefined) =>
  Effect.gen(function*() {
    const { layer, lines } = capture()
    yield* Effect.gen(function*() {
      const m = yield* Membership.make({ groupId: "logs", ...(logStateChanges === undefined ? {} : { logStateChanges }) })
      yield* Effect.provideService(
        Work.runEvery("1 second", (tick) => Effect.logInfo(`work at [${tick.index}/${tick.size}]`)),
        Membership.Membership,
        m
      )
      yield* advanceUntil(() => lines.some((l) => l.message.startsWith("work at")), undefined, undefined)
      return m.memberId
    }).pipe(
      Effect.scoped,
      Effect.provide(InMemoryMembershipStore.layer),
      Effect.provide(layer),
      Logger.withMinimumLogLevel(LogLevel.All)
    )
    return lines
  })

it.effect("logStateChanges: true logs every state change at INFO", () =>
  Effect.gen(function*() {
    const lines = yield* run(true)
    const states = lines.filter((l) => l.message.startsWith("state: "))
    expect(states.map((l) => [l.level, l.message])).toContainEqual(["INFO", "state: assigned epoch 1 [0/1]"])
    expect(states.every((l) => l.level === "INFO")).toBe(true)
  }))

it.effect("by default state changes are logged at DEBUG", () =>
  Effect.gen(function*() {
    const lines = yield* run(undefined)
    const states = lines.filter((l) => l.message.startsWith("state: "))
    expect(states.map((l) => l.message)).toContain("state: assigned epoch 1 [0/1]")
    expect(states.every((l) => l.level === "DEBUG")).toBe(true)
  }))

it.effect("a work log line carries the group and the member, and no other annotation of the library", () =>
  Effect.gen(function*() {
    const lines = yield* run(true)
    const work = lines.find((l) => l.message.startsWith("work at"))!
    expect(Object.keys(work.annotations).sort()).toEqual(["modulo_group.group", "modulo_group.member"])
    expect(work.annotations["modulo_group.group"]).toBe("logs")
    // The state lines too.
    for (const l of lines.filter((l) => l.message.startsWith("state: "))) {
      expect(Object.keys(l.annotations).sort()).toEqual(["modulo_group.group", "modulo_group.member"])
    }
  }))
