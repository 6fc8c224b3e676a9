/**
 * A start whose schema check waits for a lock that another session holds (a migration running, a
 * `LOCK TABLE` on the schema's tables in an open transaction). Found by a review: `join` printed
 * nothing for as long as the lock was held. Now a warning says so after a second, once; the check
 * goes on waiting and the start completes when the lock is released.
 */
import { expect, it } from "@effect/vitest"
import { Effect, Fiber, Layer } from "effect"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { ownDatabase, PgLive } from "../support/Database.js"
import { waitFor } from "../support/Wait.js"
import { capturedLogs, connect, query } from "./support.js"

it.live("a schema check that waits for a lock says so after a second, and completes once the lock is released", () =>
  Effect.gen(function*() {
    // A database of its own: the lock would hold up every other file's start meanwhile.
    const own = yield* ownDatabase("slowcheck", { maxConnections: 2 })
    const db = yield* Layer.build(own.layer)
    yield* PgMembershipStore.prepare().pipe(Effect.provide(db)) // migrated
    const holder = yield* connect(own.url, "mg-slow-check")
    yield* query(holder, "BEGIN")
    yield* query(holder, "LOCK TABLE modulo_group.schema_migrations IN ACCESS EXCLUSIVE MODE")
    const { logs, capture } = capturedLogs()
    const start = yield* Effect.fork(PgMembershipStore.prepare({ migrate: false }).pipe(Effect.provide(db), Effect.provide(capture)))
    yield* waitFor(() => logs.some((l) => /schema check has waited 1 s/.test(l)), "5 seconds", "the warning")
    expect(start.unsafePoll()).toBeNull()
    yield* query(holder, "COMMIT")
    yield* Fiber.join(start)
    expect(logs.filter((l) => /schema check has waited/.test(l))).toHaveLength(1)
  }).pipe(Effect.scoped, Effect.provide(PgLive)))
