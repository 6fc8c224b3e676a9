/**
 * Against a database that is down, every public operation fails with one of the library's tagged
 * errors: migrations with `DatabaseUnavailable`, store operations with `StoreError`, a fenced
 * transaction with `StoreError` (operation "fenced"); never a raw `SqlError` or a defect.
 */
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Redacted } from "effect"
import * as Fenced from "../../src/Fenced.js"
import * as Migrations from "../../src/Migrations.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, randomGroupId } from "../support/Database.js"
import { startProxy } from "./Proxy.js"

const proxied = Effect.acquireRelease(
  Effect.promise(() => {
    const url = new URL(databaseUrl())
    return startProxy({ host: url.hostname, port: Number(url.port) })
  }),
  (proxy) => Effect.promise(() => proxy.close())
)

/** The failure of `effect`, which must be a failure (not a defect, not an interruption). */
const failureOf = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.exit(effect), (exit) => {
    expect(Exit.isFailure(exit) && exit.cause._tag).toBe("Fail")
    return (exit as Exit.Failure<A, E>).cause._tag === "Fail" ? ((exit as Exit.Failure<A, E>).cause as { error: E }).error : undefined
  })

it.live("with the database gone, migrations fail with DatabaseUnavailable, the store with StoreError, fenced with StoreError", () =>
  Effect.gen(function*() {
    const proxy = yield* proxied
    const url = new URL(databaseUrl())
    url.port = String(proxy.port)
    const client = PgClient.layer({ url: Redacted.make(url.toString()), applicationName: "modulo-group-errors", connectTimeout: "2 seconds" })
    yield* Effect.gen(function*() {
      const store = yield* MembershipStore
      // Works through the proxy first: the layer was built, the schema is there.
      expect(yield* Migrations.installedVersion).toBe(Migrations.schemaVersion)
      proxy.refuse()
      for (const operation of [Migrations.run, Migrations.check, Migrations.repair, Migrations.installedVersion]) {
        const error = yield* failureOf(operation)
        expect(error).toMatchObject({ _tag: "DatabaseUnavailable", cause: { _tag: "SqlError" } })
      }
      expect(yield* failureOf(store.groups)).toMatchObject({ _tag: "StoreError", operation: "groups" })
      const fenced = yield* failureOf(Fenced.fencedWith(
        { groupId: randomGroupId("errors"), memberId: "00000000-0000-0000-0000-000000000000", epoch: 1, index: 0, size: 1 },
        Effect.void
      ))
      expect(fenced).toMatchObject({ _tag: "StoreError", operation: "fenced", cause: { _tag: "SqlError" } })
    }).pipe(Effect.provide(PgMembershipStore.layer().pipe(Layer.provideMerge(client))))
  }).pipe(Effect.scoped), 30_000)
