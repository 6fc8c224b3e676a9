/**
 * Inside a work run of group A, a `fenced` for a member of group B (several groups in one process, one
 * store). It was first checked against A's run assignment and refused while nothing had moved (a
 * review), then fenced to B's member's current assignment, which a review broke: a daemon of a run
 * that joined a fiber of another group's run carried that run's `Membership` into it and committed its
 * old slice under it (test/fenced/runJoin.pg.test.ts). Now: plain `fenced` of another membership
 * inside a run is refused, saying to pass `assignment`; with `assignment` it commits.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, Layer, Scope } from "effect"
import * as Fenced from "../../src/Fenced.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { waitForEffect } from "../support/Wait.js"

const fast = { heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const
const StoreLive = PgMembershipStore.layerUsingNotifier().pipe(Layer.provideMerge(Notifier.layer), Layer.provideMerge(PgLive))

it.live("inside a run of group A, a plain fenced for a member of group B is refused, saying to pass assignment; with its assignment it commits", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const groupA = randomGroupId("run-other-a")
    const groupB = randomGroupId("run-other-b")
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    // Group B: two members, so its epoch is ahead of A's.
    const b1 = yield* Membership.make({ groupId: groupB, ...fast }).pipe(Scope.extend(scope))
    const b2 = yield* Membership.make({ groupId: groupB, ...fast }).pipe(Scope.extend(scope))
    yield* waitForEffect(
      Effect.zipWith(b1.assignment, b2.assignment, (x, y) => x._tag === "Some" && y._tag === "Some" && x.value.size === 2 && y.value.size === 2),
      "10 seconds",
      "B at size 2"
    )
    const a1 = yield* Membership.make({ groupId: groupA, ...fast }).pipe(Scope.extend(scope))
    const bNow = yield* b1.guard
    // Outside any run: b1's plain fenced commits.
    const outside = yield* Effect.either(Fenced.fenced(sql`SELECT 1`).pipe(Effect.provideService(Membership.Membership, b1)))
    const inside = yield* Deferred.make<readonly [Either.Either<unknown, unknown>, Either.Either<unknown, unknown>]>()
    yield* a1.whileAssigned(() =>
      Effect.gen(function*() {
        // The same write for b1, made from inside A's run: plain, then with b1's assignment.
        const plain = yield* Effect.either(Fenced.fenced(sql`SELECT 1`).pipe(Effect.provideService(Membership.Membership, b1)))
        const given = yield* Effect.either(
          Fenced.fenced(sql`SELECT 1`, { assignment: bNow }).pipe(Effect.provideService(Membership.Membership, b1))
        )
        yield* Deferred.succeed(inside, [plain, given] as const)
        return yield* Effect.never
      })
    )
    const [plain, given] = yield* Deferred.await(inside)
    const bAfter = yield* b1.guard
    expect(bAfter.epoch).toBe(bNow.epoch) // b1 never moved on
    expect(Either.isRight(outside)).toBe(true)
    expect(Either.isLeft(plain) && (plain.left as { _tag?: string })._tag).toBe("StaleAssignment")
    expect(Either.isLeft(plain) && String((plain.left as { reason?: string }).reason)).toMatch(/pass `assignment`/)
    expect(Either.isRight(given)).toBe(true)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)
