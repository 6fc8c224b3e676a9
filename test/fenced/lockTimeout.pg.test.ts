/**
 * An operator's `lock_timeout` (a database's, role's or connection's default) and fenced transactions.
 * docs/fencing.md: `timeout` bounds the whole transaction, lock waits included. An outsider's review
 * found a fenced call failing after 50 ms with "canceling statement due to lock timeout" while a
 * change held the group row for 400 ms, well within its `timeout` of 3 s: the fence set its own
 * statement_timeout and idle_in_transaction_session_timeout, not lock_timeout (failed before).
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import pg from "pg"
import * as Fenced from "../../src/Fenced.js"
import { clientWithOptions, databaseUrl } from "../support/Database.js"
import { fixture } from "./support.js"

/** A client whose every session starts with `lock_timeout = 50ms` (as a database's default would). */
const clientWithLockTimeout = clientWithOptions("-c lock_timeout=50ms", "lock-timeout")

/** Another session holds the group row FOR UPDATE (as a change does) for `ms`, then lets go. */
const holdGroupRow = (groupId: string, ms: number) =>
  Effect.gen(function*() {
    const holder = new pg.Client({ connectionString: databaseUrl() })
    yield* Effect.promise(() => holder.connect())
    yield* Effect.promise(() => holder.query("BEGIN"))
    yield* Effect.promise(() => holder.query("SELECT 1 FROM modulo_group.groups WHERE group_id = $1 FOR UPDATE", [groupId]))
    return yield* Effect.fork(Effect.zipRight(
      Effect.sleep(ms),
      Effect.promise(() => holder.query("ROLLBACK").then(() => holder.end()))
    ))
  })

it.live("under a session lock_timeout of 50 ms, a fenced call waits for a change's lock up to its own timeout and commits; the body's statements keep the session's lock_timeout afterwards", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [s] = yield* sql<{ lt: string }>`SELECT current_setting('lock_timeout') AS lt`
    expect(s!.lt).toBe("50ms")
    const f = yield* fixture("fence-lock-timeout")
    const held = yield* holdGroupRow(f.groupId, 400)
    const exit = yield* Effect.exit(Fenced.fencedWith(f.target, f.insert("waited"), { timeout: "3 seconds" }))
    yield* Fiber.join(held)
    expect(Exit.isSuccess(exit), JSON.stringify(exit).slice(0, 400)).toBe(true)
    expect(yield* f.notes).toEqual(["waited"])
    // Nested in an app's transaction: after the block, the app's own lock_timeout again.
    const after = yield* sql.withTransaction(Effect.gen(function*() {
      yield* Fenced.fencedWith(f.target, f.insert("nested"))
      const [r] = yield* sql<{ lt: string }>`SELECT current_setting('lock_timeout') AS lt`
      return r!.lt
    }))
    expect(after).toBe("50ms")
    expect(yield* f.leftovers).toBe(0)
  }).pipe(Effect.scoped, Effect.provide(clientWithLockTimeout)), 30_000)
