/**
 * G6, a review: a fenced block nested in a fenced body by a fiber the body forked, still running when
 * the body ended. Its own body rolled back past its savepoint (its locks, stamps and check undone), its
 * group moved on, it wrote, and then its end and its rollback were refused (the outer body had ended):
 * the outer block committed, and with it the nested block's write of a stale epoch. Now a nested block
 * is registered with the body it runs in; one still running at the body's end fails the outer block
 * (`FenceBroken`), and nothing commits; also when the app wraps the body's connection (the block finds
 * the body through the context). The control: the same block run inline ends the transaction.
 */
import { expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import type { Connection } from "@effect/sql/SqlConnection"
import { Deferred, Effect, Fiber, Option } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture, proxy } from "./support.js"

/** The transaction's connection behind an app's wrapper (a statement logger's proxy of it). */
const wrapped = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.flatMap(Effect.serviceOption(SqlClient.TransactionConnection), (current) =>
    Option.isNone(current)
      ? effect
      : Effect.provideService(effect, SqlClient.TransactionConnection, [proxy<Connection>(current.value[0], {}), current.value[1]] as const))

const scenario = (forked: boolean, wrapper = false) =>
  Effect.gen(function*() {
    const g1 = yield* fixture("revoked-lost-sp-g1")
    const g2 = yield* fixture("revoked-lost-sp-g2")
    const sql = g1.sql
    const rolledBack = yield* Deferred.make<void>()
    const changed = yield* Deferred.make<void>()
    const written = yield* Deferred.make<void>()
    const body2 = Effect.gen(function*() {
      yield* sql.unsafe("ROLLBACK TO SAVEPOINT effect_sql_1")
      yield* Deferred.succeed(rolledBack, undefined)
      yield* Deferred.await(changed)
      yield* g2.insert("G2 write at epoch 7")
      yield* Deferred.succeed(written, undefined)
      if (forked) yield* Effect.sleep("300 millis")
    })
    const f2 = (wrapper ? wrapped : <A, E, R>(e: Effect.Effect<A, E, R>) => e)(
      sql.withTransaction(Fenced.fencedWith(g2.target, body2, { timeout: "5 seconds" }))
    )
    let f: Fiber.RuntimeFiber<unknown, unknown> | undefined
    const body1 = Effect.gen(function*() {
      yield* g1.insert("G1 write")
      if (forked) {
        f = yield* Effect.forkDaemon(f2)
        yield* Deferred.await(written)
      } else {
        yield* Effect.exit(f2)
      }
    })
    const b1 = yield* Effect.fork(Effect.either(Fenced.fencedWith(g1.target, body1, { timeout: "5 seconds" })))
    // G2 renegotiates once B2's locks are gone: its epoch moves on and B2's member is reaped.
    yield* Deferred.await(rolledBack)
    yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`SET LOCAL lock_timeout = '2s'`
      yield* sql`UPDATE modulo_group.groups SET epoch = 8 WHERE group_id = ${g2.groupId}`
      yield* sql`DELETE FROM modulo_group.members WHERE member_id = ${g2.memberId}`
    }))
    yield* Deferred.succeed(changed, undefined)
    const r1 = yield* Fiber.join(b1)
    if (f !== undefined) yield* Fiber.await(f)
    const notes2 = yield* g2.notes
    // G6 for G2: nothing of B2's body commits after G2's epoch 8 exists (B2 itself failed).
    expect(notes2).toEqual([])
    // The outer block fails (the nested one was still running at its body's end, or its lost
    // savepoint ended the transaction), and nothing of it commits either.
    expect(r1._tag).toBe("Left")
    expect(yield* g1.notes).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive))

it.live("G6: a nested block (forked by an outer fenced body) still running at the body's end, that lost its savepoint: nothing commits", () =>
  scenario(true), 60_000)

// The same, the forked block run through an app's wrapper of the body's connection (a review): it is
// found through the context, not by the connection it runs on.
it.live("G6: the same, the nested block run through an app's wrapper of the body's connection: nothing commits", () =>
  scenario(true, true), 60_000)

// Control: the same nested block run inline (joined) by the outer body: its failed rollback ends the
// transaction, nothing of it commits (passes).
it.live("control: the same block run inline: the transaction is ended, nothing commits", () => scenario(false), 60_000)
