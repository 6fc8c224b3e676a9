/**
 * An assignment names the membership that handed it out (`owner`). A daemon of group G's run joined a
 * fiber of group H's run, which carried H's `Membership` into it (Effect hands a joined fiber's context
 * to the joiner); its plain `fenced` was refused, saying to pass `assignment`; with its own run's
 * assignment, which matched H's member's numbers (epoch 1, [0/1]), it fenced G's old slice against H's
 * member and committed after G had moved on (an adversarial review). Now refused: not this membership's.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, Fiber, Layer, Scope } from "effect"
import * as Fenced from "../../src/Fenced.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import type { Assignment } from "../../src/MemberState.js"
import * as Ownership from "../../src/Ownership.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { waitForEffect } from "../support/Wait.js"

const fast = { heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const
const StoreLive = PgMembershipStore.layerUsingNotifier().pipe(Layer.provideMerge(Notifier.layer), Layer.provideMerge(PgLive))

const items = (groupId: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const table = `items_${groupId.replace(/-/g, "_")}`
    const written = `${table}_w`
    yield* Effect.acquireRelease(
      Effect.zipRight(
        sql`CREATE TABLE ${sql(table)} (id bigint PRIMARY KEY)`,
        sql`CREATE TABLE ${sql(written)} (id bigint, member text, epoch bigint, slice text)`
      ).pipe(Effect.zipRight(sql`INSERT INTO ${sql(table)} SELECT generate_series(0, 9)`)),
      () => Effect.orDie(Effect.zipRight(sql`DROP TABLE IF EXISTS ${sql(table)}`, sql`DROP TABLE IF EXISTS ${sql(written)}`))
    )
    const body = (name: string, slice: Assignment) =>
      sql`INSERT INTO ${sql(written)}
          SELECT id, ${name}, (SELECT epoch FROM modulo_group.groups WHERE group_id = ${groupId}),
                 ${`[${slice.index}/${slice.size}] of epoch ${slice.epoch}`}
            FROM ${sql(table)} WHERE ${Ownership.owned(sql, "id", slice)}`
    const twice = sql<{ id: string; epoch: string; writers: string }>`
      SELECT id, epoch, string_agg(member || ' ' || slice, ', ' ORDER BY member) AS writers
        FROM ${sql(written)} GROUP BY id, epoch HAVING count(*) > 1 ORDER BY id`
    return { sql, body, twice }
  })

it.live("G's daemon that joined H's run fiber, with { assignment } of its own run, is refused (the assignment is G's, not H's)", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("a4-g")
    const otherGroup = randomGroupId("a4-h")
    const t = yield* items(groupId)
    const s1 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(s1, Exit.void))
    const m1 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(s1))
    const h = yield* Membership.make({ groupId: otherGroup, ...fast }).pipe(Scope.extend(s1))
    const fromH = yield* Deferred.make<Fiber.RuntimeFiber<void>>()
    yield* h.whileAssigned(() =>
      Effect.gen(function*() {
        const f = yield* Effect.forkDaemon(Effect.void)
        yield* Deferred.succeed(fromH, f)
        return yield* Effect.never
      })
    ).pipe(Effect.provideService(Membership.Membership, h))
    const firstRun = yield* Deferred.make<Assignment>()
    const go = yield* Deferred.make<void>()
    const late = yield* Deferred.make<Either.Either<void, unknown>>()
    let runs = 0
    yield* m1.whileAssigned((assignment) =>
      Effect.gen(function*() {
        if (runs++ > 0) return yield* Effect.never
        yield* Fenced.fenced(t.body("m1-run", assignment))
        yield* Effect.forkDaemon(
          Effect.gen(function*() {
            yield* Deferred.await(go)
            yield* Fiber.join(yield* Deferred.await(fromH))
            // As the refusal says: pass `assignment` (the one the slice was taken from).
            return yield* Effect.either(Effect.asVoid(Fenced.fenced(t.body("m1-daemon", assignment), { assignment })))
          }).pipe(Effect.flatMap((result) => Deferred.succeed(late, result)))
        )
        yield* Deferred.succeed(firstRun, assignment)
        return yield* Effect.never
      })
    ).pipe(Effect.provideService(Membership.Membership, m1))
    const a = yield* Deferred.await(firstRun)
    const hNow = yield* h.awaitAssigned
    // The attack's condition: H's member has the same numbers as G's run.
    expect([hNow.epoch, hNow.index, hNow.size]).toEqual([a.epoch, a.index, a.size])
    const s2 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(s2, Exit.void))
    const m2 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(s2))
    yield* waitForEffect(
      Effect.zipWith(m1.assignment, m2.assignment, (x, y) => x._tag === "Some" && y._tag === "Some" && x.value.size === 2 && y.value.size === 2),
      "10 seconds",
      "both at size 2"
    )
    const b = yield* m2.guard
    yield* Fenced.fenced(t.body("m2", b), { assignment: b }).pipe(Effect.provideService(Membership.Membership, m2))
    yield* Deferred.succeed(go, undefined)
    const result = yield* Deferred.await(late)
    const twice = yield* t.twice
    expect(Either.isLeft(result) && (result.left as { _tag?: string })._tag).toBe("StaleAssignment")
    expect(twice).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)
