// What one heartbeat costs the server as the group grows, for the statement the library actually
// sends: it drives `PgMembershipStore.heartbeat` from a build (default dist/src) over a pool of one
// connection and reads that backend's CPU from /proc, so run it on the database's machine.
// Members are heartbeated round-robin, as a group's heartbeats would be.
//
//   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test node bench/repro/heartbeat-cost.mjs
//   MG_BUILD=/path/to/other/build/src node bench/repro/heartbeat-cost.mjs   # compare a build
//   MG_EXPLAIN=1 ...   also logs (auto_explain, to the server log) the plan of one heartbeat at the largest N
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Redacted } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import pg from "pg"

const base = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test"
const build = path.resolve(process.env.MG_BUILD ?? new URL("../../dist/src", import.meta.url).pathname)
const sizes = (process.env.MG_SIZES ?? "16,256,1000").split(",").map(Number)
const calls = Number(process.env.MG_CALLS ?? 5000)
const Store = await import(pathToFileURL(path.join(build, "PgMembershipStore.js")).href)
// Builds since the notifier became a scoped service need it provided to `make` (older ones do not).
const notifierModule = path.join(build, "internal/pg/notifier.js")
const NotifierLive = fs.existsSync(notifierModule) ? (await import(pathToFileURL(notifierModule).href)).layer : Layer.empty

const name = `mg_heartbeat_cost_${process.pid}`
const admin = new pg.Client({ connectionString: base })
await admin.connect()
await admin.query(`CREATE DATABASE ${name}`)
const url = new URL(base)
url.pathname = `/${name}`

// utime + stime of a process, in ms (clock ticks of 10 ms).
const cpuMs = (pid) => {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(f[11]) + Number(f[12])) * 10
}

const program = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const store = yield* Store.make({})
  const [{ pid }] = yield* sql`SELECT pg_backend_pid() AS pid`
  console.log(`build ${build}; ${calls} heartbeats per size`)
  console.log("members  server CPU µs/heartbeat  wall µs/heartbeat")
  for (const n of sizes) {
    const group = `g${n}`
    yield* sql`INSERT INTO modulo_group.groups (group_id, epoch, size) VALUES (${group}, 7, ${n})`
    const ids = (yield* sql`
      INSERT INTO modulo_group.members (member_id, group_id, idx, acked_epoch, lease_expires_at, heartbeat_at, joined_at)
      SELECT gen_random_uuid(), ${group}, i, 7, now() + interval '1 hour', now(), now() FROM generate_series(0, ${n} - 1) i
      RETURNING member_id`).map((r) => r.member_id)
    yield* sql`VACUUM ANALYZE modulo_group.members`
    const beat = (i) =>
      Effect.flatMap(store.heartbeat(group, ids[i % n], 7, 3_600_000, false), (v) =>
        v._tag === "Some" && v.value.allAcked && !v.value.expired ? Effect.void : Effect.die(`unexpected view ${JSON.stringify(v)}`))
    for (let i = 0; i < 500; i++) yield* beat(i)
    const cpu0 = cpuMs(pid)
    const t0 = performance.now()
    for (let i = 0; i < calls; i++) yield* beat(i)
    const wall = ((performance.now() - t0) * 1000) / calls
    const cpu = ((cpuMs(pid) - cpu0) * 1000) / calls
    console.log(`${String(n).padStart(7)}  ${cpu.toFixed(0).padStart(23)}  ${wall.toFixed(0).padStart(17)}`)
  }
  if (process.env.MG_EXPLAIN) {
    const n = sizes[sizes.length - 1]
    const [m] = yield* sql`SELECT member_id FROM modulo_group.members WHERE group_id = ${`g${n}`} AND idx = 1`
    // Capture the statement as sent, then explain it with its parameters inside a rolled-back transaction.
    yield* sql`LOAD 'auto_explain'`
    yield* sql`SET auto_explain.log_min_duration = 0`
    yield* sql`SET auto_explain.log_analyze = on`
    yield* sql`SET auto_explain.log_nested_statements = on`
    yield* store.heartbeat(`g${n}`, m.member_id, 7, 3_600_000, false)
  }
})

try {
  await Effect.runPromise(
    program.pipe(
      Effect.provide(NotifierLive.pipe(Layer.provideMerge(PgClient.layer({ url: Redacted.make(url.toString()), maxConnections: 1 })))),
      Effect.scoped
    ).pipe(
      // Migrate with the build under test (its own migrations), on another connection.
      (p) =>
        Effect.zipRight(
          Effect.flatMap(Effect.promise(() => import(pathToFileURL(path.join(build, "Migrations.js")).href)), (M) => M.run).pipe(
            Effect.provide(PgClient.layer({ url: Redacted.make(url.toString()), maxConnections: 1 })),
            Effect.scoped
          ),
          p
        )
    )
  )
} finally {
  await admin.query(`DROP DATABASE ${name} WITH (FORCE)`)
  await admin.end()
}
