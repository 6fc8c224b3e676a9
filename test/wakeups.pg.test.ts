/**
 * What the PostgreSQL store's wake-ups say (issue 15): a notification's payload, as it came, and
 * whether the store listens for the group's notifications. The member skips a notification whose
 * payload claims only what it knows (test/wakes.test.ts, test/Timing.test.ts) and, while the store
 * listens, polls slowly at the barrier.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Layer, Option, Queue, Stream } from "effect"
import pg from "pg"
import { channelFor } from "../src/internal/pg/constants.js"
import * as Notifier from "../src/internal/pg/notifier.js"
import type { Wakeup } from "../src/MembershipStore.js"
import { MembershipStore } from "../src/MembershipStore.js"
import * as PgMembershipStore from "../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "./support/Database.js"
import { waitFor } from "./support/Wait.js"

const StoreLive = PgMembershipStore.layerUsingNotifier().pipe(Layer.provideMerge(Notifier.layer), Layer.provideMerge(PgLive))

it.live("a wake-up carries its notification's payload and says the store listens; a lost connection says it does not", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const store = yield* MembershipStore
    const hub = yield* Notifier.Notifier
    const groupId = randomGroupId("wakeups")
    const got = yield* Queue.unbounded<Wakeup>()
    yield* Effect.forkScoped(Stream.runForEach(yield* store.wakeups(groupId), (w) => Queue.offer(got, w)))
    yield* waitFor(() => hub.backendPid !== undefined, Duration.seconds(10), "listening")
    // The next wake-up with a payload (the connect's own wake-up has none).
    const next = (match: (w: Wakeup) => boolean) =>
      Queue.take(got).pipe(
        Effect.repeat({ until: match }),
        Effect.timeout(Duration.seconds(10))
      )
    yield* sql`SELECT pg_notify(${channelFor(groupId)}, '7:ready')`
    expect(yield* next((w) => w.payload !== undefined)).toEqual({ payload: "7:ready", listening: true })
    yield* sql`SELECT pg_notify(${channelFor(groupId)}, 'anything at all')`
    expect(yield* next((w) => w.payload !== undefined)).toEqual({ payload: "anything at all", listening: true })
    // The LISTEN connection dies: everyone is woken, told the store no longer listens; then, back,
    // told it does again.
    const pid = hub.backendPid!
    yield* sql`SELECT pg_terminate_backend(${pid})`
    const lost = yield* next((w) => w.listening === false)
    expect(lost.payload).toBeUndefined()
    expect(Option.isSome(Option.fromNullable(lost.lost))).toBe(true)
    const back = yield* next((w) => w.listening === true)
    expect(back.payload).toBeUndefined()
    expect(back.restored).toBe(true)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)

// pg 8 queues a query sent while another is queued and warns that pg 9 will not ("Calling
// client.query() when the client is already executing a query is deprecated"); the LISTEN connection
// gets queries from several places at once (connecting, LISTEN and UNLISTEN as groups come and go,
// the health check). They go one at a time.
it.live("the LISTEN connection is sent one query at a time, however many groups come and go at once", () =>
  Effect.gen(function*() {
    const hub = yield* Notifier.Notifier
    const original = pg.Client.prototype.query
    let open = 0
    let most = 0
    let listens = 0
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        pg.Client.prototype.query = function(this: pg.Client, ...args: Array<unknown>) {
          const mine = (this as unknown as { connectionParameters: { application_name?: string } })
            .connectionParameters.application_name === "modulo-group/listen"
          if (!mine) return (original as (...a: Array<unknown>) => unknown).apply(this, args)
          listens++
          open++
          most = Math.max(most, open)
          const result = (original as (...a: Array<unknown>) => Promise<unknown>).apply(this, args)
          result.then(() => open--, () => open--)
          return result
        } as typeof original
      }),
      () => Effect.sync(() => (pg.Client.prototype.query = original))
    )
    const subscribe = (groupId: string) =>
      Effect.forkScoped(Effect.flatMap(hub.wakeups(groupId), (wakeups) => Stream.runDrain(wakeups)).pipe(Effect.scoped))
    // Eight groups subscribe at once, while the connection is being made.
    const first = yield* Effect.forEach(Array.from({ length: 8 }, () => randomGroupId("inturn")), subscribe)
    yield* waitFor(() => hub.backendPid !== undefined, Duration.seconds(10), "listening")
    // Then four leave and four more come, at once, on the live connection.
    yield* Effect.forEach(first.slice(0, 4), Fiber.interrupt, { concurrency: "unbounded", discard: true })
    yield* Effect.forEach(Array.from({ length: 4 }, () => randomGroupId("inturn")), subscribe)
    yield* waitFor(() => open === 0, Duration.seconds(10), "queries answered")
    expect(listens).toBeGreaterThanOrEqual(12)
    expect(most).toBe(1)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)
