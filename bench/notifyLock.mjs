// How long a COMMIT that notifies waits behind another transaction's COMMIT of many notifications
// (docs/operations.md, the bounds of `pg_notify` after a change; docs/testing.md, the slow-COMMIT
// files). PostgreSQL serializes the COMMITs of all transactions that notified, cluster-wide: each
// holds an AccessExclusiveLock on object 0 of pg_database from the writing of its notifications to
// the end of its COMMIT. Prints the lock as pg_locks shows it, the big COMMIT's time and the small
// one's wait, in ms.
//
//   DATABASE_URL=postgres://... node bench/notifyLock.mjs [notifications=30000] [bytes=2000]
import pg from "pg"

if (!process.env.DATABASE_URL) throw new Error("DATABASE_URL is required")
const count = Number(process.argv[2] ?? 30_000)
const bytes = Number(process.argv[3] ?? 2_000)
const [big, small, observer] = [0, 1, 2].map(() => new pg.Client(process.env.DATABASE_URL))
for (const c of [big, small, observer]) await c.connect()
try {
  await big.query("BEGIN")
  await big.query(
    "SELECT count(pg_notify('modulo_group_bench_notify_lock', i::text || repeat('x', $2::int))) FROM generate_series(1, $1::int) i",
    [count, bytes]
  )
  const bigStart = Date.now()
  const bigCommit = big.query("COMMIT").then(() => Date.now() - bigStart)
  // The observer waits until the big COMMIT holds the lock (it takes it once its checks have run).
  let lock
  for (let i = 0; i < 200 && lock === undefined; i++) {
    const { rows } = await observer.query(
      "SELECT locktype, classid::regclass::text AS class, objid, mode, granted FROM pg_locks WHERE locktype = 'object' AND classid = 'pg_database'::regclass AND objid = 0 AND granted"
    )
    lock = rows[0]
  }
  const smallStart = Date.now()
  await small.query("BEGIN")
  await small.query("NOTIFY modulo_group_bench_notify_lock, 'x'")
  await small.query("COMMIT")
  const smallMs = Date.now() - smallStart
  console.log(`lock held by the big COMMIT: ${JSON.stringify(lock ?? "not seen")}`)
  console.log(`${count} notifications of ${bytes} bytes: COMMIT ${await bigCommit} ms; a one-notification COMMIT begun during it took ${smallMs} ms`)
} finally {
  for (const c of [big, small, observer]) await c.end()
}
