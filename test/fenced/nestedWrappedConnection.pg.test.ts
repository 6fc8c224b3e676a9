/**
 * G6, a review of 6435ba0 (the checks of blocks nested in a fenced body queued again at its end): a
 * nested block found the fenced body it ran in by the identity of the fiber's transaction connection,
 * and handed its targets over in the process. An app that wraps that connection in the body (a
 * statement logger, a tracing proxy) hid the body: the nested block of group B handed nothing over,
 * A's `SET CONSTRAINTS ALL IMMEDIATE` ran B's checks early, and A's COMMIT, with the client stalled
 * 700 ms, committed B's write ~400 ms past B's lease. Now every fence records its target in the
 * transaction (`Statements.fencedTargetsSetting`, undone with a rolled-back savepoint) and a fence's
 * last statement queues a check for every target recorded; the body is found through the context too.
 *
 * Interleaving: A's lease 60 s, B's 400 ms. A: BEGIN, steps 1-4; body, through the app's wrapper:
 * SAVEPOINT, B's steps 1-4, B's write, B's fenceEnd (live); A's SET CONSTRAINTS ALL IMMEDIATE (B's
 * checks run now, live); A's fenceEnd; the client stalls 700 ms before COMMIT (B's lease ends, read on
 * another connection); COMMIT.
 *
 * Control: the same without the wrapper fails at COMMIT (MGF01), nothing of B committed.
 */
import { SqlClient } from "@effect/sql"
import type { Connection } from "@effect/sql/SqlConnection"
import { expect, it } from "@effect/vitest"
import { Effect, Either, Option } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture, proxy, stallingThenReading } from "./support.js"


/** An app's statement logger: the transaction's connection, every statement counted on its way. */
const logged = (statements: Array<string>) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.flatMap(Effect.serviceOption(SqlClient.TransactionConnection), (current) => {
    if (Option.isNone(current)) return effect
    const [conn, depth] = current.value
    const wrapped = proxy<Connection>(conn, {
      execute: (sql, params, transformRows) => {
        statements.push(sql)
        return conn.execute(sql, params, transformRows)
      },
      executeUnprepared: (sql, params, transformRows) => {
        statements.push(sql)
        return conn.executeUnprepared(sql, params, transformRows)
      }
    })
    return Effect.provideService(effect, SqlClient.TransactionConnection, [wrapped, depth] as const)
  })

const run = (withLogger: boolean) =>
  Effect.gen(function*() {
    const a = yield* fixture(withLogger ? "wrap-outer" : "wrap-outer-ctl")
    const b = yield* fixture(withLogger ? "wrap-inner" : "wrap-inner-ctl")
    const sql = a.sql
    const { client: stalling, leaseAtCommit } = stallingThenReading(sql, "700 millis", b.memberId)
    const statements: Array<string> = []
    const helper = Fenced.fencedWith(b.target, b.insert("in fenced body"), { timeout: "3 seconds" })
    yield* b.setLease(400)
    const result = yield* Effect.either(
      Fenced.fencedWith(
        a.target,
        Effect.zipRight(withLogger ? logged(statements)(helper) : helper, a.insert("outer")),
        { timeout: "3 seconds" }
      ).pipe(Effect.provideService(SqlClient.SqlClient, stalling))
    )
    const nestedNotes = yield* b.notes
    yield* Effect.logInfo(
      `logger: ${withLogger}; B's lease at COMMIT: ${leaseAtCommit[0]} ms; outer: ${
        Either.isRight(result) ? "committed" : (result.left as { _tag: string })._tag
      }; B's rows: ${JSON.stringify(nestedNotes)}; statements logged: ${statements.length}`
    )
    return { leaseAtCommit, nestedNotes, result }
  }).pipe(Effect.scoped)

it.live("G6: a nested fenced block under an app's wrapper of the body's connection: the outer COMMIT checks it, nothing past its lease", () =>
  Effect.gen(function*() {
    const { leaseAtCommit, nestedNotes } = yield* run(true)
    // The COMMIT was sent after B's lease had ended on the database clock...
    expect(leaseAtCommit.length).toBe(1)
    expect(leaseAtCommit[0]!).toBeLessThan(0)
    // ... so nothing fenced for B may be committed (on 6435ba0: B's write committed ~300 ms past B's lease).
    expect(nestedNotes).toEqual([])
  }).pipe(Effect.provide(PgLive)), 30_000)

it.live("control: the same without the wrapper fails at COMMIT, nothing of B committed", () =>
  Effect.gen(function*() {
    const { leaseAtCommit, nestedNotes, result } = yield* run(false)
    expect(leaseAtCommit[0]!).toBeLessThan(0)
    expect(Either.isLeft(result)).toBe(true)
    expect(nestedNotes).toEqual([])
  }).pipe(Effect.provide(PgLive)), 30_000)
