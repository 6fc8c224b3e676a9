/**
 * Shared by the tests of which assignment a work run's `fenced` checks (run*.pg.test.ts, owner*): a
 * membership's timings, a store over the test database, and a table of ten items with a log of the
 * fenced writes to it (`body` writes a slice's items, stamped with the group's epoch at the write;
 * `twice` lists the items written twice in one epoch, which G2 forbids).
 */
import { SqlClient } from "@effect/sql"
import { Effect, Exit, Layer, Scope } from "effect"
import * as Fenced from "../../src/Fenced.js"
import * as Membership from "../../src/Membership.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import type { Assignment } from "../../src/MemberState.js"
import * as Ownership from "../../src/Ownership.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive } from "../support/Database.js"
import { waitForEffect } from "../support/Wait.js"

export const fast = { heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const
export const StoreLive = PgMembershipStore.layerUsingNotifier().pipe(Layer.provideMerge(Notifier.layer), Layer.provideMerge(PgLive))

export const items = (groupId: string) =>
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
    // Plain fenced: the Membership is the context's (inside a run: the run's own member).
    const body = (name: string, slice: Assignment) =>
      sql`INSERT INTO ${sql(written)}
          SELECT id, ${name}, (SELECT epoch FROM modulo_group.groups WHERE group_id = ${groupId}),
                 ${`[${slice.index}/${slice.size}] of epoch ${slice.epoch}`}
            FROM ${sql(table)} WHERE ${Ownership.owned(sql, "id", slice)}`
    const twice = sql<{ id: string; epoch: string; writers: string }>`
      SELECT id, epoch, string_agg(member || ' ' || slice, ', ' ORDER BY member) AS writers
        FROM ${sql(written)} GROUP BY id, epoch HAVING count(*) > 1 ORDER BY id`
    return { sql, body, twice, written }
  })

/**
 * A second member joins the group of `m1` (made with `fast`); once both are at size 2, it writes its
 * slice with `body`, fenced to its own assignment. Its scope closes with the caller's.
 */
export const secondMemberWrites = (
  groupId: string,
  m1: Membership.MembershipService,
  body: (name: string, slice: Assignment) => Effect.Effect<unknown, unknown, never>
) =>
  Effect.gen(function*() {
    const s2 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(s2, Exit.void))
    const m2 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(s2))
    yield* waitForEffect(
      Effect.zipWith(m1.assignment, m2.assignment, (x, y) => x._tag === "Some" && y._tag === "Some" && x.value.size === 2 && y.value.size === 2),
      "10 seconds",
      "both at size 2"
    )
    const b = yield* m2.guard
    yield* Fenced.fenced(body("m2", b), { assignment: b }).pipe(Effect.provideService(Membership.Membership, m2))
    return m2
  })
