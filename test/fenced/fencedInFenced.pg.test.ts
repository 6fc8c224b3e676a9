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
import { expect, it } from "@effect/vitest"
import { Effect, Either, Exit, Layer, Scope } from "effect"
import * as Fenced from "../../src/Fenced.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { fixture } from "../fenced/support.js"

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
