/**
 * Which assignment a plain `fenced(effect)` (no `assignment` option) is checked against. An
 * adversarial review: it fenced to whatever assignment was current when it was called, not to the one
 * its body's SQL was written for, so a write of an older assignment's slice committed under the newer
 * epoch and two members wrote one item in one epoch. Inside a work run it now fences to the run's own
 * assignment, also in a fiber the run forked that outlives it; outside any run the app must pass
 * `assignment` (docs/fencing.md, "Which assignment").
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, Layer, Scope } from "effect"
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

/**
 * Items 0-9, and a table of who wrote which item, in which epoch of the group (read in the fenced
 * transaction, which holds the group row: the epoch it commits in) and for which slice; dropped at
 * scope end.
 */
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
    /** `name` writes every item of `slice` (a fenced transaction, with `options`). */
    const write = (name: string, m: Membership.MembershipService, slice: Assignment, options?: Fenced.FencedOptions) =>
      Fenced.fenced(
        sql`INSERT INTO ${sql(written)}
            SELECT id, ${name}, (SELECT epoch FROM modulo_group.groups WHERE group_id = ${groupId}),
                   ${`[${slice.index}/${slice.size}] of epoch ${slice.epoch}`}
              FROM ${sql(table)} WHERE ${Ownership.owned(sql, "id", slice)}`,
        options
      ).pipe(Effect.provideService(Membership.Membership, m))
    /** Items written more than once in one epoch, with their writers (G1/G2 for fenced writes). */
    const twice = sql<{ id: string; epoch: string; writers: string }>`
      SELECT id, epoch, string_agg(member || ' ' || slice, ', ' ORDER BY member) AS writers
        FROM ${sql(written)} GROUP BY id, epoch HAVING count(*) > 1 ORDER BY id`
    const writers = Effect.map(
      sql<{ member: string }>`SELECT DISTINCT member FROM ${sql(written)} ORDER BY member`,
      (rows) => rows.map((r) => r.member)
    )
    return { sql, write, twice, writers }
  })

const bothAtSize2 = (m1: Membership.MembershipService, m2: Membership.MembershipService) =>
  waitForEffect(
    Effect.zipWith(m1.assignment, m2.assignment, (x, y) => x._tag === "Some" && y._tag === "Some" && x.value.size === 2 && y.value.size === 2),
    "10 seconds",
    "both at size 2"
  )

it.live("inside a work run, plain fenced fences to the run's assignment: a fiber it forked that outlives the run does not commit its old slice under the next epoch", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("fence-run-assignment")
    const t = yield* items(groupId)
    const s1 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(s1, Exit.void))
    const m1 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(s1))
    const firstRun = yield* Deferred.make<Assignment>()
    const go = yield* Deferred.make<void>()
    const late = yield* Deferred.make<Either.Either<void, unknown>>()
    // m1's work: in its first run ([0/1], every item its own), a plain fenced write (commits), and a
    // fiber forked to write the same slice later (a daemon: the run's interruption does not stop it).
    let runs = 0
    yield* m1.whileAssigned((assignment) =>
      Effect.gen(function*() {
        if (runs++ > 0) return yield* Effect.never
        yield* t.write("m1-run", m1, assignment)
        yield* Effect.forkDaemon(
          Effect.zipRight(Deferred.await(go), Effect.either(Effect.asVoid(t.write("m1-daemon", m1, assignment)))).pipe(
            Effect.flatMap((result) => Deferred.succeed(late, result))
          )
        )
        yield* Deferred.succeed(firstRun, assignment)
        return yield* Effect.never
      })
    )
    const a = yield* Deferred.await(firstRun)
    expect([a.index, a.size]).toEqual([0, 1])
    // m2 joins: m1's run is interrupted, both work [k/2] in the next epoch.
    const s2 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(s2, Exit.void))
    const m2 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(s2))
    yield* bothAtSize2(m1, m2)
    const b = yield* m2.guard
    yield* t.write("m2", m2, b, { assignment: b })
    // Now the forked fiber writes its run's slice with plain fenced.
    yield* Deferred.succeed(go, undefined)
    const result = yield* Deferred.await(late)
    console.log(`the forked fiber's plain fenced, [0/1] of epoch ${a.epoch} after epoch ${(yield* m1.guard).epoch}: ${JSON.stringify(result)}`)
    expect(Either.isLeft(result) && (result.left as { _tag?: string })._tag).toBe("StaleAssignment")
    expect(yield* t.twice).toEqual([])
    expect(yield* t.writers).toEqual(["m1-run", "m2"])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)

it.live("outside any run, fenced with the assignment the slice was taken from refuses it once the member has moved on", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("fence-outside-run")
    const t = yield* items(groupId)
    const s1 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(s1, Exit.void))
    const m1 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(s1))
    const a = yield* m1.awaitAssigned // [0/1]: every item is m1's
    yield* t.write("m1-then", m1, a, { assignment: a })
    const s2 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(s2, Exit.void))
    const m2 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(s2))
    yield* bothAtSize2(m1, m2)
    const stale = yield* Effect.flip(t.write("m1-late", m1, a, { assignment: a }))
    expect(stale._tag).toBe("StaleAssignment")
    expect(yield* t.writers).toEqual(["m1-then"])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)
