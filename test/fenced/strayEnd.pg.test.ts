/**
 * A review of the refusal of a fenced body's statements once the body has ended: a fiber the body
 * forked ran a nested fenced block of its own, which the end of the body cut off; its statements and
 * its rollback to its savepoint were refused, and the rollback's failure was taken for a lost
 * savepoint: the library ended the pooled client, which the pool had given to another member's fenced
 * transaction by then (pool of one): that one failed ("Client was closed"). Now a refused rollback on a
 * revoked connection ends nothing.
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { clientWithOptions } from "../support/Database.js"
import { fixture } from "./support.js"

it.live("a refused nested block in a fiber forked by a fenced body ends nothing: another member's fenced transaction on that client commits", () =>
  Effect.gen(function*() {
    const a = yield* fixture("stray-end-a")
    const b = yield* fixture("stray-end-b")
    const started = yield* Deferred.make<void>()
    let f: Fiber.RuntimeFiber<unknown, unknown> | undefined
    yield* Effect.either(Fenced.fencedWith(a.target, Effect.gen(function*() {
      yield* a.insert("A fenced")
      f = yield* Effect.forkDaemon(Fenced.fencedWith(a.target, Effect.gen(function*() {
        yield* Deferred.succeed(started, undefined)
        yield* Effect.sleep("300 millis")
        yield* a.insert("A nested, late")
      }), { timeout: "3 seconds" }))
      yield* Deferred.await(started)
    })))
    // A itself fails (FenceBroken: the nested block's stamp is still on the transaction's marker chain at
    // A's last check); what matters here is what happens to the client afterwards.
    const second = yield* Effect.either(Fenced.fencedWith(
      b.target,
      Effect.zipRight(b.insert("B fenced"), Effect.sleep("700 millis")),
      { timeout: "3 seconds" }
    ))
    // The stray block fails: nothing of it was sent after A's body ended.
    expect((yield* Fiber.await(f!))._tag).toBe("Failure")
    const notesB = yield* b.notes
    // B's fenced transaction has nothing to do with A's body: it commits.
    expect(second._tag).toBe("Right")
    expect(notesB).toEqual(["B fenced"])
  }).pipe(Effect.scoped, Effect.provide(clientWithOptions("-c application_name=stray-end", "stray-end", { maxConnections: 1 }))))
