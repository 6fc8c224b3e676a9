/**
 * Issue 15, server cost: one batched renewal of all N members of a group (EXPLAIN ANALYZE, planning
 * included) against one `renewLease` (which scans the group per member), N = 16, 256, 1,000.
 * Prints the times docs/benchmarks.md quotes; asserts on the shared buffers each touches, which a
 * loaded machine does not change (a CI run's times once put the batch above half of N renewals).
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Migrations from "../../src/Migrations.js"
import * as Statements from "../../src/internal/pg/statements.js"
import { PgLive, randomGroupId } from "../support/Database.js"

const run = (n: number) => Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const gid = randomGroupId("explain")
  const writer = crypto.randomUUID()
  yield* sql`INSERT INTO modulo_group.groups (group_id, epoch, size, changed_at) VALUES (${gid}, 5, ${n}, now())`
  yield* sql.unsafe(`INSERT INTO modulo_group.members (member_id, group_id, idx, acked_epoch, assigned_epoch, assigned_size, lease_expires_at, heartbeat_at, joined_at, name, host, pid, renewal_seq, writer)
    SELECT gen_random_uuid(), '${gid}', i, 5, 5, ${n}, now() + interval '1 hour', now(), now(), 'm' || i, 'h', 1, 0, '${writer}'::uuid FROM generate_series(0, ${n - 1}) i`)
  const ids = (yield* sql<{ member_id: string }>`SELECT member_id FROM modulo_group.members WHERE group_id = ${gid} ORDER BY idx`).map((r) => r.member_id)
  type Plan = { "Execution Time": number; "Planning Time": number; Plan: { "Shared Hit Blocks": number; "Shared Read Blocks": number } }
  const cost = (text: string, params: ReadonlyArray<unknown>) =>
    Effect.map(sql.unsafe<{ "QUERY PLAN": Array<Plan> }>(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${text}`, params as Array<unknown>), (r) => {
      const p = r[0]!["QUERY PLAN"][0]!
      return { ms: p["Execution Time"] + p["Planning Time"], buffers: p.Plan["Shared Hit Blocks"] + p.Plan["Shared Read Blocks"] }
    })
  const median = (xs: Array<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  const batchMs: Array<number> = []
  const batchBuffers: Array<number> = []
  const singleMs: Array<number> = []
  const singleBuffers: Array<number> = []
  for (let round = 0; round < 7; round++) {
    const [text, params] = Statements.renewLeases(sql, ids.map((id) => ({ memberId: id, groupId: gid, ack: 5, leaseMs: 3_600_000, stuck: false, slots: false, seq: 2 * round + 1 })), writer, null, 2000).compile()
    const batch = yield* cost(text, params)
    batchMs.push(batch.ms)
    batchBuffers.push(batch.buffers)
    let total = 0
    let buffers = 0
    for (const id of ids.slice(0, 32)) {
      const [t, p] = Statements.renewLease(sql, gid, id, 5, 3_600_000, false, null, 2000, 2 * round + 2, writer).compile()
      const single = yield* cost(t, p)
      total += single.ms
      buffers += single.buffers
    }
    singleMs.push(total / 32)
    singleBuffers.push(buffers / 32)
  }
  // Per member, the batch touches a dozen buffers (its row and index entries, read by the lock, the
  // update and the group's scan); each renewLease touches the whole group's rows again (1,000: 12 and
  // 68 buffers per member on PostgreSQL 15).
  if (n >= 256) expect(median(batchBuffers)).toBeLessThan(median(singleBuffers) * n)
  if (n >= 1000) expect(median(batchBuffers)).toBeLessThan((median(singleBuffers) * n) / 2)
  console.log(`N=${n}: batch of all ${n}: ${median(batchMs).toFixed(2)} ms server (${(1000 * median(batchMs) / n).toFixed(1)} µs/member), ${median(batchBuffers)} buffers; one renewLease: ${median(singleMs).toFixed(3)} ms (x${n} = ${(median(singleMs) * n).toFixed(1)} ms), ${median(singleBuffers).toFixed(1)} buffers`)
})

it.live("one batched renewal of N members costs the server far less than N renewals", () => Effect.gen(function*() {
  yield* Migrations.run
  for (const n of [16, 256, 1000]) yield* run(n)
}).pipe(Effect.provide(PgLive)), 120_000)
