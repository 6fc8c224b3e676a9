/**
 * A waiting joiner that dies (a kill -9, a SIGSTOP) while it waits for an overdue member, on real
 * PostgreSQL with real members (found by a review, attack93). The change that reaps the overdue
 * member gives the dead joiner's waiting row an index, and that epoch's barrier waits for the joiner
 * to take it (attack92's fix), which it never does: the survivors waited for the rest of the waiting
 * row's lease (1.7 s of a 2 s lease). A waiting row now runs out one overdue threshold after its
 * joiner's last poll (here 400 ms); the lease here is 5 s.
 */
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { waitForEffect } from "../support/Wait.js"
import { fast, idleOfSurvivors, StoreLive, withOverdueMember } from "./support.js"

it.live("a waiting joiner that dies shortly before the overdue member's reap holds the survivors at the barrier for well under a lease", () =>
  Effect.gen(function*() {
    const { before, join, rec, rowOf } = yield* withOverdueMember("dead-waiter", fast("5 seconds"))
    const d = yield* join("d")
    yield* waitForEffect(Effect.map(rowOf("d"), (r) => r !== undefined && r.index === null), undefined, "d waiting")
    // d dies while waiting, shortly before c's lease runs out (its last poll renewed its row's lease).
    yield* waitForEffect(Effect.map(rowOf("c"), (r) => r === undefined || r.leaseLeftMs < 250), undefined, "c nearly expired")
    d.flag.hung = true
    const idle = yield* idleOfSurvivors(rec, before)
    expect(rec.violations).toEqual([])
    // Before: the rest of d's lease of 5 s (1.7 s of 2 s in the review); now d's row runs out 400 ms
    // after its last poll, and the survivors wait for that, a renewal and the reap.
    expect(idle).toBeDefined()
    expect(idle!).toBeLessThan(2500)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)
