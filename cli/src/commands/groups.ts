/**
 * `modulo-group groups`: every group with its epoch and size, read-only.
 *
 * @since 0.1.0
 * @internal
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type { Option } from "effect"
import * as Effect from "effect/Effect"
import * as Database from "../Database.js"
import type { StatusGroup } from "./status.js"
import { bounded, isoOrNull, NOT_INSTALLED, num, printable, printsOnce, schemaReady, table, timeText, writeOut } from "./shared.js"

/**
 * @since 0.1.0
 * @internal
 */
export const renderGroups = (groups: ReadonlyArray<StatusGroup>): string =>
  groups.length === 0
    ? "no groups"
    : table(
      ["GROUP", "EPOCH", "SIZE", "CHANGED"],
      groups.map((g) => [printable(g.groupId), String(g.epoch), String(g.size), timeText(g.changedAt)])
    )

/**
 * Every group row, in one statement.
 *
 * @since 0.1.0
 * @internal
 */
export const allGroups: Effect.Effect<ReadonlyArray<StatusGroup>, SqlError, SqlClient.SqlClient> = Effect.gen(
  function*() {
    const sql = yield* SqlClient.SqlClient
    // Times as milliseconds since the epoch: node-postgres parses timestamp text only in the ISO
    // DateStyle (a database's default of German or SQL read them as null, and this failed).
    const rows = yield* sql<{ group_id: string; epoch: string; size: number; changed_ms: number }>`
      SELECT group_id, epoch, size, (extract(epoch FROM changed_at) OPERATOR(pg_catalog.*) 1000)::float8 AS changed_ms FROM modulo_group.groups ORDER BY group_id`
    return rows.map((r) => ({ groupId: r.group_id, epoch: num(r.epoch), size: num(r.size), changedAt: new Date(num(r.changed_ms)) }))
  }
)

/**
 * @since 0.1.0
 * @internal
 */
export const groups = (options: { readonly json: boolean; readonly databaseUrl: Option.Option<string> }) =>
  Effect.gen(function*() {
    const database = yield* Database.resolve(options.databaseUrl)
    yield* Effect.gen(function*() {
      const installed = yield* bounded("the schema", schemaReady)
      const rows = installed ? yield* bounded("the groups", allGroups) : []
      if (options.json) {
        return yield* writeOut(
          JSON.stringify(rows.map((g) => ({ group: g.groupId, epoch: g.epoch, size: g.size, changedAt: isoOrNull(g.changedAt) })))
        )
      }
      yield* writeOut(installed ? renderGroups(rows) : `no groups: ${NOT_INSTALLED}`)
    }).pipe(Effect.provide(Database.layer(database.url)))
  }).pipe(printsOnce("groups"))

