/**
 * `status` and a record of missing indices edited by hand (an adversarial review of migration 0015):
 * `status` computed `missing_since + missing_wait_ms * interval '1 millisecond' - statement_timestamp()`
 * in SQL: a wait of NaN or past the interval range ("interval out of range"), or a `missing_since` of
 * infinity ("cannot subtract infinite timestamps", PostgreSQL < 17), failed the whole `status` of the
 * group, the operator's one view of why its changes are held; and a record of other indices than those
 * missing now was shown as "the next change repairs the group", while the store records anew and
 * holds every change for a whole lease. Now `status` reads the record as the store does
 * (`PgMembershipStore.missingWait`).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { assertBuilt, run } from "./support.js"
import { connect, type ScratchDatabase, scratchDatabase } from "./pgSupport.js"

describe("status with a record of missing indices edited by hand", () => {
  let db: ScratchDatabase
  const env = () => ({ ...process.env, DATABASE_URL: db.url })
  beforeAll(async () => {
    assertBuilt()
    db = await scratchDatabase()
    const migrated = await run(["migrate"], env())
    expect(migrated.code, migrated.stderr).toBe(0)
  })
  afterAll(async () => {
    await db?.drop()
  })
  const seed = async (group: string, record: string) => {
    const c = await connect(db.url)
    try {
      await c.query(`INSERT INTO modulo_group.groups (group_id, epoch, size) VALUES ($1, 3, 3)`, [group])
      for (const i of [0, 2]) {
        await c.query(
          `INSERT INTO modulo_group.members (member_id, group_id, idx, acked_epoch, lease_expires_at, heartbeat_at, joined_at, name)
           VALUES (gen_random_uuid(), $1, $2, 3, now() + interval '1 hour', now(), now(), $3)`,
          [group, i, `m${i}`]
        )
      }
      await c.query(`UPDATE modulo_group.groups SET ${record} WHERE group_id = $1`, [group])
    } finally {
      await c.end()
    }
  }
  for (
    const [name, record] of [
      ["wait NaN", `missing_since = now(), missing_wait_ms = 'NaN', missing_indices = '{1}'`],
      ["wait 1e300", `missing_since = now(), missing_wait_ms = 1e300, missing_indices = '{1}'`],
      ["since infinity", `missing_since = 'infinity', missing_wait_ms = 5000, missing_indices = '{1}'`]
    ] as const
  ) {
    it(`status of a group whose record has ${name} still answers (the store ignores the record)`, async () => {
      const group = `odd-${name.replace(/\W/g, "")}`
      await seed(group, record)
      const r = await run(["status", group], env())
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" })
      expect(r.stdout).toContain("index 1 of 3 has no member row")
    })
  }
  it("a stale record of other indices is not shown as 'the next change repairs the group'", async () => {
    const group = "odd-stale"
    // Index 0 was missing an hour ago (put back since); now index 1 is: the store waits a new lease.
    await seed(group, `missing_since = now() - interval '1 hour', missing_wait_ms = 5000, missing_indices = '{0}'`)
    const r = await run(["status", group], env())
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).not.toContain("the next join, leave or reap repairs the group")
  })
  it("slots mode: slots held by a member id no row has are shown, with how long the changes wait for them", async () => {
    const group = "odd-orphan-slots"
    const c = await connect(db.url)
    try {
      await c.query(`INSERT INTO modulo_group.groups (group_id, epoch, size, slots) VALUES ($1, 3, 1, 4)`, [group])
      const [{ id }] = (await c.query(
        `INSERT INTO modulo_group.members (member_id, group_id, idx, acked_epoch, lease_expires_at, heartbeat_at, joined_at, name)
         VALUES (gen_random_uuid(), $1, 0, 3, now() + interval '1 hour', now(), now(), 'm0') RETURNING member_id AS id`,
        [group]
      )).rows as Array<{ id: string }>
      // Slots 1 and 3 held by an id with no row (its row's member id changed by hand); the store's
      // record of them, as -1 - slot, from now with a wait of 50 s.
      for (const slot of [0, 1, 2, 3]) {
        await c.query(
          `INSERT INTO modulo_group.slots (group_id, slot, owner, holder, generation, changed_at)
           VALUES ($1, $2, $3, CASE WHEN $2 IN (1, 3) THEN gen_random_uuid() ELSE $3 END, 1, now())`,
          [group, slot, id]
        )
      }
      await c.query(
        `UPDATE modulo_group.groups SET missing_since = now(), missing_wait_ms = 50000,
                missing_indices = '{-4,-2}' WHERE group_id = $1`,
        [group]
      )
    } finally {
      await c.end()
    }
    const r = await run(["status", group], env())
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/slots 1,3 are held by a member id no row has \(deleted or changed by hand\?\): no join, leave or reap for 4\d\.\ds more/)
    const j = await run(["status", group, "--json"], env())
    expect(j.code, j.stderr).toBe(0)
    const parsed = JSON.parse(j.stdout) as { slotsHeldWithoutRow?: Array<number>; changesHeldMs?: number; missingIndices?: unknown }
    expect(parsed.slotsHeldWithoutRow).toEqual([1, 3])
    expect(parsed.missingIndices).toBeUndefined()
    expect(parsed.changesHeldMs).toBeGreaterThan(40_000)
  })
})
