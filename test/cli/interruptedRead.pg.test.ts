/**
 * `groups` and `status` (without --watch) interrupted by SIGINT or SIGTERM before they printed their
 * answer: one line on stderr and exit 1, as `migrate` before its schema is in place. An adversarial
 * review: they exited 0 with nothing printed, which a script could not tell from an answer. A database
 * of its own: the test holds a table lock that would stall everyone else's statements.
 */
import { spawn } from "node:child_process"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { cliWaitsOnLock, connect, eventually, type ScratchDatabase, scratchDatabase } from "./pgSupport.js"
import { assertBuilt, bin, run } from "./support.js"

describe("modulo-group groups / status interrupted before their answer (child processes)", () => {
  let db: ScratchDatabase | undefined
  beforeAll(async () => {
    assertBuilt()
    db = await scratchDatabase()
    const migrated = await run(["migrate"], { ...process.env, DATABASE_URL: db.url })
    expect(migrated.code, migrated.stderr).toBe(0)
  })
  afterAll(async () => {
    await db?.drop()
  })

  it.each([
    ["groups", ["groups", "--json"], "SIGINT"],
    ["status", ["status", "some-group", "--json"], "SIGTERM"]
  ] as const)("%s, %s: exit 1, one line, nothing on stdout", async (command, args, signal) => {
    const holder = await connect(db!.url)
    // Another connection looks: pg_stat_activity is read once per transaction, and the holder is in one.
    const watcher = await connect(db!.url)
    try {
      // Every read of the group tables waits behind this lock.
      await holder.query("BEGIN")
      await holder.query("LOCK TABLE modulo_group.groups, modulo_group.members IN ACCESS EXCLUSIVE MODE")
      const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, DATABASE_URL: db!.url }, stdio: ["ignore", "pipe", "pipe"] })
      let stdout = ""
      let stderr = ""
      child.stdout.on("data", (c: Buffer) => (stdout += c.toString("utf8")))
      child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")))
      const exited = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)))
      await eventually(`${command} to wait on the lock`, () => cliWaitsOnLock(watcher, db!.name))
      child.kill(signal)
      const code = await Promise.race([
        exited,
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${command} did not exit after ${signal}`)), 15_000))
      ])
      expect(code, stderr).toBe(1)
      expect(stderr.trim()).toBe(`modulo-group: ${command} was interrupted before it printed its answer`)
      expect(stdout).toBe("")
    } finally {
      await holder.query("ROLLBACK").catch(() => undefined)
      await holder.end()
      await watcher.end()
    }
  })
})
