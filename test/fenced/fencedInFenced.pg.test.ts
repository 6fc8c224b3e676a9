/**
 * A fenced block inside another fenced block's body (a helper that fences a write to a second group,
 * called from a fenced transaction of the first). The inner block is nested: its end leaves at most
 * its own backstop as the timeouts for the rest of the transaction (Statements.fenceEnd, the fix of
 * an app that froze after a nested block). When the inner timeout was shorter than the outer one,
 * the outer fence's check that its backstop is still in place failed the whole transaction with
 * FenceBroken ("Do not change the timeouts inside fenced"), though nothing had removed it: a tighter
 * non-zero bound is a backstop (a review of that fix; before it, the same calls committed).
 */
import { SqlClient } from "@effect/sql"
import type { Connection } from "@effect/sql/SqlConnection"
import { expect, it } from "@effect/vitest"
import { Effect, Either, Exit, Layer, Scope } from "effect"
import * as Fenced from "../../src/Fenced.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { fixture, proxy } from "./support.js"

it.live("fenced inside fenced, the inner timeout shorter: both commit, as with equal timeouts", () =>
  Effect.gen(function*() {
    const a = yield* fixture("fence-in-fence-outer")
    const b = yield* fixture("fence-in-fence-inner")
    // Same timeouts: commits.
    const same = yield* Effect.either(
      Fenced.fencedWith(a.target, Fenced.fencedWith(b.target, b.insert("same"), { timeout: "2 seconds" }), { timeout: "2 seconds" })
    )
    // Inner (group B) shorter than outer (group A): e.g. two memberships with different statementTimeout,
    // whose default fenced timeout is statementTimeout / 2.
    const shorter = yield* Effect.either(
      Fenced.fencedWith(a.target, Effect.zipRight(Fenced.fencedWith(b.target, b.insert("shorter"), { timeout: "500 millis" }), a.insert("outer")), { timeout: "2 seconds" })
    )
    expect(Either.isRight(same)).toBe(true)
    expect(Either.isRight(shorter)).toBe(true)
    expect([...(yield* b.notes)].sort()).toEqual(["same", "shorter"])
    expect(yield* a.notes).toEqual(["outer"])
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 30_000)

const StoreLive = PgMembershipStore.layerUsingNotifier().pipe(Layer.provideMerge(Notifier.layer), Layer.provideMerge(PgLive))
const timing = { heartbeat: "200 millis", lease: "4 seconds", fenceMargin: "500 millis" } as const

it.live("two memberships (statement timeouts 2 s and 1 s): a plain fenced of B inside a plain fenced of A commits, every time", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const a = yield* Membership.make({ groupId: randomGroupId("fence-in-fence-a"), ...timing, statementTimeout: "2 seconds" }).pipe(Scope.extend(scope))
    const b = yield* Membership.make({ groupId: randomGroupId("fence-in-fence-b"), ...timing, statementTimeout: "1 second" }).pipe(Scope.extend(scope))
    yield* a.awaitAssigned
    yield* b.awaitAssigned
    const inner = Fenced.fenced(sql`SELECT 1`).pipe(Effect.provideService(Membership.Membership, b))
    const outer = Fenced.fenced(Effect.zipRight(inner, sql`SELECT 2`)).pipe(Effect.provideService(Membership.Membership, a))
    const results = []
    for (let i = 0; i < 5; i++) results.push(yield* Effect.either(outer))
    const tags = results.map((r) => (Either.isLeft(r) ? (r.left as { _tag: string })._tag : "committed"))
    expect(tags).toEqual(["committed", "committed", "committed", "committed", "committed"])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)

/**
 * The checks queued by many fenced blocks in one transaction stay linear. Every fence records its
 * target in the transaction, and a fence of its own transaction queues a check again for each one
 * recorded (the blocks nested in its body: its own `SET CONSTRAINTS ALL IMMEDIATE` ran theirs early).
 * A first form of that re-queued every recorded target at every block's end, nested ones too: an
 * app's transaction of k fenced blocks queued k²/2 checks for its COMMIT to run (for 50 blocks of one
 * target, 1,375 rows). Now nested blocks queue only their own, and a target is recorded once.
 */
it.live("50 fenced blocks in one app transaction queue 2 checks each; 50 nested in one fenced body, of one target: its own and that one, once each, at its end", () =>
  Effect.gen(function*() {
    const a = yield* fixture("fence-many-outer")
    const b = yield* fixture("fence-many-inner")
    const sql = a.sql
    const pending = Effect.map(
      sql<{ n: number }>`SELECT count(*)::int AS n FROM modulo_group.fence_checks WHERE tx = txid_current()`,
      (rows) => rows[0]!.n
    )
    const inApp = yield* sql.withTransaction(Effect.gen(function*() {
      for (let i = 0; i < 50; i++) yield* Fenced.fencedWith(b.target, b.insert(`app ${i}`))
      return yield* pending
    }))
    expect(inApp).toBe(100)
    // In a fenced body: the body's 50 nested blocks queue 100, the outer block's SET CONSTRAINTS ALL
    // IMMEDIATE runs them (and its own first), and its end queues B's and its own once each: counted on
    // the transaction's connection just before its COMMIT.
    const atCommit: Array<number> = []
    const counting = proxy(sql, {
      reserve: Effect.map(sql.reserve, (conn) =>
        proxy<Connection>(conn, {
          executeUnprepared: (statement, params, transformRows) =>
            statement.trim().toUpperCase() === "COMMIT"
              ? conn.executeUnprepared("SELECT count(*)::int AS n FROM modulo_group.fence_checks WHERE tx = txid_current()", [], undefined).pipe(
                Effect.tap((rows) => Effect.sync(() => atCommit.push((rows[0] as { n: number }).n))),
                Effect.zipRight(conn.executeUnprepared(statement, params, transformRows))
              )
              : conn.executeUnprepared(statement, params, transformRows)
        }))
    })
    yield* Fenced.fencedWith(
      a.target,
      Effect.gen(function*() {
        for (let i = 0; i < 50; i++) yield* Fenced.fencedWith(b.target, b.insert(`body ${i}`))
      }),
      // 50 blocks of about 8 statements each: more than the default second on a busy machine.
      { timeout: "20 seconds" }
    ).pipe(Effect.provideService(SqlClient.SqlClient, counting))
    expect(atCommit).toEqual([2])
    expect((yield* b.notes).length).toBe(100)
    expect(yield* b.leftovers).toBe(0)
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 60_000)
