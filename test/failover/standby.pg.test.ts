/**
 * `join` pointed at a hot standby fails at start, in one line, exit 1 (cli/src/commands/join.ts,
 * `preflight`), instead of retrying its join for ever; a library member there is refused each join
 * with the read-only hint that names the standby, and never holds an assignment. A primary and a
 * streaming standby (test/failover/Cluster.ts); the schema is migrated on the primary and replayed
 * on the standby, so the schema check passes there and the standby check is what refuses.
 *
 * Needs the Debian PostgreSQL 15 server binaries and root, as the failover suite; elsewhere it skips
 * with one line.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { randomGroupId } from "../support/Database.js"
import { assertBuilt, joinTimings, Member, run } from "../cli/support.js"
import { type Pair, query, startPair, unavailable, urlOf } from "./Cluster.js"

const skip = unavailable()
if (skip !== undefined) console.log(`[standby] skipped: ${skip}`)

describe.skipIf(skip !== undefined)("join against a hot standby (two local servers)", () => {
  let pair: Pair | undefined

  beforeAll(async () => {
    assertBuilt()
    pair = await startPair({ sync: false })
    const migrated = await run(["migrate", "--database-url", urlOf(pair.primaryPort)], process.env)
    expect(migrated.code, migrated.stderr).toBe(0)
    await pair.caughtUp()
    const [row] = await query<{ version: number }>(pair.standbyPort, "SELECT max(version) AS version FROM modulo_group.schema_migrations")
    expect(row?.version).toBeGreaterThan(0)
  }, 120_000)

  afterAll(async () => {
    await pair?.stop()
  })

  it("the CLI's join: one line naming the standby, exit 1, nothing on stdout", async () => {
    const url = urlOf(pair!.standbyPort)
    const groupId = randomGroupId("cli-standby")
    const r = await run(["join", groupId, "--database-url", url], process.env, 20_000)
    expect(r.code, r.stderr).toBe(1)
    const lines = r.stderr.split("\n").filter((l) => l.trim() !== "")
    expect(lines, r.stderr).toHaveLength(1)
    expect(lines[0]).toMatch(/^modulo-group: the database at .* is a hot standby \(in recovery\): a member writes its row, so point it at the primary$/)
    expect(r.stdout).toBe("")
    // Nothing of the group anywhere: the standby cannot be written, and the primary was never asked.
    const rows = await query(pair!.primaryPort, "SELECT 1 FROM modulo_group.groups WHERE group_id = $1", [groupId])
    expect(rows).toEqual([])
  })

  it("the same join against the primary works (the refusal is the standby's, not the setup's)", async () => {
    const env = { ...process.env, DATABASE_URL: urlOf(pair!.primaryPort) }
    const m = new Member("standby-control", randomGroupId("cli-primary"), joinTimings(200, 3_000), env)
    try {
      await m.waitFor((e) => e.event === "work", 20_000, "a work line")
    } finally {
      m.kill("SIGTERM")
    }
    expect(await m.exited).toEqual({ code: 0, signal: null })
  })
})
