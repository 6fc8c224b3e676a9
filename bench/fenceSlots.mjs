// What a slots-mode fenced block costs by the number of slots it names (docs/benchmarks.md, "Fenced
// blocks of many slots"): for each slot count S, a group of S slots held by one member (written by
// hand, as test/fenced/support.ts's `slotsGroup` does), then `rounds` times: a fenced block of all S
// slots in its own transaction (one write), and the same block nested in another member's fenced block
// (its checks run at the outer COMMIT). Prints the median and the range of each, in ms, wall time from
// the call to its end (the COMMIT included).
//
//   npm run build
//   DATABASE_URL=postgres://... node bench/fenceSlots.mjs [sizes=1,3000,16384] [rounds=5]
//
// MODULO_GROUP_LIB: another build's `dist/src/index.js`, for a before/after (its database migrated by
// that build). The database must be migrated (`npx modulo-group migrate`).
import { randomUUID } from "node:crypto"
import { pathToFileURL } from "node:url"

if (!process.env.DATABASE_URL) throw new Error("DATABASE_URL is required")
const sizes = (process.argv[2] ?? "1,3000,16384").split(",").map(Number)
const rounds = Number(process.argv[3] ?? 5)
const lib_ = process.env.MODULO_GROUP_LIB
const libUrl = lib_ === undefined
  ? new URL("../dist/src/index.js", import.meta.url).href
  : lib_.startsWith("file:") ? lib_ : pathToFileURL(lib_).href
const { Fenced } = await import(libUrl)
const { PgClient } = await import("@effect/sql-pg")
const { SqlClient } = await import("@effect/sql")
const { Effect, Redacted } = await import("effect")

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

const program = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const run = `bench-fence-slots-${randomUUID().slice(0, 8)}`
  yield* sql`CREATE TABLE ${sql(run.replace(/-/g, "_"))} (note text NOT NULL)`
  const write = (note) => sql`INSERT INTO ${sql(run.replace(/-/g, "_"))} (note) VALUES (${note})`
  // The outer member, modulo mode: a group of one at epoch 1.
  const outer = { groupId: `${run}-outer`, memberId: randomUUID(), epoch: 1, index: 0, size: 1 }
  yield* sql`INSERT INTO modulo_group.groups (group_id, epoch, size) VALUES (${outer.groupId}, 1, 1)`
  yield* sql`INSERT INTO modulo_group.members (member_id, group_id, idx, lease_expires_at, heartbeat_at, joined_at)
             VALUES (${outer.memberId}, ${outer.groupId}, 0, clock_timestamp() + interval '1 hour', now(), now())`
  for (const size of sizes) {
    const groupId = `${run}-${size}`
    const memberId = randomUUID()
    yield* sql`INSERT INTO modulo_group.groups (group_id, epoch, size, slots) VALUES (${groupId}, 1, 1, ${size})`
    yield* sql`INSERT INTO modulo_group.members (member_id, group_id, idx, lease_expires_at, heartbeat_at, joined_at)
               VALUES (${memberId}, ${groupId}, 0, clock_timestamp() + interval '1 hour', now(), now())`
    yield* sql`INSERT INTO modulo_group.slots (group_id, slot, owner, holder, generation, changed_at)
               SELECT ${groupId}, s, ${memberId}::uuid, ${memberId}::uuid, 1, now() FROM generate_series(0, ${size - 1}::int) s`
    const target = {
      groupId, memberId, epoch: -1, index: -1, size: 0,
      slots: Array.from({ length: size }, (_, slot) => ({ slot, generation: 1 }))
    }
    const own = []
    const nested = []
    for (let i = 0; i < rounds; i++) {
      let t = performance.now()
      yield* Fenced.fencedWith(target, write(`own ${size} ${i}`), { timeout: "60 seconds" })
      own.push(performance.now() - t)
      t = performance.now()
      yield* Fenced.fencedWith(outer, Fenced.fencedWith(target, write(`nested ${size} ${i}`), { timeout: "60 seconds" }), { timeout: "60 seconds" })
      nested.push(performance.now() - t)
    }
    const fmt = (xs) => `${median(xs).toFixed(0)} ms (${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)})`
    console.log(`${String(size).padStart(6)} slots: own transaction ${fmt(own)}, nested in another block ${fmt(nested)}`)
    yield* sql`DELETE FROM modulo_group.groups WHERE group_id = ${groupId}`
  }
  yield* sql`DELETE FROM modulo_group.groups WHERE group_id = ${outer.groupId}`
  yield* sql`DROP TABLE ${sql(run.replace(/-/g, "_"))}`
})

await Effect.runPromise(
  program.pipe(Effect.provide(PgClient.layer({ url: Redacted.make(process.env.DATABASE_URL), maxConnections: 2 })), Effect.scoped)
)
