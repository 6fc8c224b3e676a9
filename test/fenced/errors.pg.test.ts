/**
 * A fenced transaction fails with the library's tagged errors or the app's own, never with a raw
 * `SqlError` of the fence's statements, BEGIN or COMMIT, and never with a defect for a failed COMMIT.
 */
import { expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture } from "./support.js"

it.live("a COMMIT that fails (an app's deferred constraint) is a StoreError of operation fenced, with the SQLSTATE as its cause", () =>
  Effect.gen(function*() {
    const t = yield* fixture("fence-commit-fails")
    yield* t.sql`ALTER TABLE ${t.sql(t.table)} ADD UNIQUE (note) DEFERRABLE INITIALLY DEFERRED`
    // Both inserts pass; the unique check runs at COMMIT, which the fence sends.
    const exit = yield* Fenced.fencedWith(t.target, Effect.zipRight(t.insert("twice"), t.insert("twice"))).pipe(Effect.exit)
    expect(Exit.isFailure(exit) && exit.cause._tag).toBe("Fail")
    const error = yield* Effect.flip(exit)
    expect(error._tag).toBe("StoreError")
    expect(error).toMatchObject({ operation: "fenced", cause: { _tag: "SqlError", cause: { code: "23505" } } })
    expect(error.message).toMatch(/^modulo-group fenced failed: .*\(23505\)$/)
    expect(yield* t.notes).toEqual([])
    expect(yield* t.leftovers).toBe(0)
  }).pipe(Effect.scoped, Effect.provide(PgLive)))

it.live("a database error of the app's own statement stays the app's error", () =>
  Effect.gen(function*() {
    const t = yield* fixture("fence-app-error")
    const error = yield* Fenced.fencedWith(t.target, t.sql`SELECT 1 / 0`).pipe(Effect.flip)
    expect(error._tag).toBe("SqlError")
    expect(error).toMatchObject({ cause: { code: "22012" } })
    expect(yield* t.leftovers).toBe(0)
  }).pipe(Effect.scoped, Effect.provide(PgLive)))
