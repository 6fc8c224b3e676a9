// Reproduces the stall behind modulo-group's slow formation (see docs/benchmarks.md, findings):
// with @effect/sql-pg 0.53, a client-side timeout on a query cancels it with
// `pool.query("SELECT pg_cancel_backend(pid)")`, i.e. through the same pool, capped at 5 s. When every
// pooled connection is a transaction parked on a lock, the cancel cannot get a connection, so the
// timeout takes 5 s instead of its own duration, and the connections stay parked meanwhile.
//
//   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test node bench/repro/timeout-stall.mjs
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Effect, Either, Redacted } from "effect"
import pg from "pg"

const url = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test"
const key = 4242_4242
const blocker = new pg.Client({ connectionString: url })
await blocker.connect()
await blocker.query("BEGIN")
await blocker.query("SELECT pg_advisory_xact_lock($1)", [key])
const t00 = Date.now()
// The lock holder commits after 1 s: a 300 ms timeout should not care.
setTimeout(() => void blocker.query("COMMIT"), 1000)

const program = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const tx = sql.withTransaction(sql`SELECT pg_advisory_xact_lock(${key})`)
  const t0 = Date.now()
  // Pool of 2: two transactions park on the lock, three wait for a connection.
  const results = yield* Effect.all(
    Array.from({ length: 5 }, () => Effect.either(Effect.timeout(tx, "300 millis"))),
    { concurrency: "unbounded" }
  )
  const timedOut = results.filter(Either.isLeft).length
  console.log(`5 transactions with a 300 ms timeout on a pool of 2 (lock released after 1 s):`)
  console.log(`  ${timedOut} timed out; the timeouts returned after ${Date.now() - t0} ms (expected ~300 ms)`)
})
await Effect.runPromise(
  program.pipe(Effect.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 2 })), Effect.scoped)
)
await blocker.end()
console.log(`total ${Date.now() - t00} ms`)
