/**
 * A busy renewal whose connection dies silently holds nobody else back (a review of a first fix of the
 * cross-group stall, docs/operations.md). A busy renewal (a member whose row a change holds renews
 * alone, waiting for the lock) on a connection that died without a FIN or RST never ends (statements
 * are never interrupted, noCancel.ts), so a gate that waited for its statement's end would never open
 * either: that fix's gate stayed
 * closed for good, and the group's members could not renew behind any later hold (all three fenced at
 * +7.8 s). Each busy renewal now waits on its own (only the one whose connection died is lost).
 *
 * Here: three members (default timing but the lease: heartbeat 1 s, lease 12 s, fenceMargin 2 s,
 * statement timeout 2 s), their store through a loopback proxy. A session holds the group's member rows 1.5 s at a time,
 * back to back (20 ms gaps), each below the statement timeout. The first busy renewal that waits for
 * the lock has its connection silently dropped by the proxy (the connection then stays dead).
 */
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Redacted, Scope } from "effect"
import * as net from "node:net"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, randomGroupId } from "../support/Database.js"
import { formThree, holdRows } from "../support/HeldRows.js"
import { makeRecorder } from "../support/Recorder.js"

const holdMs = 1_480
const gapMs = 20
const runMs = 15_000

/** A loopback proxy: once armed, the first connection whose client sends a chunk matching `trap` is dropped silently, for ever. */
const startProxy = (target: { host: string; port: number }) =>
  new Promise<{ port: number; arm: (p: (b: Buffer) => boolean) => void; trapped: () => number; close: () => Promise<void> }>((resolve) => {
    let trap: ((b: Buffer) => boolean) | undefined
    let trapped = 0
    const sockets = new Set<net.Socket>()
    const server = net.createServer((client) => {
      const upstream = net.connect(target.port, target.host)
      sockets.add(client)
      sockets.add(upstream)
      let dead = false
      client.on("data", (chunk: Buffer) => {
        if (dead) return
        if (trap !== undefined && trap(chunk)) {
          trap = undefined
          trapped++
          upstream.write(chunk) // the statement reaches the server; its answer never comes back
          dead = true
          return
        }
        upstream.write(chunk)
      })
      upstream.on("data", (chunk: Buffer) => {
        if (!dead) client.write(chunk)
      })
      client.on("error", () => upstream.destroy())
      upstream.on("error", () => client.destroy())
      client.on("close", () => upstream.destroy())
      upstream.on("close", () => {
        if (!dead) client.destroy()
      })
    })
    server.listen(0, "127.0.0.1", () =>
      resolve({
        port: (server.address() as net.AddressInfo).port,
        arm: (p) => {
          trap = p
        },
        trapped: () => trapped,
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy()
            server.close(() => done())
          })
      }))
  })

const param = (value: string) => Buffer.concat([Buffer.from([0, 0, 0, value.length]), Buffer.from(value, "utf8")])
// A busy renewal that waits for its row lock: `renewLease`'s text with a lock wait of 200 ms (a turn) or
// 500 ms or the statement timeout (2000 ms) of earlier versions; not the 1 ms ones.
const busyRenewal = (b: Buffer) => b.includes("WITH prev AS") && (b.includes(param("200")) || b.includes(param("500")) || b.includes(param("2000")))

it.live("one busy renewal's connection dies silently, then the group's rows are held 1.5 s at a time: the members keep working", () =>
  Effect.gen(function*() {
    const url = new URL(databaseUrl())
    const proxy = yield* Effect.acquireRelease(
      Effect.promise(() => startProxy({ host: url.hostname, port: Number(url.port) })),
      (p) => Effect.promise(() => p.close())
    )
    const proxied = new URL(databaseUrl())
    proxied.port = String(proxy.port)
    const client = PgClient.layer({ url: Redacted.make(proxied.toString()), applicationName: "test-dead-busy-renewal", connectTimeout: "2 seconds" })
    const groupId = randomGroupId("dead-busy")
    const rec = yield* makeRecorder
    yield* Effect.gen(function*() {
      const scope = yield* Scope.make()
      // A lease of 12 s, not the default 10: the member whose renewal is lost can then lose one more
      // to load (a renewal behind the held rows timed out once more in two CI runs on a slow machine,
      // 2026-12-07, and that member fenced at +7.1 and +7.6 s). The gate of the first fix, which kept
      // every member from renewing for good, still fences all three within the run (at about +9.8 s).
      yield* formThree(groupId, rec, scope, { lease: "12 seconds" })
      proxy.arm(busyRenewal)
      const { stops } = yield* holdRows(groupId, rec, { name: "test-dead-busy-locker", runMs, gapMs, holdMs: () => holdMs })
      console.log(`connections dropped: ${proxy.trapped()}; stops: ${JSON.stringify(stops)}`)
      expect(proxy.trapped()).toBe(1)
      expect({ stops, working: rec.working().length }).toEqual({ stops: [], working: 3 })
      expect(rec.violations).toEqual([])
      yield* Scope.close(scope, Exit.void)
    }).pipe(Effect.provide(PgMembershipStore.layer().pipe(Layer.provideMerge(client))))
  }).pipe(Effect.scoped), 120_000)
