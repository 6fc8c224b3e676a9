/**
 * A review of the command line: `modulo-group ui` crashes on a request whose group in the path is not valid
 * percent-encoding (`GET /api/groups/%ZZ`, `GET /events/%ZZ`): `decodeURIComponent` throws inside the
 * request handler, uncaught, and the process dies with a minified stack on stderr (exit 1). Anyone
 * who can reach the port (any web page the operator has open can make the browser send the request to
 * 127.0.0.1: the Host header is loopback, so the host check passes) takes the dashboard down.
 * Expected: 400 (or 404), the server still up.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as http from "node:http"
import * as readline from "node:readline"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type ScratchDatabase, scratchDatabase } from "../cli/pgSupport.js"
import { assertBuilt, bin, run } from "../cli/support.js"

const get = (url: string): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    const req = http.get(url, (res) => {
      let body = ""
      res.on("data", (c: Buffer) => (body += c.toString("utf8")))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on("error", reject)
    req.setTimeout(3_000, () => req.destroy(new Error("timeout")))
  })

describe("ui and a malformed path", () => {
  let db: ScratchDatabase
  let ui: ChildProcess | undefined
  let base = ""
  let stderr = ""
  let exited: { code: number | null } | undefined
  const env = () => ({ ...process.env, DATABASE_URL: db.url })
  beforeAll(async () => {
    assertBuilt()
    db = await scratchDatabase()
    const migrated = await run(["migrate"], env())
    expect(migrated.code, migrated.stderr).toBe(0)
  })
  afterAll(async () => {
    ui?.kill("SIGINT")
    await db?.drop()
  })

  const start = async () => {
    stderr = ""
    exited = undefined
    const mine = spawn(process.execPath, [bin, "ui", "--port", "0"], { env: env(), stdio: ["ignore", "pipe", "pipe"] })
    ui = mine
    mine.stderr!.on("data", (c: Buffer) => {
      if (ui === mine) stderr += c.toString("utf8")
    })
    // This server's exit only (the previous test's, stopped at its end, may come after this start).
    mine.once("exit", (code) => {
      if (ui === mine) exited = { code }
    })
    base = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("ui did not start")), 30_000)
      readline.createInterface({ input: ui!.stdout! }).on("line", (line) => {
        const m = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(line)
        if (m !== null) {
          clearTimeout(timer)
          resolve(m[1]!)
        }
      })
    })
  }

  for (const path of ["api/groups/%ZZ", "events/%E0%A4%A"]) {
    it(`GET /${path} answers an error and the server stays up`, async () => {
      await start()
      const r = await get(`${base}${path}`).catch((e: Error) => ({ status: 0, body: e.message }))
      await new Promise((r) => setTimeout(r, 300))
      expect(stderr).not.toContain("URIError")
      expect(exited).toBeUndefined()
      expect(r.status).toBeGreaterThanOrEqual(400)
      const page = await get(`${base}api/groups`)
      expect(page.status).toBe(200)
      ui?.kill("SIGINT")
    })
  }
})
