/**
 * The fence holds AT COMMIT, and a body cannot quietly undo it (issue 17, items 1 and 3), against
 * real PostgreSQL: a client that stalls between the fence's last statement and `COMMIT` past its
 * lease does not commit; a body that ends the transaction itself or removes the server-side backstop
 * makes `fenced` fail with `FenceBroken` instead of reporting success.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture, stallingBeforeCommit } from "./support.js"

it.live("a client that stalls between the last check and COMMIT past its lease does not commit (StaleAssignment at COMMIT)", () =>
  Effect.gen(function*() {
    const t = yield* fixture("fence-stall")
    // Control: the same stall with a long lease commits.
    const ok = yield* Fenced.fencedWith(t.target, Effect.as(t.insert("control"), "ok")).pipe(
      Effect.provideService(SqlClient.SqlClient, stallingBeforeCommit(t.sql, "600 millis"))
    )
    expect(ok).toBe("ok")
    // The member stopped renewing: 400 ms of lease left. The body and the final lease check are
    // quick and pass; then the client stalls 600 ms before COMMIT, past the lease on the database clock.
    yield* t.setLease(400)
    const error = yield* Fenced.fencedWith(t.target, t.insert("stalled")).pipe(
      Effect.provideService(SqlClient.SqlClient, stallingBeforeCommit(t.sql, "600 millis")),
      Effect.flip
    )
    expect(error._tag).toBe("StaleAssignment")
    expect(error.message).toMatch(/lease expired \d+ ms before COMMIT on the database clock/)
    expect(yield* t.notes).toEqual(["control"])
    expect(yield* t.leftovers).toBe(0)
  }).pipe(Effect.scoped, Effect.provide(PgLive)))

it.live("the commit-time check survives SET CONSTRAINTS ALL IMMEDIATE in the body", () =>
  Effect.gen(function*() {
    const t = yield* fixture("fence-immediate")
    yield* t.setLease(400)
    const error = yield* Fenced.fencedWith(
      t.target,
      Effect.zipRight(t.sql`SET CONSTRAINTS ALL IMMEDIATE`, t.insert("immediate"))
    ).pipe(
      Effect.provideService(SqlClient.SqlClient, stallingBeforeCommit(t.sql, "600 millis")),
      Effect.flip
    )
    expect(error._tag).toBe("StaleAssignment")
    expect(error.message).toMatch(/before COMMIT/)
    expect(yield* t.notes).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive)))

it.live("a COMMIT or ROLLBACK inside the body: fenced fails with FenceBroken, never reports success", () =>
  Effect.gen(function*() {
    const t = yield* fixture("fence-commit-inside")
    const committed = yield* Fenced.fencedWith(
      t.target,
      Effect.all([t.insert("before-commit"), t.sql`COMMIT`, t.insert("after-commit")])
    ).pipe(Effect.flip)
    expect(committed._tag).toBe("FenceBroken")
    expect(committed.message).toMatch(/body ended the transaction/)
    // What ran before the app's COMMIT committed (checked at that COMMIT, the lease being fine); what
    // ran after it ran outside any transaction: both are why fenced must not report success.
    expect(yield* t.notes).toEqual(["after-commit", "before-commit"])

    const rolledBack = yield* Fenced.fencedWith(
      t.target,
      Effect.all([t.insert("rolled-back"), t.sql`ROLLBACK`])
    ).pipe(Effect.flip)
    expect(rolledBack._tag).toBe("FenceBroken")
    expect(yield* t.notes).toEqual(["after-commit", "before-commit"])
    expect(yield* t.leftovers).toBe(0)
  }).pipe(Effect.scoped, Effect.provide(PgLive)))

it.live("a COMMIT inside the body after the lease expired is refused by the commit-time check: nothing committed", () =>
  Effect.gen(function*() {
    const t = yield* fixture("fence-commit-late")
    yield* t.setLease(300)
    const error = yield* Fenced.fencedWith(
      t.target,
      Effect.all([t.insert("late"), t.sql`SELECT pg_sleep(0.5)`, t.sql`COMMIT`]),
      { timeout: "3 seconds" }
    ).pipe(Effect.flip)
    expect(error._tag).toBe("StaleAssignment")
    expect(error.message).toMatch(/before COMMIT/)
    expect(yield* t.notes).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive)))

it.live("RESET ALL or SET statement_timeout inside the body: fenced fails with FenceBroken and commits nothing", () =>
  Effect.gen(function*() {
    const t = yield* fixture("fence-reset")
    const bodies = {
      "RESET ALL": t.sql`RESET ALL`,
      "SET statement_timeout = 0": t.sql`SET statement_timeout = 0`,
      "SET LOCAL idle_in_transaction_session_timeout = 0": t.sql`SET LOCAL idle_in_transaction_session_timeout = 0`,
      "set_config('statement_timeout', '1h', true)": t.sql`SELECT set_config('statement_timeout', '1h', true)`
    }
    for (const [name, change] of Object.entries(bodies)) {
      const error = yield* Fenced.fencedWith(t.target, Effect.zipRight(t.insert(name), change)).pipe(Effect.flip)
      expect(error._tag, name).toBe("FenceBroken")
      expect(error.message, name).toMatch(/(statement_timeout|idle_in_transaction_session_timeout) is .* instead of the fence's/)
    }
    expect(yield* t.notes).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive)))
