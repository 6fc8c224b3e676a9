/**
 * G6, a review of 3186e21: a fence of its own transaction judges a slow COMMIT by its duration against
 * the lease its last check read, on the premise that a lease is never renewed once ended. But a lease
 * does not only run out: a member's busy leave ends its own lease at once, in one statement without
 * the group's lock (`Statements.expireLease`), a no-key UPDATE that the fence's FOR KEY SHARE did not
 * block. Run while the COMMIT wrote the body's notifications (after the commit-time check had read the
 * lease), it ended the lease 0.9-1.4 s before the commit landed, and `fencedWith` reported success (the
 * COMMIT was far shorter than the 60 s the lease had left). Now `expireLease` skips a row a fenced
 * transaction holds (FOR UPDATE SKIP LOCKED: no row, and the leave waits for the group's lock, which
 * waits for that transaction).
 */
import { SqlClient } from "@effect/sql"
import type { Connection } from "@effect/sql/SqlConnection"
import { expect, it } from "@effect/vitest"
import { Context, Effect, Either, Fiber, Ref } from "effect"
import { randomUUID } from "node:crypto"
import * as Fenced from "../../src/Fenced.js"
import * as Statements from "../../src/internal/pg/statements.js"
import { PgLive } from "../support/Database.js"
import { fixture, proxy } from "./support.js"

const attempt = (note: string, notifications: number, expire: boolean) =>
  Effect.gen(function*() {
    const a = yield* fixture("lease-ended-during-commit") // lease 60 s
    const sql = a.sql
    const writer = randomUUID()
    yield* sql`UPDATE modulo_group.members SET writer = ${writer}::uuid WHERE member_id = ${a.memberId}`
    const outside = Effect.mapInputContext((ctx: Context.Context<never>) => Context.omit(SqlClient.TransactionConnection)(ctx))
    const unseenAt = yield* Ref.make<number | undefined>(undefined)
    const endedAt = yield* Ref.make<number | undefined>(undefined)
    const expired = yield* Ref.make<number | undefined>(undefined)
    const poll = Effect.gen(function*() {
      const [row] = yield* sql<{ t: number; seen: boolean }>`
        SELECT (extract(epoch FROM statement_timestamp()) * 1000)::float8 AS t,
               EXISTS (SELECT 1 FROM ${sql(a.table)} WHERE note = ${note}) AS seen`
      if (!row!.seen) yield* Ref.set(unseenAt, row!.t)
      return row!.seen
    }).pipe(Effect.orDie, outside)
    // At COMMIT: observe the write, and (after 150 ms, once the commit-time trigger has read the
    // lease and the notifications are being written) the member's busy leave ends its lease.
    const fibers: Array<Fiber.RuntimeFiber<unknown, unknown>> = []
    const atCommit = Effect.gen(function*() {
      fibers.push(yield* Effect.forkDaemon(
        Effect.repeat(Effect.zipLeft(poll, Effect.sleep("10 millis")), { until: (seen) => seen })
      ))
      if (expire) {
        fibers.push(yield* Effect.forkDaemon(Effect.gen(function*() {
          yield* Effect.sleep("60 millis")
          const rows = yield* Statements.expireLease(sql.withoutTransforms(), a.groupId, a.memberId, writer, null, 1, Number.MAX_SAFE_INTEGER)
          const [t] = yield* sql<{ t: number }>`SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS t`
          // After the UPDATE's own (autocommit) COMMIT: the lease has ended from here on at the latest.
          if (rows.length === 1) yield* Ref.set(endedAt, t!.t)
          yield* Ref.set(expired, rows.length)
        }).pipe(Effect.orDie, outside)))
      }
    })
    const client = proxy(sql, {
      reserve: Effect.map(sql.reserve, (conn) =>
        proxy<Connection>(conn, {
          executeUnprepared: (statement, params, transformRows) =>
            statement.trim().toUpperCase() === "COMMIT"
              ? Effect.zipRight(atCommit, conn.executeUnprepared(statement, params, transformRows))
              : conn.executeUnprepared(statement, params, transformRows)
        }))
    })
    const result = yield* Effect.either(
      Fenced.fencedWith(a.target, Effect.gen(function*() {
        yield* a.insert(note)
        if (notifications > 0) {
          yield* sql`SELECT count(pg_notify('modulo_group_test_expire_at_commit', i::text || repeat('x', 2000)))
                       FROM generate_series(1, ${notifications}::int) i`
        }
      }), { timeout: "5 seconds" }).pipe(Effect.provideService(SqlClient.SqlClient, client))
    )
    for (const f of fibers) yield* Fiber.join(f).pipe(Effect.timeout("30 seconds"), Effect.ignore)
    const [lease] = yield* sql<{ left_ms: number }>`
      SELECT (extract(epoch FROM lease_expires_at - clock_timestamp()) * 1000)::float8 AS left_ms
        FROM modulo_group.members WHERE member_id = ${a.memberId}`
    const unseen = yield* Ref.get(unseenAt)
    const ended = yield* Ref.get(endedAt)
    return {
      ok: Either.isRight(result),
      error: Either.isLeft(result) ? result.left : undefined,
      written: (yield* a.notes).includes(note),
      leaseLeftNowMs: lease?.left_ms,
      expiredRows: yield* Ref.get(expired),
      // > 0: a poll after the lease had been ended still did not see the write (it committed later).
      committedAfterLeaseEndedMs: unseen === undefined || ended === undefined ? undefined : unseen - ended
    }
  }).pipe(Effect.scoped)

it.live("G6: a busy leave does not end the lease of a member whose fenced transaction is committing", () =>
  Effect.gen(function*() {
    const control = yield* attempt("control", 60_000, false)
    expect(control.ok).toBe(true)
    const late = yield* attempt("expired", 60_000, true)
    expect(late.written).toBe(true)
    // fencedWith reports success only for a commit made while the lease was current.
    if (late.ok) expect(late.committedAfterLeaseEndedMs ?? -1).toBeLessThan(0)
    // The leave's statement found the row held by the fence: nothing ended.
    expect(late.expiredRows).toBe(0)
  }).pipe(Effect.provide(PgLive)), 90_000)
