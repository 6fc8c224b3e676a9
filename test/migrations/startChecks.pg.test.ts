/**
 * The schema check every start makes (`Migrations.run` with `migrate: true`, `Migrations.check`
 * otherwise; the CLI's `join` before its first event): on a current schema two statements, the
 * catalog scan (which also tells whether the migrations table exists) and the recorded version.
 * Three before (a scan of pg_tables for the migrations table first), the first of them the dearest
 * on a new connection. What each finds is as before: a database without the schema is version 0, a
 * dropped column is named.
 *
 * Statements are counted as @effect/sql's `sql.execute` spans.
 */
import { expect, it } from "@effect/vitest"
import { SqlClient } from "@effect/sql"
import { Effect, Exit, Layer, Tracer } from "effect"
import pg from "pg"
import { SchemaMismatch } from "../../src/MembershipError.js"
import * as Migrations from "../../src/Migrations.js"
import { ownDatabase, PgLive } from "../support/Database.js"

/** Runs `self`, and how many statements it sent. */
const counted = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const base = yield* Effect.tracer
    let statements = 0
    const tracer = Tracer.make({
      span: (name, parent, context, links, startTime, kind, options) => {
        if (name === "sql.execute") statements++
        return base.span(name, parent, context, links, startTime, kind, options)
      },
      context: (f, fiber) => base.context(f, fiber)
    })
    const exit = yield* Effect.exit(Effect.withTracer(self, tracer))
    return { exit, statements }
  })

const exec = (url: string, text: string) =>
  Effect.promise(async () => {
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    try {
      await client.query(text)
    } finally {
      await client.end()
    }
  })

it.live("a start on a current schema checks it in two statements, and finds what it found before", () =>
  Effect.gen(function*() {
    const db = yield* ownDatabase("startchk", { maxConnections: 1 })
    const dbContext = yield* Layer.build(db.layer)
    const inDb = <A, E>(self: Effect.Effect<A, E, SqlClient.SqlClient>) => Effect.provide(self, dbContext)

    // No schema yet: version 0, found in one statement (no migrations table, so no version to read).
    const empty = yield* inDb(counted(Migrations.check))
    expect(empty.statements).toBe(1)
    expect(empty.exit).toEqual(Exit.fail(new SchemaMismatch({ found: 0, expected: Migrations.schemaVersion })))

    yield* inDb(Migrations.run)
    const run = yield* inDb(counted(Migrations.run))
    expect(run.exit).toEqual(Exit.succeed([]))
    expect(run.statements).toBe(2)
    const check = yield* inDb(counted(Migrations.check))
    expect(Exit.isSuccess(check.exit)).toBe(true)
    expect(check.statements).toBe(2)
    const repair = yield* inDb(counted(Migrations.repair))
    expect(repair.exit).toEqual(Exit.succeed({ applied: [], missing: [] }))
    expect(repair.statements).toBe(2)

    // A dropped column is still named, by `check` and by `run` (which does not repair it).
    yield* exec(db.url, "ALTER TABLE modulo_group.groups DROP COLUMN incarnation")
    const damaged = yield* inDb(Migrations.check.pipe(Effect.flip))
    expect(damaged.message).toContain("column modulo_group.groups.incarnation")
    const runDamaged = yield* inDb(Migrations.run.pipe(Effect.flip))
    expect(runDamaged.message).toContain("column modulo_group.groups.incarnation")
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 60_000)
