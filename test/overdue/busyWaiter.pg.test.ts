/**
 * A deferred joiner's poll that finds the group's lock busy (another process's change) touches its
 * waiting row on the busy path (found by a review, attack94). That path renewed the row for the
 * joiner's whole lease, not for the overdue threshold a deferred join's row runs out after: a joiner
 * that died right after such a poll (about one poll in three under the review's load) left a row
 * whose promotion held every survivor at the barrier for the rest of that lease (19.8 s of 20 s
 * through the CLI). The busy path now gives the row the overdue threshold plus the store's lock wait.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { waitForEffect } from "../support/Wait.js"
import { fast, StoreLive, withOverdueMember } from "./support.js"

it.live("a waiting joiner's poll that finds the lock busy gives its row no more than the overdue threshold and a lock wait", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const { groupId, join, rec, rowOf } = yield* withOverdueMember("busy-waiter", fast("20 seconds"))
    // Another process's changes: the group's lock held exclusively for 20 ms every 40 ms.
    const flapper = yield* Effect.fork(Effect.forever(
      sql.withTransaction(sql`SELECT pg_advisory_xact_lock(1297040455, hashtext(${groupId})), pg_sleep(0.02)`).pipe(
        Effect.zipRight(Effect.sleep("20 millis"))
      )
    ))
    yield* join("d")
    yield* waitForEffect(Effect.map(rowOf("d"), (r) => r !== undefined && r.index === null), undefined, "d waiting")
    // d's waiting row's lease, sampled while d polls against the busy lock (until c's lease runs out).
    const leaseOfD = Effect.map(
      sql<{ ms: number }>`SELECT (extract(epoch FROM lease_expires_at - heartbeat_at) * 1000)::float8 AS ms
                            FROM modulo_group.members WHERE group_id = ${groupId} AND name = 'd' AND idx IS NULL`,
      (rows) => rows[0]?.ms
    )
    const seen: Array<number> = []
    const until = Date.now() + 1500
    while (Date.now() < until) {
      const ms = yield* leaseOfD
      if (ms !== undefined) seen.push(Math.round(ms))
      yield* Effect.sleep("5 millis")
    }
    yield* Fiber.interrupt(flapper)
    expect(seen.length).toBeGreaterThan(10)
    // Before: about a third of the samples showed the whole lease (here 20 s: c stays overdue, not
    // reaped, however slow the machine).
    expect(Math.max(...seen)).toBeLessThanOrEqual(400 + 750)
    expect(rec.violations).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)
