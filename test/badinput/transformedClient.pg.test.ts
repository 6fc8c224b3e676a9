/**
 * An app's `PgClient` with name transforms (`transformResultNames: String.snakeToCamel`,
 * `transformQueryNames: String.camelToSnake`, as @effect/sql's examples make one). The library runs its
 * SQL on the app's `SqlClient` and reads its rows by their own column names. An adversarial review,
 * before the library's statements ran on `sql.withoutTransforms()`:
 *  - `PgMembership.layer` refused to start with a false `SchemaMismatch` (every table "missing" from a
 *    complete, current schema: `table_name` came back as `tableName`);
 *  - over `PgMembershipStore.make` (no schema check) a member joined, then every renewal failed after
 *    its UPDATE had committed ("Cannot convert undefined to a BigInt"): the member was fenced and never
 *    worked again, while its lease was renewed every heartbeat and it held its index;
 *  - a nested `fenced` block dropped the app's tighter `statement_timeout` (it read the old value as
 *    undefined and put the backstop in its place).
 * The app's own statements keep its transforms.
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Effect, Layer, Redacted, String as Str } from "effect"
import * as Fenced from "../../src/Fenced.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import * as MembershipConfig from "../../src/MembershipConfig.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembership from "../../src/PgMembership.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, randomGroupId } from "../support/Database.js"

const fast = { heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const
const camelClient = () =>
  PgClient.layer({ url: Redacted.make(databaseUrl()), transformResultNames: Str.snakeToCamel, transformQueryNames: Str.camelToSnake })

it.live("PgMembership.layer over a client with name transforms starts (no false SchemaMismatch) and works under fenced", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("camel")
    const result = yield* Effect.gen(function*() {
      const m = yield* Membership.Membership
      const a = yield* m.awaitAssigned
      const sql = yield* SqlClient.SqlClient
      // The app's statement inside the block keeps the app's transform.
      const rows = yield* Fenced.fenced(sql<{ someColumn: number }>`SELECT 1 AS some_column`, { assignment: a })
      return { size: a.size, rows }
    }).pipe(
      Effect.provide(PgMembership.layer({ groupId, ...fast }).pipe(Layer.provideMerge(camelClient()))),
      Effect.scoped,
      Effect.timeout("10 seconds")
    )
    expect(result).toEqual({ size: 1, rows: [{ someColumn: 1 }] })
  }), 30_000)

it.live("over PgMembershipStore.make and such a client, a member keeps working past its lease", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("camel-make")
    const config = yield* MembershipConfig.make({ groupId, ...fast })
    const Store = Layer.effect(MembershipStore, PgMembershipStore.make()).pipe(Layer.provideMerge(Notifier.layer))
    const M = Membership.layer.pipe(
      Layer.provide(Layer.mergeAll(Store, Layer.succeed(MembershipConfig.MembershipConfig, config))),
      Layer.provide(PgMembership.nodeIdentity)
    )
    const result = yield* Effect.gen(function*() {
      const m = yield* Membership.Membership
      yield* m.awaitAssigned
      // Longer than the lease: only renewals that came back keep it Assigned. Before: Fenced, its row live.
      yield* Effect.sleep("3 seconds")
      return (yield* m.state)._tag
    }).pipe(Effect.provide(M), Effect.scoped, Effect.timeout("15 seconds"))
    expect(result).toBe("Assigned")
  }).pipe(Effect.provide(camelClient())), 30_000)

it.live("a nested fenced block over such a client keeps the app's tighter statement_timeout", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("camel-nested")
    const result = yield* Effect.gen(function*() {
      const m = yield* Membership.Membership
      const a = yield* m.awaitAssigned
      const sql = yield* SqlClient.SqlClient
      return yield* sql.withTransaction(Effect.gen(function*() {
        yield* sql`SET LOCAL statement_timeout = '300ms'`
        yield* Fenced.fenced(sql`SELECT 1`, { assignment: a })
        const [row] = yield* sql<{ statementTimeout: string }>`SELECT current_setting('statement_timeout') AS statement_timeout`
        return row!.statementTimeout
      }))
    }).pipe(
      Effect.provide(PgMembership.layer({ groupId, ...fast }).pipe(Layer.provideMerge(camelClient()))),
      Effect.scoped,
      Effect.timeout("10 seconds")
    )
    // Before: "1500ms" (the backstop, timeout 500 ms + 1 s, in place of the app's value).
    expect(result).toBe("300ms")
  }), 30_000)
