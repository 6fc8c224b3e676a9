/**
 * Issue 15, server time: one batched renewal of all N members of a group (EXPLAIN ANALYZE, planning
 * included) against one `renewLease` (which scans the group per member), N = 16, 256, 1,000.
 * Prints the figures docs/benchmarks.md quotes; asserts only a wide margin (a loaded machine).
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
  yield* sql`INSERT INTO modulo_group.groups (group_id, epoch, size, changed_at) VALUES (${gid}, 5, ${n}, now())`
  yield* sql.unsafe(`INSERT INTO modulo_group.members (member_id, group_id, idx, acked_epoch, assigned_epoch, assigned_size, lease_expires_at, heartbeat_at, joined_at, name, host, pid)
    SELECT gen_random_uuid(), '${gid}', i, 5, 5, ${n}, now() + interval '1 hour', now(), now(), 'm' || i, 'h', 1 FROM generate_series(0, ${n - 1}) i`)
  const ids = (yield* sql<{ member_id: string }>`SELECT member_id FROM modulo_group.members WHERE group_id = ${gid} ORDER BY idx`).map((r) => r.member_id)
  const time = (text: string, params: ReadonlyArray<unknown>) =>
    Effect.map(sql.unsafe<{ "QUERY PLAN": Array<{ "Execution Time": number; "Planning Time": number }> }>(`EXPLAIN (ANALYZE, FORMAT JSON) ${text}`, params as Array<unknown>), (r) => {
      const p = r[0]!["QUERY PLAN"][0]!
      return p["Execution Time"] + p["Planning Time"]
    })
  const median = (xs: Array<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  const batchMs: Array<number> = []
  const singleMs: Array<number> = []
  for (let round = 0; round < 7; round++) {
    const [text, params] = Statements.renewLeases(sql, ids.map((id) => ({ memberId: id, groupId: gid, ack: 5, leaseMs: 3_600_000, stuck: false, slots: false })), null, 2000).compile()
    batchMs.push(yield* time(text, params))
    let total = 0
    for (const id of ids.slice(0, 32)) {
      const [t, p] = Statements.renewLease(sql, gid, id, 5, 3_600_000, false, null, 2000).compile()
      total += yield* time(t, p)
    }
    singleMs.push(total / 32)
  }
  if (n >= 256) expect(median(batchMs)).toBeLessThan((median(singleMs) * n) / 2)
  console.log(`N=${n}: batch of all ${n}: ${median(batchMs).toFixed(2)} ms server (${(1000 * median(batchMs) / n).toFixed(1)} µs/member); one renewLease: ${median(singleMs).toFixed(3)} ms (x${n} = ${(median(singleMs) * n).toFixed(1)} ms)`)
})

it.live("one batched renewal of N members costs the server far less than N renewals", () => Effect.gen(function*() {
  yield* Migrations.run
  for (const n of [16, 256, 1000]) yield* run(n)
}).pipe(Effect.provide(PgLive)), 120_000)
