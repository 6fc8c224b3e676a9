/**
 * The fence's bound with statements queued on the body's connection (a review): the driver queues
 * them on the connection, and each one gets a statement timeout of its own once it runs, so that five
 * `pg_sleep(1.5)` of fibers the body forked (or of the body itself, `Effect.all` with concurrency)
 * held the fence's locks about 7.5 s with `timeout` 1 s (backstop 2 s), and a membership change gave
 * up behind them. Now a body's statements go one at a time: one waiting for its turn is stopped by the
 * body's timeout or refused once the body has ended, and only the statement in flight runs on, within
 * the backstop.
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Effect } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture } from "./support.js"

const N = 5

const run = (mode: "forked" | "concurrent") =>
  Effect.gen(function*() {
    const t = yield* fixture(`queued-hang-${mode}`)
    const sql = t.sql
    const locked = yield* Deferred.make<void>()
    const sleeper = sql`SELECT pg_sleep(1.5)`
    const body = mode === "forked"
      ? Effect.gen(function*() {
        yield* t.insert("fenced")
        yield* Deferred.succeed(locked, undefined)
        for (let i = 0; i < N; i++) yield* Effect.forkDaemon(sleeper)
        yield* Effect.sleep("50 millis")
      })
      : Effect.gen(function*() {
        yield* t.insert("fenced")
        yield* Deferred.succeed(locked, undefined)
        yield* Effect.all(Array.from({ length: N }, () => sleeper), { concurrency: "unbounded", discard: true })
      })
    // A membership change of the group, on another connection: the exclusive row lock on the group row,
    // with twice the documented bound (timeout + 1 s) as its lock_timeout.
    const change = Effect.gen(function*() {
      yield* Deferred.await(locked)
      const started = performance.now()
      const exit = yield* Effect.exit(sql.withTransaction(Effect.gen(function*() {
        yield* sql`SET LOCAL lock_timeout = '4s'`
        yield* sql`SELECT epoch FROM modulo_group.groups WHERE group_id = ${t.groupId} FOR UPDATE`
      })))
      return { ok: exit._tag === "Success", waitedMs: Math.round(performance.now() - started) }
    }).pipe(Effect.fork)
    const changeFiber = yield* change
    const started = performance.now()
    const result = yield* Effect.either(Fenced.fencedWith(t.target, body, { timeout: "1 second" }))
    const fenceMs = Math.round(performance.now() - started)
    const changed = yield* changeFiber.await.pipe(Effect.flatMap((e) => e))
    // fenced's documented bound: timeout (1 s), the rollback at the latest at the backstop (2 s).
    expect(fenceMs).toBeLessThan(3000)
    expect(result._tag).toBe("Left")
    // A change of the group gets its lock within twice that bound.
    expect(changed.ok).toBe(true)
  }).pipe(Effect.scoped, Effect.provide(PgLive))

it.live("forked statements queued before the body ended: the fence ends within its bound, a change gets through", () => run("forked"), 60_000)

it.live("concurrent statements in the body: the fence ends within its bound past its timeout, a change gets through", () => run("concurrent"), 60_000)
