/**
 * Two log lines are events an app (and the CLI) acts on, and carry the annotation
 * `modulo_group.event` so that nobody has to read their wording: a join refused for good (slots mode
 * against a group of the other mode or another slot count: `join_refused`), and a final leave that
 * gave up (the row stays until its lease runs out: `leave_gave_up`). docs/operations.md, "Monitoring".
 * In-memory store, TestClock.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, HashMap, Logger, Scope, TestClock } from "effect"
import * as InMemoryMembershipStore from "../src/InMemoryMembershipStore.js"
import * as Membership from "../src/Membership.js"

interface Line {
  readonly message: string
  readonly event: unknown
}

const collect = () => {
  const lines: Array<Line> = []
  const logger = Logger.make(({ annotations, message }) => {
    const text = (Array.isArray(message) ? message : [message]).map(String).join(" ")
    lines.push({ message: text, event: HashMap.get(annotations, "modulo_group.event").pipe((o) => (o._tag === "Some" ? o.value : undefined)) })
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}

describe("log lines that are events carry modulo_group.event", () => {
  it.scoped("a join refused for good: join_refused", () => {
    const logs = collect()
    return Effect.gen(function*() {
      const scope = yield* Scope.make()
      yield* Membership.make({ groupId: "events-refused", name: "a" }).pipe(Scope.extend(scope))
      const b = yield* Effect.fork(Membership.make({ groupId: "events-refused", name: "b", slots: 8 }).pipe(Scope.extend(scope)))
      yield* TestClock.adjust(Duration.seconds(3))
      const refused = logs.lines.filter((l) => l.event === "join_refused")
      expect(refused.length).toBe(1)
      expect(refused[0]!.message).toMatch(/join refused: .*modulo mode/)
      yield* Fiber.interrupt(b)
      yield* Scope.close(scope, Exit.void)
    }).pipe(Effect.provide(InMemoryMembershipStore.layer), Effect.provide(logs.layer))
  })

  it.scoped("a final leave that gave up: leave_gave_up", () => {
    const logs = collect()
    return Effect.gen(function*() {
      const control = yield* InMemoryMembershipStore.InMemoryStoreControl
      const scope = yield* Scope.make()
      const m = yield* Membership.make({ groupId: "events-leave", name: "a" }).pipe(Scope.extend(scope))
      yield* m.awaitAssigned.pipe(Effect.fork, Effect.zipLeft(TestClock.adjust(Duration.seconds(1))), Effect.flatMap(Fiber.join))
      yield* control.setOutage(true)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust(Duration.seconds(10))
      yield* Fiber.join(closing)
      const gaveUp = logs.lines.filter((l) => l.event === "leave_gave_up")
      expect(gaveUp.length).toBe(1)
      expect(gaveUp[0]!.message).toContain("leave gave up")
      // Nothing else is such an event.
      expect(logs.lines.filter((l) => l.event !== undefined).length).toBe(1)
      // Its retries, failing the same way, said it once (a review: 18-19 times in 2 s).
      expect(logs.lines.filter((l) => l.message.startsWith("leave failed: ")).length).toBe(1)
    }).pipe(Effect.provide(InMemoryMembershipStore.layer), Effect.provide(logs.layer))
  })
})
