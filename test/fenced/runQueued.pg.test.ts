/**
 * A task queue that outlives the runs. Run 1 enqueued a task (a plain `fenced` of run 1's slice) that
 * its consumer had not reached when the change came; run 2's consumer ran it in run 2's fiber, so it
 * fenced to run 2's assignment and committed run 1's slice under epoch 2 (an adversarial review). Now
 * `fenced` notes the run it was built in (run 1's) and refuses to run in another.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, Layer, Queue, Scope } from "effect"
import * as Fenced from "../../src/Fenced.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import type { Assignment } from "../../src/MemberState.js"
import * as Ownership from "../../src/Ownership.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"

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



it.live("a task run 1 queued, run by run 2's consumer, is refused run 1's slice under epoch 2", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("a4-q")
    const t = yield* items(groupId)
    const s1 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(s1, Exit.void))
    const m1 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(s1))
    const tasks = yield* Queue.unbounded<Effect.Effect<void, never, SqlClient.SqlClient | Membership.Membership>>()
    const firstRun = yield* Deferred.make<Assignment>()
    const late = yield* Deferred.make<Either.Either<void, unknown>>()
    let runs = 0
    yield* m1.whileAssigned((assignment) =>
      Effect.gen(function*() {
        const n = runs++
        if (n === 0) {
          yield* Fenced.fenced(t.body("m1-run1", assignment))
          // queued for this run's consumer, which is busy (here: not started) when the change comes
          yield* Queue.offer(tasks, Effect.either(Effect.asVoid(Fenced.fenced(t.body("m1-task", assignment)))).pipe(
            Effect.flatMap((result) => Deferred.succeed(late, result)),
            Effect.asVoid
          ))
          yield* Deferred.succeed(firstRun, assignment)
          return yield* Effect.never
        }
        // each run's consumer drains the queue
        return yield* Effect.forever(Effect.flatten(Queue.take(tasks)))
      })
    ).pipe(Effect.provideService(Membership.Membership, m1))
    const a = yield* Deferred.await(firstRun)
    expect([a.index, a.size]).toEqual([0, 1])
    const s2 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(s2, Exit.void))
    const m2 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(s2))
    yield* m2.whileAssigned((b) => Fenced.fenced(t.body("m2", b))).pipe(Effect.provideService(Membership.Membership, m2))
    const result = yield* Deferred.await(late)
    yield* Effect.sleep("500 millis")
    const twice = yield* t.twice
    expect(Either.isLeft(result) && (result.left as { _tag?: string })._tag).toBe("StaleAssignment")
    expect(twice).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)
