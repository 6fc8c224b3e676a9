/**
 * A fence timeout is its own tagged error (issue 17, item 4a), whichever side ends the transaction:
 * the client's timer, or, when the client cannot act on its timer (stalled; here: a frozen TestClock),
 * the server's backstop of `timeout` + 1 s.
 */
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture } from "./support.js"

it.live("past its timeout, a fenced transaction fails with FenceTimeout (client side), naming the option, and commits nothing", () =>
  Effect.gen(function*() {
    const t = yield* fixture("fence-timeout")
    const error = yield* Fenced.fencedWith(t.target, Effect.zipRight(t.insert("slow"), t.sql`SELECT pg_sleep(2)`), {
      timeout: "300 millis"
    }).pipe(Effect.flip)
    expect(error._tag).toBe("FenceTimeout")
    expect(error).toMatchObject({ side: "client", timeoutMs: 300, epoch: 7 })
    expect(error.message).toMatch(/raise the `timeout` option of fenced/)
    expect(yield* t.notes).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive)))

// it.effect: the TestClock never moves, so the client's own timer never fires, as for a client that
// stalls; the server's statement_timeout (timeout + 1 s) cancels the statement after 1.3 s of real time.
it.effect("when the server's backstop ends the transaction first, the error is FenceTimeout (server side), not a SqlError", () =>
  Effect.gen(function*() {
    const t = yield* fixture("fence-backstop")
    const started = performance.now()
    const error = yield* Fenced.fencedWith(t.target, Effect.zipRight(t.insert("stuck"), t.sql`SELECT pg_sleep(5)`), {
      timeout: "300 millis"
    }).pipe(Effect.flip)
    const took = performance.now() - started
    expect(error._tag).toBe("FenceTimeout")
    expect(error).toMatchObject({ side: "server", timeoutMs: 300 })
    expect(took).toBeGreaterThan(1_200)
    expect(took).toBeLessThan(4_000)
    expect(yield* t.notes).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive)))
