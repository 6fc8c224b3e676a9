/**
 * A store made with \`make\` and never used opens no connection: its warm-up (see \`startWarmUp\` in
 * PgMembershipStore.ts) waits for its first join. It once forked the warm-up as the store was made,
 * which reserved a pool connection at once; against a server that accepts TCP but never answers (a
 * hung server or host, a pooler queueing clients), with an app's pool without a connect timeout, such
 * a store could no longer be closed: the pool's \`end()\` waited for the warm-up's pending connect (an
 * adversarial review). Needs no database.
 */
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Layer, Option } from "effect"
import * as net from "node:net"
import pg from "pg"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"

it.live("a store made against a server that never answers, never used: its scope closes", () =>
  Effect.gen(function*() {
    const sockets: Array<net.Socket> = []
    const server = net.createServer((s) => void sockets.push(s))
    yield* Effect.promise(() => new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r())))
    const port = (server.address() as net.AddressInfo).port
    const program = Effect.gen(function*() {
      const pool = Effect.acquireRelease(
        Effect.sync(() => new pg.Pool({ connectionString: `postgres://postgres@127.0.0.1:${port}/x`, max: 2 })),
        (p) => Effect.promise(() => p.end())
      )
      const ctx = yield* Layer.build(Notifier.layer.pipe(Layer.provideMerge(PgClient.layerFromPool({ acquire: pool }))))
      yield* PgMembershipStore.make({ statementTimeout: Duration.seconds(1) }).pipe(Effect.provide(ctx))
      // The app decides not to start after all (or its start is interrupted): no operation at all.
      yield* Effect.sleep(Duration.millis(200))
    }).pipe(Effect.scoped)
    const fiber = yield* Effect.forkDaemon(program)
    const closed = yield* Fiber.await(fiber).pipe(Effect.timeout(Duration.seconds(10)), Effect.option)
    console.log(`scope closed within 10 s: ${Option.isSome(closed)}; connections the server saw: ${sockets.length}`)
    // Clean up: end the pending connect, so the pool's end() (and the test) can finish.
    for (const so of sockets) so.destroy()
    server.close()
    expect(Option.isSome(closed)).toBe(true)
  }), 60_000)
