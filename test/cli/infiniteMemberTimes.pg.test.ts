/**
 * A review of the command line: `status` over a member row whose heartbeat, lease or stopping time was set to
 * `infinity` by hand. The recent change says `status` shows rows edited by hand (a time that is not
 * finite said so), but these three columns are subtracted in SQL, and PostgreSQL refuses
 * (`cannot subtract infinite timestamps`, SQLSTATE 22008): the whole group is hidden behind
 * "database error", exit 1, by one row.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { connect, type ScratchDatabase, scratchDatabase } from "./pgSupport.js"
import { assertBuilt, run } from "./support.js"

describe("status over member rows with infinite times", () => {
  let db: ScratchDatabase
  const env = () => ({ ...process.env, DATABASE_URL: db.url })
  beforeAll(async () => {
    assertBuilt()
    db = await scratchDatabase()
    const migrated = await run(["migrate"], env())
    expect(migrated.code, migrated.stderr).toBe(0)
    const c = await connect(db.url)
    try {
      await c.query(`INSERT INTO modulo_group.groups (group_id, epoch, size, changed_at) VALUES
        ('hb', 1, 2, now()), ('lease', 1, 1, now()), ('stop', 1, 1, now())`)
      await c.query(
        `INSERT INTO modulo_group.members (member_id, group_id, idx, acked_epoch, lease_expires_at, heartbeat_at, joined_at, name, host, stopping_since)
         VALUES (gen_random_uuid(), 'hb', 0, 1, now() + interval '1 hour', 'infinity', now(), 'edited', 'h', NULL),
                (gen_random_uuid(), 'hb', 1, 1, now() + interval '1 hour', now(), now(), 'healthy', 'h', NULL),
                (gen_random_uuid(), 'lease', 0, 1, 'infinity', now(), now(), 'edited', 'h', NULL),
                (gen_random_uuid(), 'stop', 0, 1, now() + interval '1 hour', now(), now(), 'edited', 'h', '-infinity')`
      )
    } finally {
      await c.end()
    }
  })
  afterAll(async () => {
    await db?.drop()
  })

  for (const group of ["hb", "lease", "stop"]) {
    it(`status ${group}: shows the group (the edited row said so), not a database error`, async () => {
      const r = await run(["status", group], env())
      expect(r.stderr).not.toContain("cannot subtract infinite timestamps")
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" })
      expect(r.stdout).toContain(`group ${group}: epoch 1`)
      expect(r.stdout).toContain("edited")
    })

    it(`status ${group} --json: valid JSON for the group, not a database error`, async () => {
      const r = await run(["status", group, "--json"], env())
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" })
      const s = JSON.parse(r.stdout) as { group: string; members: Array<{ name: string }> }
      expect(s.group).toBe(group)
      expect(s.members.map((m) => m.name)).toContain("edited")
    })
  }
})
