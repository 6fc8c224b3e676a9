/**
 * The lease keeper's wake-ups (src/internal/membership/signal.ts) under the TestClock: the first of
 * the timer, a poke and (when taken) a wake ends a wait; what a wait did not take stays pending,
 * repeated ones collapse into one.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Option, TestClock } from "effect"
import * as Signal from "../src/internal/membership/signal.js"

describe("signal", () => {
  it.effect("the timer ends a wait at exactly its time, not a tick earlier", () =>
    Effect.gen(function*() {
      const s = Signal.make()
      const f = yield* Effect.fork(s.wait(100))
      yield* TestClock.adjust(Duration.millis(99))
      expect(Option.isNone(yield* Fiber.poll(f))).toBe(true)
      yield* TestClock.adjust(Duration.millis(1))
      expect(yield* Fiber.join(f)).toBe("timer")
    }))

  it.effect("a poke ends a wait at once; pokes before a wait collapse into one, taken by it", () =>
    Effect.gen(function*() {
      const s = Signal.make()
      const f = yield* Effect.fork(s.wait(1_000))
      yield* TestClock.adjust(Duration.millis(10))
      yield* s.poke
      expect(yield* Fiber.join(f)).toBe("poke")
      yield* s.poke
      yield* s.poke
      expect(yield* s.wait(1_000)).toBe("poke")
      // Taken: the next wait is the timer's.
      const g = yield* Effect.fork(s.wait(50))
      yield* TestClock.adjust(Duration.millis(50))
      expect(yield* Fiber.join(g)).toBe("timer")
    }))

  it.effect("a wait that takes no wakes ignores one, which stays pending for the next wait; a poke goes first", () =>
    Effect.gen(function*() {
      const s = Signal.make()
      const f = yield* Effect.fork(s.wait(100, { wakes: false }))
      yield* TestClock.adjust(Duration.millis(10))
      yield* s.wake
      yield* TestClock.adjust(Duration.millis(10))
      expect(Option.isNone(yield* Fiber.poll(f))).toBe(true)
      yield* TestClock.adjust(Duration.millis(80))
      expect(yield* Fiber.join(f)).toBe("timer")
      yield* s.poke
      expect(yield* s.wait(100)).toBe("poke")
      expect(yield* s.wait(100)).toBe("wake")
    }))

  it.effect("a wait without a timer ends only on a poke or a wake; an interrupted wait leaves nothing behind", () =>
    Effect.gen(function*() {
      const s = Signal.make()
      const f = yield* Effect.fork(s.wait(undefined))
      yield* TestClock.adjust(Duration.hours(1))
      expect(Option.isNone(yield* Fiber.poll(f))).toBe(true)
      yield* Fiber.interrupt(f)
      // The interrupted wait no longer takes anything: the wake goes to the next one.
      yield* s.wake
      expect(yield* s.wait(undefined)).toBe("wake")
      // Nor does an interrupted wait's timer fire into a later wait.
      const g = yield* Effect.fork(s.wait(10))
      yield* Fiber.interrupt(g)
      const h = yield* Effect.fork(s.wait(100))
      yield* TestClock.adjust(Duration.millis(10))
      expect(Option.isNone(yield* Fiber.poll(h))).toBe(true)
      yield* TestClock.adjust(Duration.millis(90))
      expect(yield* Fiber.join(h)).toBe("timer")
    }))

  it.effect("while a renewal is held, pokes and wakes (pending or new) go to it: taken when served, else pending; after unhold, to waits", () =>
    Effect.gen(function*() {
      const s = Signal.make()
      const offered: Array<string> = []
      let serves = true
      const serve = (reason: "poke" | "wake") =>
        Effect.sync(() => {
          offered.push(reason)
          return serves
        })
      // Pending when the hold begins: offered at once (a poke first, which takes the wake with it).
      yield* s.wake
      yield* s.poke
      yield* s.hold(serve)
      expect(offered).toEqual(["poke"])
      // New ones while held: each offered; served, so taken.
      yield* s.wake
      yield* s.poke
      expect(offered).toEqual(["poke", "wake", "poke"])
      yield* s.unhold
      const f = yield* Effect.fork(s.wait(50))
      yield* TestClock.adjust(Duration.millis(50))
      expect(yield* Fiber.join(f)).toBe("timer")

      // Not served (the renewal is on its way already): it stays pending for the next wait.
      serves = false
      yield* s.hold(serve)
      yield* s.wake
      yield* s.unhold
      expect(yield* s.wait(1_000)).toBe("wake")
      yield* s.hold(serve)
      yield* s.poke
      yield* s.wake
      yield* s.unhold
      expect(offered.slice(3)).toEqual(["wake", "poke", "poke"])
      expect(yield* s.wait(1_000)).toBe("poke")
      expect(yield* s.wait(1_000)).toBe("wake")

      // After unhold nothing is offered: a poke waits for the next wait.
      yield* s.poke
      expect(offered.length).toBe(6)
      expect(yield* s.wait(1_000)).toBe("poke")
    }))
})
