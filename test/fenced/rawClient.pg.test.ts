/**
 * G6, a review of the refusal of a fenced body's statements once the body has ended: the body's
 * connection forwarded @effect/sql-pg's raw `pg` client as `pg` (for a nested block's lost savepoint),
 * and whatever reached the database through it was never refused: a fiber the body forked kept the
 * client and wrote after the fence had committed, outside any transaction, under a stale assignment.
 * Now the body's connection carries no client (the library reaches it by a registry of its own, and
 * only while the body runs).
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Fiber, Option } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture } from "./support.js"

it.live("G6: the body's connection carries no pg client: a forked fiber cannot write through one after the fence committed", () =>
  Effect.gen(function*() {
    const t = yield* fixture("raw-client")
    const sql = t.sql
    const late = Effect.gen(function*() {
      const [conn] = Option.getOrThrow(yield* Effect.serviceOption(SqlClient.TransactionConnection))
      const client = (conn as unknown as { readonly pg: { query: (text: string, values: Array<unknown>) => Promise<unknown> } }).pg
      yield* Effect.sleep("400 millis")
      yield* Effect.promise(() =>
        client.query(
          `INSERT INTO ${t.table} (note)
           SELECT 'late: epoch ' || g.epoch || ', lease live ' || (m.lease_expires_at > clock_timestamp())
             FROM modulo_group.groups g LEFT JOIN modulo_group.members m ON m.member_id = $1
            WHERE g.group_id = $2`,
          [t.memberId, t.groupId]
        )
      )
    })
    let forked: Fiber.RuntimeFiber<void, unknown> | undefined
    const result = yield* Effect.either(Fenced.fencedWith(
      t.target,
      Effect.gen(function*() {
        yield* t.insert("fenced-write")
        forked = yield* Effect.forkDaemon(late)
      })
    ))
    expect(result._tag).toBe("Right")
    yield* sql`UPDATE modulo_group.groups SET epoch = 8 WHERE group_id = ${t.groupId}`
    yield* t.setLease(-1000)
    // No client to write through: the fiber fails.
    expect((yield* Fiber.await(forked!))._tag).toBe("Failure")
    const notes = yield* t.notes
    // G6: nothing of the body commits after its assignment is stale.
    expect(notes.filter((n) => n.startsWith("late"))).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive)))
