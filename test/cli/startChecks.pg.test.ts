/**
 * `join` on a database it can never write fails at start, in one line, exit 1 (it used to stay
 * `joining` for ever, warning twice a second): a read-only connection, triggers off
 * (`session_replication_role = replica`), a role without a member's
 * privileges, slots mode against a group in modulo mode. The least-privilege role of
 * docs/operations.md still joins; when its final leave gives up, the exit is 1, not 0.
 */
import { randomBytes } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { databaseUrl, randomGroupId } from "../support/Database.js"
import { connect, dropRoles } from "./pgSupport.js"
import { assertBuilt, joinTimings, Member, run } from "./support.js"
import { serialised } from "../support/Grants.js"

const FAILURE = 1
const suffix = randomBytes(4).toString("hex")
const password = `pw-${randomBytes(8).toString("hex")}`
/** May read the schema, not write it (the dashboard's read-only role). */
const reader = `mg_cli_reader_${suffix}`
/** The grants docs/operations.md gives a member role, but not the one of slots mode. */
const member = `mg_cli_member_${suffix}`

const urlAs = (role: string, f: (u: URL) => void = () => undefined): string => {
  const u = new URL(databaseUrl())
  u.username = role
  u.password = password
  f(u)
  return u.toString()
}

const oneLine = (stderr: string): string => {
  const lines = stderr.split("\n").filter((l) => l.trim() !== "")
  expect(lines, `one line on stderr, got:\n${stderr}`).toHaveLength(1)
  return lines[0]!
}

describe("modulo-group join: start checks (child processes)", () => {
  const env = { ...process.env, DATABASE_URL: databaseUrl() }
  const members: Array<Member> = []

  beforeAll(async () => {
    assertBuilt()
    const migrated = await run(["migrate"], env)
    expect(migrated.code, migrated.stderr).toBe(0)
    const admin = await connect(databaseUrl())
    try {
      for (const role of [reader, member]) {
        await admin.query(`CREATE ROLE "${role}" LOGIN PASSWORD '${password}'`)
        await admin.query(serialised(`GRANT USAGE ON SCHEMA modulo_group TO "${role}"`))
        await admin.query(serialised(`GRANT SELECT ON modulo_group.schema_migrations TO "${role}"`))
      }
      await admin.query(serialised(`GRANT SELECT ON modulo_group.groups, modulo_group.members, modulo_group.slots TO "${reader}"`))
      await admin.query(serialised(`GRANT SELECT, INSERT, UPDATE, DELETE ON modulo_group.groups, modulo_group.members TO "${member}"`))
      await admin.query(serialised(`GRANT SELECT, INSERT, DELETE ON modulo_group.fence_checks TO "${member}"`))
    } finally {
      await admin.end()
    }
  })

  afterAll(async () => {
    for (const m of members) m.kill("SIGKILL")
    await Promise.all(members.map((m) => m.exited))
    const admin = await connect(databaseUrl())
    try {
      await dropRoles(admin, reader, member)
    } finally {
      await admin.end()
    }
  })

  it("a read-only connection (default_transaction_read_only in the URL's options)", async () => {
    const readOnly = new URL(databaseUrl())
    readOnly.searchParams.set("options", "-c default_transaction_read_only=on")
    const r = await run(["join", randomGroupId("cli-ro"), "--database-url", readOnly.toString()], env, 15_000)
    expect(r.code).toBe(FAILURE)
    expect(oneLine(r.stderr)).toMatch(/^modulo-group: the database at .* is read-only for this connection \(transaction_read_only is on/)
    expect(r.stdout).toBe("")
  })

  it("session_replication_role = replica in the URL's options (no trigger would fire): refused at start, exit 1", async () => {
    const replica = new URL(databaseUrl())
    replica.searchParams.set("options", "-c session_replication_role=replica")
    const r = await run(["join", randomGroupId("cli-replica"), "--database-url", replica.toString()], env, 15_000)
    expect(r.code).toBe(FAILURE)
    expect(oneLine(r.stderr)).toMatch(/session_replication_role is replica in this connection's sessions .* Members do not start/)
    expect(r.stdout).toBe("")
  })

  it("a role that may only read the schema; slots mode under a role without the slots grant", async () => {
    const r = await run(["join", randomGroupId("cli-reader"), "--database-url", urlAs(reader)], env, 15_000)
    expect(r.code).toBe(FAILURE)
    expect(oneLine(r.stderr)).toBe(
      `modulo-group: role "${reader}" lacks privileges a member needs: INSERT, UPDATE on modulo_group.groups; INSERT, UPDATE, DELETE on modulo_group.members (see docs/operations.md, "Least privileges")`
    )
    const slots = await run(["join", randomGroupId("cli-noslots"), "--slots", "8", "--database-url", urlAs(member)], env, 15_000)
    expect(slots.code).toBe(FAILURE)
    expect(oneLine(slots.stderr)).toMatch(/lacks privileges a member needs: SELECT, INSERT, UPDATE on modulo_group\.slots /)
  })

  it("slots mode against a group in modulo mode: the refusal, then exit 1", async () => {
    const group = randomGroupId("cli-mode")
    const modulo = new Member("start-checks-modulo", group, joinTimings(200, 3_000), env)
    members.push(modulo)
    await modulo.waitFor((e) => e.event === "work", 20_000, "a work line")
    modulo.kill("SIGTERM")
    expect(await modulo.exited).toEqual({ code: 0, signal: null })
    const r = await run(["join", group, "--slots", "8"], env, 15_000)
    expect(r.code).toBe(FAILURE)
    expect(r.stderr).toMatch(/join refused: .*modulo mode/)
    expect(r.stdout).not.toContain("working away")
  })

  it("the least-privilege member role joins; a final leave that gives up exits 1", async () => {
    const group = randomGroupId("cli-gaveup")
    const m = new Member("start-checks-least", group, joinTimings(200, 3_000), { ...env, DATABASE_URL: urlAs(member) })
    members.push(m)
    await m.waitFor((e) => e.event === "work", 20_000, "a work line")
    // The leave (a DELETE) now fails with permission denied until it gives up (a statement timeout, 1 s).
    const admin = await connect(databaseUrl())
    try {
      await admin.query(serialised(`REVOKE DELETE ON modulo_group.members FROM "${member}"`))
    } finally {
      await admin.end()
    }
    m.kill("SIGTERM")
    expect(await m.exited, m.stderr).toEqual({ code: FAILURE, signal: null })
    expect(m.stderr).toContain("leave failed: permission denied for table members")
    expect(m.stderr).toContain("leave gave up; the lease will expire instead")
  })
})
