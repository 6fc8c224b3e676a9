import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import pg from "pg"
import * as Migrations from "../src/Migrations.js"
import { databaseUrl, randomGroupId, sharedRuntime } from "./support/Database.js"
import { serialised } from "./support/Grants.js"

const db = sharedRuntime()

describe("test database", () => {
  it.effect("answers SELECT version()", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const rows = yield* sql<{ version: string }>`SELECT version()`
      expect(rows[0]?.version).toMatch(/^PostgreSQL \d+/)
    }).pipe(Effect.provide(db)))

  it.effect("is the one globalSetup chose, also exposed to child processes", () =>
    Effect.sync(() => {
      expect(process.env["DATABASE_URL_RESOLVED"]).toMatch(/^postgres(ql)?:\/\//)
    }))
})

it("randomGroupId gives distinct, prefixed ids", () => {
  const a = randomGroupId("infra")
  expect(a).toMatch(/^test-infra-[0-9a-f]{12}$/)
  expect(randomGroupId("infra")).not.toBe(a)
})

// Test files grant on the same schema in parallel; bare, eight of these at once fail with "tuple
// concurrently updated" in the first round on PostgreSQL 15 (a flake of test/fenced/isolation.pg).
it("grants and revokes on one object from many connections at once, serialised, all succeed", async () => {
  // The schema it grants on: no other file need have created it yet (a fresh embedded server).
  await db.runPromise(Migrations.run)
  const roles = Array.from({ length: 8 }, () => randomGroupId("grant").replace(/-/g, "_"))
  const clients = roles.map(() => new pg.Client({ connectionString: databaseUrl() }))
  await Promise.all(clients.map((c) => c.connect()))
  try {
    for (const role of roles) await clients[0]!.query(`CREATE ROLE "${role}"`)
    const failures: Array<string> = []
    for (let round = 0; round < 10; round++) {
      const results = await Promise.allSettled(clients.map(async (c, i) => {
        await c.query(serialised(`GRANT USAGE ON SCHEMA modulo_group TO "${roles[i]}"`))
        await c.query(serialised(`GRANT SELECT ON modulo_group.groups, modulo_group.members TO "${roles[i]}"`))
        await c.query(serialised(`REVOKE ALL ON modulo_group.groups, modulo_group.members FROM "${roles[i]}"`))
        await c.query(serialised(`REVOKE ALL ON SCHEMA modulo_group FROM "${roles[i]}"`))
      }))
      for (const r of results) if (r.status === "rejected") failures.push(String(r.reason))
    }
    expect(failures).toEqual([])
  } finally {
    for (const role of roles) {
      await clients[0]!.query(serialised(`DROP OWNED BY "${role}"`)).catch(() => undefined)
      await clients[0]!.query(`DROP ROLE IF EXISTS "${role}"`)
    }
    await Promise.all(clients.map((c) => c.end()))
  }
})
