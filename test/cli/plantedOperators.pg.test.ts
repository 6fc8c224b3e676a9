/**
 * `status` and `groups` against an operator planted in a schema of the search path (docs/operations.md,
 * "The members' search_path"): they read every time as `extract(epoch FROM ...) * 1000`, numeric
 * times an integer, which pg_catalog serves only through a cast, so a `public.*(numeric, integer)`
 * matched exactly and won. A review planted one that negates: a member with an hour of lease left
 * was shown `expired`, the group changed in 1914. The operator is named in pg_catalog now
 * (`OPERATOR(pg_catalog.*)`), as in the store's reads.
 */
import { randomUUID } from "node:crypto"
import { afterAll, beforeAll, expect, it } from "vitest"
import { connect, type ScratchDatabase, scratchDatabase } from "./pgSupport.js"
import { assertBuilt, run } from "./support.js"

let db: ScratchDatabase | undefined
const group = `planted-status-${randomUUID()}`

beforeAll(async () => {
  assertBuilt()
  db = await scratchDatabase()
  const migrated = await run(["migrate"], { ...process.env, DATABASE_URL: db.url })
  expect(migrated.code, migrated.stderr).toBe(0)
  const c = await connect(db.url)
  try {
    await c.query(`INSERT INTO modulo_group.groups (group_id, epoch, size) VALUES ($1, 3, 1)`, [group])
    await c.query(
      `INSERT INTO modulo_group.members (member_id, group_id, idx, acked_epoch, assigned_epoch, assigned_size,
                                         lease_expires_at, heartbeat_at, joined_at, name)
       VALUES ($1, $2, 0, 3, 3, 1, now() + interval '1 hour', now(), now(), 'm0')`,
      [randomUUID(), group]
    )
    await c.query(`
      CREATE FUNCTION public.mul_numeric_int(a numeric, b integer) RETURNS numeric LANGUAGE sql IMMUTABLE AS
        'SELECT OPERATOR(pg_catalog.-) (a OPERATOR(pg_catalog.*) b::numeric)';
      CREATE OPERATOR public.* (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = public.mul_numeric_int);`)
  } finally {
    await c.end()
  }
}, 60_000)

afterAll(async () => {
  await db?.drop()
})

it("status shows a member with an hour of lease left as live, and the group's change time as it is", async () => {
  const out = await run(["status", group, "--json"], { ...process.env, DATABASE_URL: db!.url })
  expect(out.code, out.stderr).toBe(0)
  const status = JSON.parse(out.stdout)
  const m = status.members[0]
  expect(m.state).not.toBe("expired")
  expect(m.leaseLeftMs).toBeGreaterThan(3_000_000)
  expect(Math.abs(new Date(status.changedAt).getTime() - Date.now())).toBeLessThan(600_000)
}, 60_000)

it("groups shows the group's change time as it is", async () => {
  const out = await run(["groups", "--json"], { ...process.env, DATABASE_URL: db!.url })
  expect(out.code, out.stderr).toBe(0)
  const line = out.stdout.trim().split("\n").map((l) => JSON.parse(l)).flat().find((g: { group?: string; groupId?: string }) =>
    (g.group ?? g.groupId) === group
  )
  expect(line, out.stdout).toBeDefined()
  const changed = line.changedAt ?? line.changed_at
  expect(Math.abs(new Date(changed).getTime() - Date.now())).toBeLessThan(600_000)
}, 60_000)
