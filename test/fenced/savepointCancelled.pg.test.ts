/**
 * A fenced block nested in an app's transaction whose own `SAVEPOINT` fails, as a stray cancel makes
 * it (an app's interrupted query on the same pool: test/fenced/sharedPoolCancel.pg.test.ts). Found by
 * an adversarial review (2026-12-07): with no savepoint taken, the block's rollback to it failed,
 * which ended the app's connection and made the failure a defect, where `fenced` promises a typed
 * error. The server's side of a cancelled `SAVEPOINT` is made certain here: the statement is replaced
 * by one that fails with the cancel's SQLSTATE (57014), which likewise leaves no savepoint and the
 * transaction aborted. Nothing of the block ran; the app's transaction is the app's to recover.
 */
import { SqlClient } from "@effect/sql"
import type { Connection } from "@effect/sql/SqlConnection"
import { expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Option } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture, proxy } from "./support.js"

const cancelled = `DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '57014', MESSAGE = 'canceling statement due to user request'; END $$`

/** `conn`, answering the fence's `SAVEPOINT` with the error of a cancel. */
const cancellingSavepoint = (conn: Connection, hits: Array<string>): Connection =>
  proxy<Connection>(conn, {
    executeUnprepared: (statement, params, transformRows) =>
      statement.startsWith("SAVEPOINT modulo_group_")
        ? Effect.suspend(() => {
          hits.push(statement)
          return conn.executeUnprepared(cancelled, [], transformRows)
        })
        : conn.executeUnprepared(statement, params, transformRows)
  })

it.live("a nested block whose SAVEPOINT is cancelled fails with a typed error, and the app's transaction is left to the app", () =>
  Effect.gen(function*() {
    const t = yield* fixture("savepoint-cancelled")
    const hits: Array<string> = []
    let fenced: Exit.Exit<unknown, unknown> | undefined = undefined
    const sql = t.sql
    yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`INSERT INTO ${sql(t.table)} (note) VALUES ('outer')`
      yield* sql`SAVEPOINT app_own`
      // The app's transaction's connection (withTransaction provides it; its type does not say so).
      const [conn, depth] = Option.getOrThrow(yield* Effect.serviceOption(SqlClient.TransactionConnection))
      fenced = yield* Effect.exit(
        Fenced.fencedWith(t.target, t.insert("fenced")).pipe(
          Effect.provideService(SqlClient.TransactionConnection, [cancellingSavepoint(conn, hits), depth] as const)
        )
      )
      // The app recovers its transaction from its own savepoint, and commits what it wrote before.
      yield* sql`ROLLBACK TO SAVEPOINT app_own`
    }))
    expect(hits).toHaveLength(1)
    // A typed failure, the cancel's error: never a defect.
    expect(fenced).toBeDefined()
    const exit = fenced!
    expect(Exit.isFailure(exit)).toBe(true)
    const cause = Exit.isFailure(exit) ? exit.cause : Cause.empty
    expect(Cause.isDie(cause)).toBe(false)
    expect(String(Cause.squash(cause))).toContain("canceling statement due to user request")
    // The block wrote nothing; the app's own write committed; no check rows are left.
    expect(yield* t.notes).toEqual(["outer"])
    expect(yield* t.leftovers).toBe(0)
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 60_000)
