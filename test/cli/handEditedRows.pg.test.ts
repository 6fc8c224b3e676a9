/**
 * `groups` and `status` over rows edited by hand (or by a role that can write the tables): a time of
 * `infinity` failed the whole listing ("unexpected error: Invalid time value", every group hidden by
 * one row), a member's infinite heartbeat, lease or stop time failed `status` of its group
 * ("cannot subtract infinite timestamps"), and control characters in a group id, a member's name or
 * host reached the operator's terminal as they were (an escape sequence drives it: colours, the title,
 * the cursor); `--json` then gave them replaced. The library refuses both in what it writes; a row it
 * did not write is shown: its control characters as `?` in the text output (exactly in `--json`), and a
 * time that is not finite said so (`null` in `--json`).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { connect, type ScratchDatabase, scratchDatabase } from "./pgSupport.js"
import { assertBuilt, run } from "./support.js"

// eslint-disable-next-line no-control-regex
const control = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/

describe("groups and status over rows edited by hand", () => {
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
        ('plain', 1, 1, now()), ('forever', 1, 1, 'infinity'), ('never', 1, 0, '-infinity'),
        (E'evil\\x1b]0;owned\\x07\\x1b[31mred', 1, 0, now())`)
      await c.query(
        `INSERT INTO modulo_group.members (member_id, group_id, idx, acked_epoch, lease_expires_at, heartbeat_at, joined_at, name, host)
         VALUES (gen_random_uuid(), 'forever', 0, 1, now() + interval '1 hour', now(), 'infinity', E'm\\x1b[2J0', E'h\\x1b[31most'),
                (gen_random_uuid(), 'plain', 0, 1, now() + interval '1 hour', now(), now(), 'm1', 'h1')`
      )
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

  it("groups lists every group: an infinite time said so, control characters as ?", async () => {
    const r = await run(["groups"], env())
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" })
    expect(r.stdout).not.toMatch(control)
    expect(r.stdout).toContain("evil?]0;owned??[31mred")
    expect(r.stdout).toMatch(/forever\s+1\s+1\s+not a finite time/)
    expect(r.stdout).toMatch(/never\s+1\s+0\s+not a finite time/)
    expect(r.stdout).toMatch(/plain\s+1\s+1\s+\d{4}-\d\d-\d\dT/)
  })

  it("groups --json: every group, the exact id (JSON escapes it), an infinite time as null", async () => {
    const r = await run(["groups", "--json"], env())
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" })
    expect(r.stdout).not.toMatch(control)
    const rows = JSON.parse(r.stdout) as Array<{ group: string; changedAt: string | null }>
    expect(rows.map((g) => g.group)).toContain("evil\x1b]0;owned\x07\x1b[31mred")
    expect(rows.find((g) => g.group === "forever")?.changedAt).toBeNull()
    expect(rows.find((g) => g.group === "plain")?.changedAt).toMatch(/^\d{4}-/)
  })

  it("status of a group with infinite times and a member named with escape sequences", async () => {
    const r = await run(["status", "forever"], env())
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" })
    expect(r.stdout).not.toMatch(control)
    expect(r.stdout).toContain("changed not a finite time")
    expect(r.stdout).toContain("m?[2J0")
    expect(r.stdout).toContain("h?[31most")
    const j = await run(["status", "forever", "--json"], env())
    expect({ code: j.code, stderr: j.stderr }).toEqual({ code: 0, stderr: "" })
    const s = JSON.parse(j.stdout) as { changedAt: string | null; members: Array<{ joinedAt: string | null }> }
    expect(s.changedAt).toBeNull()
    expect(s.members[0]?.joinedAt).toBeNull()
    // The JSON holds the name and host exactly (JSON escapes them).
    const member = s.members[0] as unknown as { name: string; host: string }
    expect(member.name).toBe("m\x1b[2J0")
    expect(member.host).toBe("h\x1b[31most")
  })

  for (const group of ["hb", "lease", "stop"]) {
    it(`status of a group with a member's ${group === "hb" ? "heartbeat" : group} time infinite: the group, that member said so (text and JSON)`, async () => {
      const r = await run(["status", group], env())
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" })
      expect(r.stdout).toContain(`group ${group}: epoch 1`)
      expect(r.stdout).toContain("edited")
      expect(r.stdout).toContain("not a finite time")
      const j = await run(["status", group, "--json"], env())
      expect({ code: j.code, stderr: j.stderr }).toEqual({ code: 0, stderr: "" })
      const s = JSON.parse(j.stdout) as { group: string; members: Array<{ name: string }> }
      expect(s.group).toBe(group)
      expect(s.members.map((m) => m.name)).toContain("edited")
    })
  }
})
