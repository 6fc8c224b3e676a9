/**
 * `status` shows one committed state: the group row and its member rows come from one statement.
 *
 * The interleaving is forced: a change transaction takes an ACCESS EXCLUSIVE lock on
 * `modulo_group.members`, bumps the group row (epoch 3 -> 4, size 3 -> 2) and deletes a member,
 * then waits until the reader is blocked before it commits. Two statements (the old `status`) read
 * the group row before the change and the member rows after it: `epoch 3, size 3` over two members.
 * One statement takes its locks before its snapshot, so it sees the state after the change, whole.
 */
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as readline from "node:readline"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { assertBuilt, bin, run } from "./support.js"
import { cliWaitsOnLock, connect, dropRoles, eventually, type ScratchDatabase, scratchDatabase } from "./pgSupport.js"
import { serialised } from "../support/Grants.js"

interface StatusJson {
  readonly epoch: number
  readonly size: number
  readonly members: ReadonlyArray<
    { readonly index: number | null; readonly name: string; readonly heartbeatAgeMs: number; readonly leaseLeftMs: number }
  >
}

describe("modulo-group status (child processes)", () => {
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

  /** Group `g` at epoch 3 with three members, indices 0..2. */
  const seed = async (group: string) => {
    const c = await connect(db.url)
    try {
      await c.query(`INSERT INTO modulo_group.groups (group_id, epoch, size) VALUES ($1, 3, 3)`, [group])
      for (const i of [0, 1, 2]) {
        await c.query(
          `INSERT INTO modulo_group.members (member_id, group_id, idx, acked_epoch, lease_expires_at, heartbeat_at, joined_at, name)
           VALUES (gen_random_uuid(), $1, $2, 3, now() + interval '1 hour', now(), now(), $3)`,
          [group, i, `m${i}`]
        )
      }
    } finally {
      await c.end()
    }
  }

  /**
   * Runs `read` while a change (member m2 leaves: epoch 4, size 2) is in flight: the change holds
   * an exclusive lock on the member table until `read` waits on it, then commits.
   */
  const acrossAChange = async <A>(group: string, read: () => Promise<A>, waiting: () => Promise<boolean>): Promise<A> => {
    const changer = await connect(db.url)
    try {
      await changer.query("BEGIN")
      await changer.query("LOCK TABLE modulo_group.members IN ACCESS EXCLUSIVE MODE")
      await changer.query("UPDATE modulo_group.groups SET epoch = 4, size = 2 WHERE group_id = $1", [group])
      await changer.query("DELETE FROM modulo_group.members WHERE group_id = $1 AND idx = 2", [group])
      const result = read()
      result.catch(() => undefined)
      await eventually("the reader to wait on the member table", waiting)
      await changer.query("COMMIT")
      return await result
    } finally {
      await changer.end()
    }
  }

  it("two statements (the old way) tear under this interleaving: the test's premise", async () => {
    const group = "torn"
    await seed(group)
    const reader = await connect(db.url)
    const watcher = await connect(db.url)
    try {
      const pid = (await reader.query("SELECT pg_backend_pid() AS pid")).rows[0].pid as number
      const seen = await acrossAChange(
        group,
        async () => {
          const g = await reader.query("SELECT epoch, size FROM modulo_group.groups WHERE group_id = $1", [group])
          const m = await reader.query("SELECT idx FROM modulo_group.members WHERE group_id = $1", [group])
          return { epoch: Number(g.rows[0].epoch), size: g.rows[0].size as number, members: m.rowCount }
        },
        async () =>
          (await watcher.query("SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", [pid])).rows[0]
            ?.wait_event_type === "Lock"
      )
      expect(seen).toEqual({ epoch: 3, size: 3, members: 2 })
    } finally {
      await reader.end()
      await watcher.end()
    }
  })

  it("shows the group row and its members from one committed state", async () => {
    const group = "consistent"
    await seed(group)
    const watcher = await connect(db.url)
    try {
      const r = await acrossAChange(
        group,
        () => run(["status", group, "--json"], env()),
        () => cliWaitsOnLock(watcher, db.name)
      )
      expect(r.code, r.stderr).toBe(0)
      const s = JSON.parse(r.stdout) as StatusJson
      expect({ epoch: s.epoch, size: s.size, members: s.members.map((m) => m.name) }).toEqual({
        epoch: 4,
        size: 2,
        members: ["m0", "m1"]
      })
    } finally {
      await watcher.end()
    }
  })

  it("prints a group without members, and its members in index order", async () => {
    const c = await connect(db.url)
    try {
      await c.query(`INSERT INTO modulo_group.groups (group_id, epoch, size) VALUES ('empty', 7, 0)`)
    } finally {
      await c.end()
    }
    const empty = await run(["status", "empty"], env())
    expect(empty.code, empty.stderr).toBe(0)
    expect(empty.stdout).toMatch(/^group empty: epoch 7, size 0 \(changed [^)]+\)\nno members\n$/)

    await seed("listed")
    const listed = await run(["status", "listed", "--json"], env())
    expect(listed.code, listed.stderr).toBe(0)
    const s = JSON.parse(listed.stdout) as StatusJson
    expect(s.members.map((m) => [m.index, m.name])).toEqual([[0, "m0"], [1, "m1"], [2, "m2"]])
    // Milliseconds are whole, as docs/cli.md shows them (they were the clock arithmetic's fractions).
    for (const m of s.members) {
      expect(Number.isInteger(m.heartbeatAgeMs), String(m.heartbeatAgeMs)).toBe(true)
      expect(Number.isInteger(m.leaseLeftMs), String(m.leaseLeftMs)).toBe(true)
    }
  })

  it("--watch --json: stdout carries JSON objects only; a failed read is one line on stderr, as without --watch", async () => {
    await seed("watched")
    const viewer = `mg_cli_viewer_${randomBytes(4).toString("hex")}`
    const password = `pw-${randomBytes(8).toString("hex")}`
    const admin = await connect(db.url)
    try {
      await admin.query(`CREATE ROLE "${viewer}" LOGIN PASSWORD '${password}'`)
      await admin.query(serialised(`GRANT USAGE ON SCHEMA modulo_group TO "${viewer}"`))
      await admin.query(serialised(`GRANT SELECT ON ALL TABLES IN SCHEMA modulo_group TO "${viewer}"`))
      const url = new URL(db.url)
      url.username = viewer
      url.password = password
      const child = spawn(process.execPath, [bin, "status", "watched", "--watch", "--json", "--database-url", url.toString()], {
        env: process.env,
        stdio: ["ignore", "pipe", "pipe"]
      })
      const lines: Array<string> = []
      let stderr = ""
      readline.createInterface({ input: child.stdout }).on("line", (l) => lines.push(l))
      child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")))
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
      try {
        await eventually("a first view", async () => lines.length > 0)
        await admin.query(serialised(`REVOKE SELECT ON modulo_group.members FROM "${viewer}"`))
        await eventually("the failed read said", async () => stderr.includes("permission denied"))
        await admin.query(serialised(`GRANT SELECT ON modulo_group.members TO "${viewer}"`))
        const seen = lines.length
        await eventually("a view again", async () => lines.length > seen)
      } finally {
        child.kill("SIGINT")
      }
      expect(await exited).toBe(0)
      for (const line of lines) expect(typeof JSON.parse(line), line).toBe("object")
      expect(stderr.split("\n").filter((l) => l !== "")[0]).toBe(
        "modulo-group: database error: permission denied for table members (SQLSTATE 42501)"
      )
    } finally {
      await dropRoles(admin, viewer)
      await admin.end()
    }
  })
  it("a member whose work has not stopped past the stop timeout: `status` says for how long (text and JSON)", async () => {
    const group = "stuck"
    await seed(group)
    const c = await connect(db.url)
    try {
      // What a member's renewals write while its work ignores its interruption (`stuck`).
      await c.query(
        "UPDATE modulo_group.members SET stopping_since = now() - interval '75 seconds' WHERE group_id = $1 AND idx = 1",
        [group]
      )
    } finally {
      await c.end()
    }
    const text = await run(["status", group], env())
    expect(text.code, text.stderr).toBe(0)
    const lines = text.stdout.split("\n")
    // 75 s and the time the command took to start (seconds on a loaded machine: 1m 17s was seen).
    expect(lines.find((l) => /\bm1\b/.test(l))).toMatch(/work stopping for 1m (1[5-9]|2\d)s/)
    expect(lines.filter((l) => l.includes("work stopping"))).toHaveLength(1)
    const json = await run(["status", group, "--json"], env())
    expect(json.code, json.stderr).toBe(0)
    const members = (JSON.parse(json.stdout) as { members: ReadonlyArray<{ name: string; stoppingMs: number | null }> }).members
    const stopping = Object.fromEntries(members.map((m) => [m.name, m.stoppingMs]))
    expect(stopping["m0"]).toBeNull()
    expect(stopping["m2"]).toBeNull()
    expect(stopping["m1"]).toBeGreaterThanOrEqual(75_000)
    expect(Number.isInteger(stopping["m1"])).toBe(true)
  })
  it("indices with no member row: `status` says which, and how long changes wait for them (text and JSON)", async () => {
    const group = "missing"
    await seed(group)
    const c = await connect(db.url)
    try {
      await c.query("DELETE FROM modulo_group.members WHERE group_id = $1 AND idx = 1", [group])
      const before = await run(["status", group], env())
      expect(before.code, before.stderr).toBe(0)
      expect(before.stdout).toContain("index 1 of 3 has no member row (deleted or moved by hand?): the next join, leave or reap will wait")
      // What the first change that found it missing records (migration 0015).
      await c.query(
        `UPDATE modulo_group.groups SET missing_since = now(), missing_wait_ms = 90000, missing_indices = '{1}' WHERE group_id = $1`,
        [group]
      )
    } finally {
      await c.end()
    }
    const text = await run(["status", group], env())
    expect(text.code, text.stderr).toBe(0)
    expect(text.stdout).toMatch(/index 1 of 3 has no member row \(deleted or moved by hand\?\): no join, leave or reap for 1m (2\d|30)s more/)
    const json = await run(["status", group, "--json"], env())
    expect(json.code, json.stderr).toBe(0)
    const parsed = JSON.parse(json.stdout) as { missingIndices: ReadonlyArray<number>; changesHeldMs: number }
    expect(parsed.missingIndices).toEqual([1])
    expect(parsed.changesHeldMs).toBeGreaterThan(80_000)
    expect(parsed.changesHeldMs).toBeLessThanOrEqual(90_000)
  })
})
