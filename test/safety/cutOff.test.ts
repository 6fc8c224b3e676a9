/**
 * A member cut off from the database (its store calls hang) cannot keep its lease: the fence timer
 * interrupts its work at `lease - fenceMargin` after its last renewal was sent, and the others reap
 * it once the lease runs out. Work whose cleanup (finalizers) outlasts `fenceMargin` then runs on
 * beside the next epoch (an adversarial review: a 1.5 s finalizer, a 500 ms margin, 0.9 s of
 * overlap on PostgreSQL). Nothing here can prevent it; the member says so, loudly, at the end of its
 * lease (docs/work.md). In-memory store and TestClock, default config (lease 10 s, margin 2 s).
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Scope, TestClock } from "effect"
import { collectLogs, LEASE, MARGIN, now, setup, until } from "./support.js"

/** A member alone whose work's cleanup takes `cleanupMs`, then cut off from the database. */
const cutOff = (cleanupMs: number) =>
  Effect.gen(function*() {
    const { control, join, rec } = yield* setup(`safety-cut-off-${cleanupMs}`)
    const a = yield* join({ name: "a" })
    let stoppedAt: number | undefined
    yield* a.m.whileAssigned(() =>
      Effect.never.pipe(
        Effect.onInterrupt(() => Effect.sleep(cleanupMs).pipe(Effect.zipRight(Effect.flatMap(now, (t) => Effect.sync(() => void (stoppedAt = t))))))
      )
    ).pipe(Scope.extend(a.scope))
    yield* until(() => rec.working().length === 1, 10_000, 10)
    const cut = yield* now
    yield* control.hang(a.id)
    // Well past the lease and the longest cleanup.
    yield* until(() => stoppedAt !== undefined && (stoppedAt ?? 0) > cut, 3 * LEASE, 50)
    yield* TestClock.adjust(Duration.millis(LEASE))
    return { cut, stoppedAt: stoppedAt! }
  })

const alarm = /work interrupted at the lease deadline has not stopped .* when this member's lease runs out/

describe("a member cut off from the database", () => {
  it.scoped("work whose cleanup outlasts fenceMargin: an alarm when the lease runs out", () => {
    const logs = collectLogs()
    return Effect.gen(function*() {
      const { cut, stoppedAt } = yield* cutOff(MARGIN + 1_000)
      const errors = logs.lines.filter((l) => l.level === "ERROR" && alarm.test(l.message))
      expect(errors).toHaveLength(1)
      // Said at the end of the lease as the member counts it, while the cleanup still ran.
      expect(errors[0]!.at).toBeGreaterThan(cut)
      expect(errors[0]!.at).toBeLessThan(stoppedAt)
    }).pipe(Effect.provide(logs.layer))
  })

  it.scoped("work that stops within fenceMargin: no alarm", () => {
    const logs = collectLogs()
    return Effect.gen(function*() {
      yield* cutOff(MARGIN - 1_000)
      expect(logs.lines.filter((l) => alarm.test(l.message))).toEqual([])
    }).pipe(Effect.provide(logs.layer))
  })
})
