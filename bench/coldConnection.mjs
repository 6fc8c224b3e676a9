// What a fresh connection's first change costs (issue 15; docs/benchmarks.md "A fresh connection's
// first change"): in one process whose JavaScript has already run joins (so only the server side is
// cold), `rounds` times: a new store over a new pool of one connection (a new server process) is
// built, left `delay` ms (as a process that joins some time after it started: the bench's members
// join long after they are ready), then one member joins (timed: the join call) and leaves, and joins
// and leaves again on the same, now warm, connection (timed). A standing member keeps the group's
// rows there. Prints both series and their medians.
//
//   npm run build
//   DATABASE_URL=postgres://... node bench/coldConnection.mjs [rounds=8] [delay=300]
//
// MODULO_GROUP_LIB: the library to load (default: this tree's dist/), to compare two builds.
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Logger, LogLevel, ManagedRuntime, Redacted } from "effect"
import { randomUUID } from "node:crypto"

const lib = await import(process.env.MODULO_GROUP_LIB ?? new URL("../dist/src/index.js", import.meta.url).href)
const { MembershipStore, PgMembershipStore } = lib
const url = process.env.DATABASE_URL
if (!url) throw new Error("DATABASE_URL is required")
const rounds = Number(process.argv[2] ?? 8)
const delay = Number(process.argv[3] ?? 300)

const runtime = () =>
  ManagedRuntime.make(PgMembershipStore.layer({ migrate: false }).pipe(
    Layer.provideMerge(PgClient.layer({ url: Redacted.make(url), maxConnections: 1, idleTimeout: "1 hour" })),
    Layer.provideMerge(Logger.minimumLogLevel(LogLevel.Error))
  ))
const withStore = (rt, f) => rt.runPromise(Effect.flatMap(MembershipStore.MembershipStore, f))
const group = `cold-connection-${randomUUID()}`
const info = () => ({ memberId: randomUUID(), name: "bench", host: "here", pid: process.pid })
const joinAndLeave = async (rt) => {
  const m = info()
  const t0 = performance.now()
  await withStore(rt, (s) => s.join(group, m, 60_000))
  const ms = performance.now() - t0
  await withStore(rt, (s) => s.leave(group, m.memberId))
  return ms
}

const standing = runtime()
const s0 = info()
await withStore(standing, (s) => s.join(group, s0, 60_000))
// The process's JavaScript warm: what follows differs only in the server process.
for (let i = 0; i < 3; i++) await joinAndLeave(standing)

const cold = []
const warm = []
for (let i = 0; i < rounds; i++) {
  const rt = runtime()
  await withStore(rt, () => Effect.void)
  await new Promise((r) => setTimeout(r, delay))
  cold.push(await joinAndLeave(rt))
  warm.push(await joinAndLeave(rt))
  await rt.dispose()
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const line = (name, xs) => `${name}: ${xs.map((x) => x.toFixed(1)).join(" ")} ms; median ${median(xs).toFixed(1)} ms`
console.log(line("first join on a new connection", cold))
console.log(line("second join on it", warm))
await withStore(standing, (s) => s.leave(group, s0.memberId))
await standing.dispose()
