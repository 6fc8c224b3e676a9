/**
 * `modulo-group join` against a server that refuses its connections at start (full: SQLSTATE 53300,
 * here a role with CONNECTION LIMIT 0): it does not exit, says why once on stderr, and joins once
 * the server takes connections again. Its one connection serves statements and notifications.
 */
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { afterAll, beforeAll, expect, it } from "vitest"
import { databaseUrl } from "../support/Database.js"
import { connect, dropRoles, eventually } from "./pgSupport.js"
import { assertBuilt, bin, run } from "./support.js"
import { serialised } from "../support/Grants.js"

const role = `mg_cli_refused_${randomBytes(4).toString("hex")}`
const password = `pw-${randomBytes(8).toString("hex")}`

beforeAll(async () => {
  assertBuilt()
  const admin = await connect(databaseUrl())
  try {
    await admin.query(`CREATE ROLE "${role}" LOGIN PASSWORD '${password}' CONNECTION LIMIT 0`)
  } finally {
    await admin.end()
  }
  // The schema, by its owner (the role may use it, not create it).
  const migrated = await run(["migrate"], { ...process.env, DATABASE_URL: databaseUrl() })
  expect(migrated.code).toBe(0)
})

afterAll(async () => {
  const admin = await connect(databaseUrl())
  try {
    await dropRoles(admin, role)
  } finally {
    await admin.end()
  }
})

it("join waits out a server that refuses its connections, says so once, and joins when let in", async () => {
  const admin = await connect(databaseUrl())
  const url = new URL(databaseUrl())
  url.username = role
  url.password = password
  const group = `test-cli-refused-${randomBytes(4).toString("hex")}`
  let stdout = ""
  let stderr = ""
  let exited: number | null | undefined = undefined
  try {
    await admin.query(serialised(`GRANT USAGE ON SCHEMA modulo_group TO "${role}"`))
    await admin.query(serialised(`GRANT SELECT, INSERT, UPDATE, DELETE ON modulo_group.groups, modulo_group.members TO "${role}"`))
    await admin.query(serialised(`GRANT SELECT ON modulo_group.schema_migrations TO "${role}"`))
    await admin.query(serialised(`GRANT SELECT, INSERT, DELETE ON modulo_group.fence_checks TO "${role}"`))
    const child = spawn(process.execPath, [bin, "join", group, "--json", "--heartbeat", "300ms"], {
      env: { ...process.env, DATABASE_URL: url.toString() },
      stdio: ["ignore", "pipe", "pipe"]
    })
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString("utf8")))
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")))
    child.once("exit", (code) => (exited = code))
    await eventually("the refusal said", async () => /refuses connections/.test(stderr), 30_000)
    // Refused for a while longer (its retries back off to 5 s): still running, still said once.
    await new Promise((r) => setTimeout(r, 1_500))
    expect(exited).toBeUndefined()
    await admin.query(`ALTER ROLE "${role}" CONNECTION LIMIT 5`)
    await eventually("assigned", async () => /"state":"assigned"/.test(stdout), 30_000)
    const backends = await admin.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1 AND application_name = 'modulo-group-cli'`,
      [role]
    )
    // One connection for statements and notifications.
    expect(backends.rows[0].n).toBe(1)
    child.kill("SIGINT")
    await eventually("exit", async () => exited !== undefined, 15_000)
    expect(exited).toBe(0)
    expect(stderr.match(/refuses connections/g)?.length).toBe(1)
    expect(stderr).not.toMatch(/cannot connect/)
  } finally {
    await admin.end()
  }
}, 90_000)
