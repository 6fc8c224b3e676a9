/**
 * An adversarial review (attack11): an app that runs `SET CONSTRAINTS ALL IMMEDIATE` after a fenced
 * block nested in its transaction (to check its own deferred constraints before COMMIT) fires the
 * fence's commit-time check there and then; nothing is left to check at the app's COMMIT, so a lease
 * that runs out between that statement and COMMIT is not seen (docs/fencing.md, "Nesting", says so).
 * What holds: the block's locks stay held to the app's COMMIT, so a change of the group (a reap of the
 * member, a new epoch) cannot commit before the block's write, and nothing of the next epoch comes
 * first (G2, G6). Without the statement the app's COMMIT fails (the control).
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Context, Effect, Fiber } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture } from "./support.js"

type Fixture = Effect.Effect.Success<ReturnType<typeof fixture>>

/** A change of the group as the store makes one, on another connection: what it saw of the app's table. */
const change = (t: Fixture) =>
  Effect.mapInputContext(
    t.sql.withTransaction(Effect.gen(function*() {
      yield* t.sql`SELECT set_config('lock_timeout', '5s', true)`
      yield* t.sql`SELECT pg_advisory_xact_lock(${Fenced.advisoryLockClass}, hashtext(${t.groupId}))`
      yield* t.sql`SELECT epoch FROM modulo_group.groups WHERE group_id = ${t.groupId} FOR UPDATE`
      yield* t.sql`UPDATE modulo_group.groups SET epoch = epoch + 1 WHERE group_id = ${t.groupId}`
      yield* t.sql`DELETE FROM modulo_group.members WHERE member_id = ${t.memberId}`
      return yield* t.notes
    })),
    (c: Context.Context<never>) => Context.omit(SqlClient.TransactionConnection)(c) as Context.Context<never>
  )

it.live("SET CONSTRAINTS ALL IMMEDIATE after a nested block: the lease is checked there, and the block's locks hold every change off until the app's COMMIT", () =>
  Effect.gen(function*() {
    // 400 ms of lease left, nothing renews it.
    const t = yield* fixture("fence-immediate-after", 400)
    let reaper: Fiber.RuntimeFiber<ReadonlyArray<string>, unknown> | undefined
    const exit = yield* t.sql.withTransaction(Effect.gen(function*() {
      yield* Fenced.fencedWith(t.target, t.insert("fenced"))
      yield* t.sql`SET CONSTRAINTS ALL IMMEDIATE`
      // A change of the group (it would reap the member once its lease is out) queues now.
      reaper = yield* Effect.fork(change(t))
      // The client stalls past the lease (within the backstop of 2 s) before COMMIT.
      yield* Effect.sleep("600 millis")
    })).pipe(Effect.exit)
    // The documented exception: committed, though the lease ran out before COMMIT.
    expect(exit._tag).toBe("Success")
    expect(yield* t.notes).toEqual(["fenced"])
    // The change waited for the app's transaction: it saw the block's write, so it came after it.
    expect(yield* Fiber.join(reaper!)).toEqual(["fenced"])
  }).pipe(Effect.scoped, Effect.provide(PgLive)))

it.live("the control: without it, the app's COMMIT fails once the lease has run out", () =>
  Effect.gen(function*() {
    const t = yield* fixture("fence-immediate-ctl", 400)
    const exit = yield* t.sql.withTransaction(Effect.gen(function*() {
      yield* Fenced.fencedWith(t.target, t.insert("fenced"))
      yield* Effect.sleep("600 millis")
    })).pipe(Effect.exit)
    expect(exit._tag).toBe("Failure")
    expect(JSON.stringify(exit)).toMatch(/MGF01|lease/)
    expect(yield* t.notes).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive)))
