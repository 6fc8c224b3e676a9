/**
 * A standard output that cannot be written (a full disk; here /dev/full): one line on stderr and exit
 * 1, also for a command that finished its work; `join` leaves its group first. An adversarial review:
 * `groups --json > /dev/full` exited 0, nothing written and nothing said.
 */
import { spawn } from "node:child_process"
import { existsSync, openSync, closeSync } from "node:fs"
import { beforeAll, describe, expect, it } from "vitest"
import { databaseUrl, randomGroupId } from "../support/Database.js"
import { connect } from "./pgSupport.js"
import { assertBuilt, bin } from "./support.js"

const full = "/dev/full"
if (!existsSync(full)) console.log("[stdout-full] skipped: no /dev/full on this machine")

const runToFull = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv, timeoutMs = 20_000) =>
  new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
    const out = openSync(full, "w")
    const child = spawn(process.execPath, [bin, ...args], { env, stdio: ["ignore", out, "pipe"] })
    closeSync(out)
    let stderr = ""
    child.stderr!.on("data", (c: Buffer) => (stderr += c.toString("utf8")))
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`modulo-group ${args.join(" ")} did not finish within ${timeoutMs} ms\n${stderr}`))
    }, timeoutMs)
    child.once("close", (code) => {
      clearTimeout(timer)
      resolve({ code, stderr })
    })
  })

describe.skipIf(!existsSync(full))("modulo-group with a standard output that cannot be written (child processes)", () => {
  const env = { ...process.env, DATABASE_URL: databaseUrl() }
  beforeAll(assertBuilt)

  it.each([["--version"], ["groups", "--json"]])("%s: one line, exit 1", async (...args) => {
    const r = await runToFull(args, env)
    expect(r.code).toBe(1)
    expect(r.stderr.trim()).toMatch(/^modulo-group: cannot write to standard output: ENOSPC/)
  })

  it("join: leaves its group, exit 1", async () => {
    const group = randomGroupId("cli-stdout-full")
    const r = await runToFull(["join", group, "--heartbeat", "200ms", "--lease", "2s", "--fence-margin", "500ms", "--statement-timeout", "1s"], env)
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/cannot write to standard output/)
    const admin = await connect(databaseUrl())
    try {
      const rows = await admin.query("SELECT 1 FROM modulo_group.members WHERE group_id = $1", [group])
      expect(rows.rowCount).toBe(0)
    } finally {
      await admin.end()
    }
  })
})
