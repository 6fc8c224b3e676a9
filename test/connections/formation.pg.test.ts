/**
 * A burst of joins from many processes (issue 15, "scale"): each process's store found the group's
 * lock busy behind another process's change and backed off blindly, and every join was a change and
 * an epoch of its own, so N processes forming a group took N changes in a row (and N renegotiations
 * of everyone already in). A busy join now leaves a waiting row under the lock shared; the next
 * change, whoever makes it, admits every waiting row in one epoch, and each joiner then takes its
 * index. Stores of their own stand for processes (a store's own changes take turns in the process).
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Layer, Redacted } from "effect"
import * as Notifier from "../../src/internal/pg/notifier.js"
import type { MemberInfo } from "../../src/MembershipStore.js"
import * as Migrations from "../../src/Migrations.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, randomGroupId } from "../support/Database.js"

const info = (name: string): MemberInfo => ({ memberId: crypto.randomUUID(), name, host: "test", pid: 1 })

const N = 16

// A pool wide enough that every join can be in flight at once.
const Wide = Layer.unwrapEffect(
  Effect.sync(() =>
    PgClient.layer({ url: Redacted.make(databaseUrl()), applicationName: "modulo-group-test-formation", maxConnections: N + 2 })
  )
)

it.live(`${N} stores (processes) join one group at once: a few changes admit them all, with distinct indices`, () =>
  Effect.gen(function*() {
    yield* Migrations.run
    const groupId = randomGroupId("formation")
    const steps: Array<string> = []
    // Each change holds the group lock 30 ms before its COMMIT, so that the joins overlap (as they do
    // on a loaded server): without coalescing, each of the N joins is a change of its own, one after
    // another, and the others find the lock busy again and again meanwhile.
    const stores = yield* Effect.forEach(Array.from({ length: N }), () =>
      PgMembershipStore.make({
        statementTimeout: Duration.seconds(2),
        onStatement: (operation, step) =>
          Effect.zipRight(
            Effect.sync(() => steps.push(`${operation}:${step}`)),
            operation === "join" && step === "commit" ? Effect.sleep(Duration.millis(30)) : Effect.void
          )
      }))
    yield* Effect.forEach(
      Array.from({ length: N + 2 }),
      () => Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT pg_sleep(0.05)`),
      { concurrency: "unbounded" }
    )
    const members = stores.map((_, i) => info(`m${i}`))
    const views = yield* Effect.forEach(stores, (store, i) => store.join(groupId, members[i]!, 30_000), {
      concurrency: "unbounded"
    })
    const count = (step: string) => steps.filter((s) => s === `join:${step}`).length
    const changes = count("reassign")
    console.log(`formation: ${N} joins, ${changes} changes, ${count("lock")} lock attempts, ${count("busy")} busy, ${count("share")} shared, ${count("adopt")} adopt steps`)
    // Lock turns: a change per join before; now a burst is admitted by a few.
    expect(changes).toBeLessThanOrEqual(N / 2)
    expect(count("lock")).toBeLessThan(3 * N)
    // Every join got a view; within one epoch, no index twice and every index below the size.
    for (const v of views) expect(v.index).toBeLessThan(v.size)
    const seen = new Set(views.map((v) => `${v.epoch}:${v.index}`))
    expect(seen.size).toBe(N)
    const rows = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
      sql<{ idx: number | null; member_id: string }>`
        SELECT idx, member_id FROM modulo_group.members WHERE group_id = ${groupId} ORDER BY idx`)
    expect(rows.map((r) => r.idx)).toEqual(Array.from({ length: N }, (_, i) => i))
    expect(new Set(rows.map((r) => r.member_id))).toEqual(new Set(members.map((m) => m.memberId)))
    const [g] = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
      sql<{ size: number; epoch: string }>`SELECT size, epoch FROM modulo_group.groups WHERE group_id = ${groupId}`)
    expect(g!.size).toBe(N)
    expect(Number(g!.epoch)).toBe(changes)
  }).pipe(Effect.scoped, Effect.provide(Notifier.layer.pipe(Layer.provideMerge(Wide)))), 60_000)
