/**
 * A member on a connection whose transactions are read-only by default (default_transaction_read_only
 * in the connection's options, for the role or for the database): every join failed with PostgreSQL's
 * "cannot execute SELECT in a read-only transaction", which does not say where the setting comes from
 * (an adversarial review of operator settings). The store's error now says it.
 */
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, randomGroupId } from "../support/Database.js"

it.live("a join on a read-only connection fails naming default_transaction_read_only", () =>
  Effect.gen(function*() {
    const store = yield* PgMembershipStore.make({ migrate: false })
    const failed = yield* Effect.flip(
      store.join(randomGroupId("read-only"), { memberId: crypto.randomUUID(), name: "ro", host: "h", pid: 1 }, 10_000)
    )
    expect(failed.message).toMatch(/read-only transaction \(25006\): this connection's transactions are read-only \(default_transaction_read_only/)
  }).pipe(
    Effect.scoped,
    Effect.provide(Notifier.layer.pipe(Layer.provideMerge(Layer.fresh(PgClient.layer({
      url: Redacted.make((() => {
        const url = new URL(databaseUrl())
        url.searchParams.set("options", "-c default_transaction_read_only=on")
        return url.toString()
      })())
    }))))))
  , 30_000)
