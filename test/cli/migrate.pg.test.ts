/**
 * `migrate` exits 0 only with the schema in place; a damaged schema (a table or column missing
 * although its version is recorded) is reported by `check`, `run`, `status` and `join` with what is
 * missing, and repaired by `migrate`. Each test has a database of its own.
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Effect, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { afterEach, beforeAll, describe, expect, it } from "vitest"
import * as Migrations from "../../src/Migrations.js"
import { assertBuilt, run } from "./support.js"
import { cliWaitsOnLock, connect, eventually, type ScratchDatabase, scratchDatabase } from "./pgSupport.js"

// "modulo" in ASCII: the key Migrations takes with pg_advisory_xact_lock.
const MIGRATION_LOCK = 0x6d6f64756c6f
const FAILURE = 1

const oneLine = (stderr: string): string => {
  const lines = stderr.split("\n").filter((l) => l.trim() !== "")
  expect(lines, `one line on stderr, got:\n${stderr}`).toHaveLength(1)
  return lines[0]!
}

const schemaInstalled = async (url: string): Promise<boolean> => {
  const c = await connect(url)
  try {
    return (await c.query("SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'modulo_group'")).rows[0].n > 0
  } finally {
    await c.end()
  }
}

const exec = async (url: string, statement: string): Promise<void> => {
  const c = await connect(url)
  try {
    await c.query(statement)
  } finally {
    await c.end()
  }
}

describe("modulo-group migrate (child processes)", () => {
  const dbs: Array<ScratchDatabase> = []
  const fresh = async () => {
    const db = await scratchDatabase()
    dbs.push(db)
    return { db, env: { ...process.env, DATABASE_URL: db.url } }
  }
  beforeAll(assertBuilt)
  afterEach(async () => {
    for (const db of dbs.splice(0)) await db.drop()
  })

  it.each(["SIGINT", "SIGTERM"] as const)("interrupted by %s before it applied anything: exit 1, nothing applied", async (signal) => {
    const { db, env } = await fresh()
    // Hold the migration lock so that migrate waits inside its transaction.
    const holder = await connect(db.url)
    try {
      await holder.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK])
      const { spawn } = await import("node:child_process")
      const { bin } = await import("./support.js")
      const child = spawn(process.execPath, [bin, "migrate"], { env, stdio: ["ignore", "pipe", "pipe"] })
      let stdout = ""
      let stderr = ""
      child.stdout.on("data", (c: Buffer) => (stdout += c.toString("utf8")))
      child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")))
      const exited = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)))
      await eventually("migrate to wait on the migration lock", () => cliWaitsOnLock(holder, db.name))
      child.kill(signal)
      const code = await Promise.race([
        exited,
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`migrate did not exit after ${signal}`)), 15_000))
      ])
      expect(code, stderr).toBe(FAILURE)
      expect(oneLine(stderr)).toBe(
        "modulo-group: migrate was interrupted before the schema was in place (nothing was applied); run `modulo-group migrate` again"
      )
      expect(stdout).toBe("")
    } finally {
      await holder.end()
    }
    expect(await schemaInstalled(db.url)).toBe(false)
    // And once nobody holds the lock, it applies everything.
    const again = await run(["migrate"], env)
    expect(again.code, again.stderr).toBe(0)
    expect(again.stdout).toMatch(/: applied 0001_init, 0002_consistent_views.*; now at version \d+\n$/)
  })

  // A review (attack110): a fleet holding its schema back with MODULO_GROUP_MIGRATE=false had it
  // upgraded by any `join`. `join` now reads it: false checks the schema instead of migrating it.
  it("join with MODULO_GROUP_MIGRATE=false does not migrate: on an empty database it fails saying so", async () => {
    const { env } = await fresh()
    const join = await run(["join", "g", "--heartbeat", "200ms", "--lease", "4s", "--fence-margin", "1s", "--statement-timeout", "1s"], {
      ...env,
      MODULO_GROUP_MIGRATE: "false"
    }, 20_000)
    expect(join.code).toBe(FAILURE)
    expect(join.stderr).toContain("The modulo_group schema is not installed and migrations are disabled")
    const status = await run(["status", "g"], env)
    expect(status.stdout + status.stderr).toContain("the modulo_group schema is not installed yet")
  })

  it("a failure exits 1 with its message", async () => {
    const { env } = await fresh()
    const r = await run(["migrate"], { ...env, DATABASE_URL: env.DATABASE_URL.replace(/\/mg_cli_/, "/mg_cli_missing_") })
    expect(r.code).toBe(FAILURE)
    expect(oneLine(r.stderr)).toMatch(/^modulo-group: cannot connect to the database at .*does not exist/)
  })

  it("a dropped table: status and join fail naming it, migrate repairs it", async () => {
    const { db, env } = await fresh()
    expect((await run(["migrate"], env)).code).toBe(0)
    await exec(db.url, "DROP TABLE modulo_group.members")

    const damaged =
      "modulo-group: The modulo_group schema (version 2) is damaged: missing table modulo_group.members: run `modulo-group migrate` to repair it"
    const status = await run(["status", "g"], env)
    expect(status.code).toBe(FAILURE)
    expect(oneLine(status.stderr)).toBe(damaged.replace("version 2", `version ${Migrations.schemaVersion}`))

    // join fails at once instead of retrying 42P01 forever.
    const join = await run(["join", "g", "--heartbeat", "200ms", "--lease", "4s", "--fence-margin", "1s", "--statement-timeout", "1s"], env, 20_000)
    expect(join.code).toBe(FAILURE)
    expect(oneLine(join.stderr)).toBe(damaged.replace("version 2", `version ${Migrations.schemaVersion}`))
    expect(join.stdout).toBe("")

    const repaired = await run(["migrate"], env)
    expect(repaired.code, repaired.stderr).toBe(0)
    expect(repaired.stdout).toMatch(
      /: repaired the damaged schema \(it lacked table modulo_group\.members\): re-applied 0001_init, 0002_consistent_views.*; now at version \d+\n$/
    )
    const again = await run(["migrate"], env)
    expect(again.code).toBe(0)
    expect(again.stdout).toMatch(/already at version \d+, nothing to do\n$/)
    const groups = await run(["groups"], env)
    expect(groups.code, groups.stderr).toBe(0)
  })

  // A review: with the commit-time check's trigger disabled by hand, fenced writes committed without
  // it and neither migrate nor join noticed; with it dropped, every fenced call failed on 42704 and
  // nothing pointed to the repair.
  it("a disabled or dropped trigger is named, and repaired", async () => {
    const { db, env } = await fresh()
    expect((await run(["migrate"], env)).code).toBe(0)
    await exec(db.url, "ALTER TABLE modulo_group.fence_checks DISABLE TRIGGER fence_check_at_commit")
    await exec(db.url, "DROP TRIGGER slot_token_guard ON modulo_group.slots")
    await exec(db.url, "ALTER TABLE modulo_group.members ENABLE REPLICA TRIGGER forget_missing_member")
    // Enabled, but not ALWAYS: it would not fire under session_replication_role = replica (a review).
    await exec(db.url, "ALTER TABLE modulo_group.groups ENABLE TRIGGER slot_count_guard")
    const join = await run(["join", "g", "--heartbeat", "200ms", "--lease", "4s", "--fence-margin", "1s", "--statement-timeout", "1s"], env, 20_000)
    expect(join.code).toBe(FAILURE)
    expect(oneLine(join.stderr)).toMatch(
      /damaged: missing trigger fence_check_at_commit on modulo_group\.fence_checks \(dropped or disabled\), trigger slot_token_guard on modulo_group\.slots \(dropped or disabled\), trigger forget_missing_member on modulo_group\.members \(dropped or disabled\), trigger slot_count_guard on modulo_group\.groups \(enabled for ordinary sessions only, not ALWAYS\): run `modulo-group migrate` to repair it$/
    )
    const repaired = await run(["migrate"], env)
    expect(repaired.code, repaired.stderr).toBe(0)
    expect(repaired.stdout).toContain("repaired the damaged schema (it lacked trigger fence_check_at_commit")
    const enabled = await connect(db.url)
    try {
      const r = await enabled.query<{ tgname: string; tgenabled: string }>(
        `SELECT t.tgname, t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
          WHERE c.relnamespace = 'modulo_group'::regnamespace AND t.tgname IN ('fence_check_at_commit', 'slot_token_guard', 'forget_missing_member', 'slot_count_guard')
          ORDER BY t.tgname`
      )
      expect(r.rows).toEqual([
        { tgname: "fence_check_at_commit", tgenabled: "O" },
        { tgname: "forget_missing_member", tgenabled: "A" },
        { tgname: "slot_count_guard", tgenabled: "A" },
        { tgname: "slot_token_guard", tgenabled: "O" }
      ])
    } finally {
      await enabled.end()
    }
    expect((await run(["groups"], env)).code).toBe(0)
  })

  // A review: `DISABLE TRIGGER ALL` (a superuser's bulk load, `pg_restore --disable-triggers`) also
  // disables the internal triggers of the deferrable UNIQUE (group_id, idx) (G1's backstop in the
  // database) and of the foreign keys; the check named only the library's own triggers, and the
  // repair, re-creating those, said it repaired while duplicate indices committed after it.
  it("DISABLE TRIGGER ALL: the constraints whose checks are off are named, and the repair turns them on", async () => {
    const { db, env } = await fresh()
    expect((await run(["migrate"], env)).code).toBe(0)
    await exec(db.url, "ALTER TABLE modulo_group.members DISABLE TRIGGER ALL")
    const groups = await run(["groups"], env)
    expect(groups.code).toBe(FAILURE)
    expect(oneLine(groups.stderr)).toMatch(/damaged: missing .*the check of constraint \S+ on modulo_group\.members \(its trigger disabled\)/)
    const repaired = await run(["migrate"], env)
    expect(repaired.code, repaired.stderr).toBe(0)
    expect(repaired.stdout).toContain("repaired the damaged schema")
    const c = await connect(db.url)
    try {
      const off = await c.query("SELECT tgname FROM pg_trigger WHERE tgrelid = 'modulo_group.members'::regclass AND tgenabled NOT IN ('O', 'A')")
      expect(off.rows).toEqual([])
      await c.query("INSERT INTO modulo_group.groups (group_id, epoch, size) VALUES ('dup', 1, 2)")
      const dup = await c.query(
        `INSERT INTO modulo_group.members (member_id, group_id, idx, lease_expires_at, heartbeat_at, joined_at)
         VALUES (gen_random_uuid(), 'dup', 0, now() + interval '1 minute', now(), now()),
                (gen_random_uuid(), 'dup', 0, now() + interval '1 minute', now(), now())`
      ).then(() => "committed", (e: Error) => `refused: ${e.message}`)
      expect(dup).toMatch(/^refused: duplicate key/)
    } finally {
      await c.end()
    }
    expect((await run(["groups"], env)).code).toBe(0)
  })

  // A review: run by the schema's owner, not a superuser, the repair failed as "Database unavailable:
  // permission denied: ... is a system trigger", saying neither that the schema is damaged nor what to do.
  it("DISABLE TRIGGER ALL, repaired by an owner that is not a superuser: damaged, and a superuser is needed", async () => {
    const { db, env } = await fresh()
    const role = `mg_cli_owner_${randomBytes(4).toString("hex")}`
    const password = `pw-${randomBytes(8).toString("hex")}`
    await exec(db.url, `CREATE ROLE ${role} LOGIN PASSWORD '${password}'`)
    await exec(db.url, `GRANT CREATE ON DATABASE "${new URL(db.url).pathname.slice(1)}" TO ${role}`)
    const owner = new URL(env.DATABASE_URL)
    owner.username = role
    owner.password = password
    const asOwner = { ...env, DATABASE_URL: owner.toString() }
    try {
      expect((await run(["migrate"], asOwner)).code).toBe(0)
      await exec(db.url, "ALTER TABLE modulo_group.members DISABLE TRIGGER ALL")
      const repaired = await run(["migrate"], asOwner)
      expect(repaired.code).toBe(FAILURE)
      expect(oneLine(repaired.stderr)).toMatch(
        /damaged: missing .*the check of constraint \S+ on modulo_group\.members \(its trigger disabled\).*: enabling a constraint's trigger needs a superuser: run `modulo-group migrate` as one/
      )
      // Nothing of the repair was kept; a superuser's migrate repairs it.
      const superuser = await run(["migrate"], env)
      expect(superuser.code, superuser.stderr).toBe(0)
      expect(superuser.stdout).toContain("repaired the damaged schema")
    } finally {
      await exec(db.url, "DROP SCHEMA IF EXISTS modulo_group CASCADE").catch(() => undefined)
      await exec(db.url, `DROP OWNED BY ${role}`).catch(() => undefined)
      await exec(db.url, `DROP ROLE ${role}`).catch(() => undefined)
    }
  })

  it("a dropped column is named too, and repaired", async () => {
    const { db, env } = await fresh()
    expect((await run(["migrate"], env)).code).toBe(0)
    await exec(db.url, "ALTER TABLE modulo_group.groups DROP COLUMN incarnation")
    await exec(db.url, "ALTER TABLE modulo_group.members DROP COLUMN stopping_since")
    const groups = await run(["groups"], env)
    expect(groups.code).toBe(FAILURE)
    expect(oneLine(groups.stderr)).toMatch(
      /damaged: missing column modulo_group\.groups\.incarnation, column modulo_group\.members\.stopping_since: run `modulo-group migrate` to repair it$/
    )
    const repaired = await run(["migrate"], env)
    expect(repaired.code, repaired.stderr).toBe(0)
    expect(repaired.stdout).toContain(
      "repaired the damaged schema (it lacked column modulo_group.groups.incarnation, column modulo_group.members.stopping_since)"
    )
    expect((await run(["groups"], env)).code).toBe(0)
  })
})

describe("Migrations.check / run / repair on a damaged schema", () => {
  it("check and run fail with SchemaIncomplete naming what is missing; repair restores it under the lock", async () => {
    const db = await scratchDatabase()
    try {
      const layer = PgClient.layer({ url: Redacted.make(db.url) })
      const program = Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* Migrations.run
        expect(yield* Migrations.missingObjects()).toEqual([])
        yield* sql`DROP TABLE modulo_group.members`
        const checked = yield* Effect.flip(Migrations.check)
        expect(checked).toBeInstanceOf(Migrations.SchemaIncomplete)
        expect(checked._tag).toBe("SchemaMismatch")
        expect((checked as Migrations.SchemaIncomplete).missing).toEqual(["table modulo_group.members"])
        const ran = yield* Effect.flip(Migrations.run)
        expect(ran.message).toMatch(/missing table modulo_group\.members: run `modulo-group migrate`/)
        // Many at once: one repairs, the others find it done.
        const results = yield* Effect.all(Array.from({ length: 4 }, () => Migrations.repair), { concurrency: "unbounded" })
        expect(results.filter((r) => r.missing.length > 0)).toHaveLength(1)
        yield* Migrations.check
        expect(yield* Migrations.run).toEqual([])
      })
      await Effect.runPromise(program.pipe(Effect.provide(layer), Effect.scoped))
    } finally {
      await db.drop()
    }
  })
})
