import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { randomGroupId, sharedRuntime } from "./support/Database.js"

describe("test database", () => {
  const db = sharedRuntime()
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
