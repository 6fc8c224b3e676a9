/**
 * A stream (a cursor read chunk by chunk, `sql.stream`) in a fenced body is refused (a review of the
 * refusal of a body's statements once it has ended). `pg-cursor` sends no Sync while the portal is
 * open: the backend waits for the client, "active" in ClientRead, with every lock of the fence, and no
 * server timeout ended it before PostgreSQL 17 (the group's changes waited 6 s and more behind a slow
 * reader, or behind a process that hung with the cursor open; on 17+ the cursor's close on the ended
 * session never returned, and neither did `fenced`). Refused, the body fails at once with the app's
 * `SqlError` saying why; nothing commits and the group's changes are not held.
 */
import { Stream } from "effect"
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture } from "./support.js"

it.live("a stream in a fenced body is refused: the body fails with a SqlError saying so, nothing commits, a change goes through", () =>
  Effect.gen(function*() {
    const t = yield* fixture("stream-refused")
    const sql = t.sql
    const started = Date.now()
    const result = yield* Effect.either(Fenced.fencedWith(
      t.target,
      Effect.gen(function*() {
        yield* t.insert("fenced-write")
        yield* sql.unsafe<{ i: number }>(`SELECT i FROM generate_series(1, 300) i`).stream.pipe(Stream.runDrain)
      }),
      { timeout: "1 second" }
    ))
    expect(result._tag).toBe("Left")
    if (result._tag === "Left") expect(String((result.left as { message?: unknown }).message)).toMatch(/stream .* is refused in a fenced body/)
    expect(Date.now() - started).toBeLessThan(1_000)
    expect(yield* t.notes).toEqual([])
    // The group's lock is free: a change's statement goes through at once.
    yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`SET LOCAL lock_timeout = '500ms'`
      yield* sql`UPDATE modulo_group.groups SET epoch = epoch WHERE group_id = ${t.groupId}`
    }))
  }).pipe(Effect.scoped, Effect.provide(PgLive)))
