/**
 * A server that refuses connections for a while (issue "scale and speed": 64 processes on a server
 * with max_connections = 100): members retry with backoff, say why once each (not per retry), say
 * when they got through, and the group forms once connections are taken again.
 *
 * The refusal is real: the members' role has CONNECTION LIMIT 0 (SQLSTATE 53300, "too many
 * connections for role"), the same error class as "sorry, too many clients already".
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Logger } from "effect"
import { randomBytes } from "node:crypto"
import * as Migrations from "../../src/Migrations.js"
import { databaseUrl, PgLive, randomGroupId } from "../support/Database.js"
import { documentedGrants, serialised } from "../support/Grants.js"
import { formAfterRefusals } from "./support.js"

const lines: Array<string> = []
const capture = Logger.add(Logger.make(({ message }) => {
  lines.push(Array.isArray(message) ? message.join(" ") : String(message))
}))
const count = (re: RegExp) => lines.filter((l) => re.test(l)).length

it.live("connections refused for a while: each member says why once, retries, says when it got through, and the group forms", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* Migrations.run
    const role = `mg_refused_${randomBytes(4).toString("hex")}`
    const password = `pw-${randomBytes(8).toString("hex")}`
    yield* sql.unsafe(`CREATE ROLE "${role}" LOGIN PASSWORD '${password}' CONNECTION LIMIT 0`)
    yield* Effect.addFinalizer(() =>
      Effect.zipRight(sql.unsafe(serialised(`DROP OWNED BY "${role}"`)), sql.unsafe(`DROP ROLE IF EXISTS "${role}"`)).pipe(
        Effect.ignore
      )
    )
    const [{ db }] = (yield* sql<{ db: string }>`SELECT current_database() AS db`) as unknown as [{ db: string }]
    for (const grant of documentedGrants(role)) yield* sql.unsafe(serialised(grant.replace("CURRENT_DATABASE_NAME", `"${db}"`)))
    const url = new URL(databaseUrl())
    url.username = role
    url.password = password
    const violations = yield* formAfterRefusals(
      url.toString(),
      randomGroupId("refused"),
      () => count(/refuses connections/) >= 4,
      sql.unsafe(`ALTER ROLE "${role}" CONNECTION LIMIT 10`)
    )
    expect(violations).toEqual([])
    expect(count(/refuses connections/)).toBe(4)
    expect(count(/join failed|heartbeat failed/)).toBe(0)
    expect(count(/connected to the database again/)).toBe(4)
    // The notification connection (refused too) is said lost at most once, then back.
    expect(count(/notification connection lost/)).toBeLessThanOrEqual(1)
  }).pipe(Effect.scoped, Effect.provide(capture), Effect.provide(PgLive)), 60_000)
