/**
 * PgBouncer refusing clients (`max_client_conn` reached): it answers a connection attempt with its own
 * error, SQLSTATE 08P01 "no more connections allowed (max_client_conn)", not the server's 53300. The
 * members take it for what it is, a refusal of connections (test/connections/refused.pg.test.ts has
 * the server's own): each says why once, retries with backoff, says when it got through, and the
 * group forms once PgBouncer takes clients again; `modulo-group join` waits it out at start. Before,
 * each retry was said as a failed join, and `join` exited at once ("cannot connect").
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Logger } from "effect"
import { spawn } from "node:child_process"
import pg from "pg"
import { formAfterRefusals } from "../connections/support.js"
import { databaseUrl, randomGroupId } from "../support/Database.js"
import { eventually } from "../cli/pgSupport.js"
import { assertBuilt, bin } from "../cli/support.js"
import * as Bouncer from "./pgbouncer.js"

const installed = Bouncer.pgbouncerBinary() !== undefined
if (!installed) console.log(Bouncer.skipMessage)

const lines: Array<string> = []
const capture = Logger.add(Logger.make(({ message }) => {
  lines.push(Array.isArray(message) ? message.join(" ") : String(message))
}))
const count = (re: RegExp) => lines.filter((l) => re.test(l)).length

// The members' pool (2) and their notification connection: what PgBouncer takes once it is free.
const clients = 3
let bouncer: Bouncer.PgBouncer | undefined

/** Takes every client slot of PgBouncer; `release` gives them back. */
const holdEverySlot = async () => {
  const held: Array<pg.Client> = []
  for (let i = 0; i < clients; i++) {
    const c = new pg.Client({ connectionString: bouncer!.url })
    c.on("error", () => undefined)
    await c.connect()
    held.push(c)
  }
  return { release: () => Promise.all(held.map((c) => c.end().catch(() => undefined))) }
}

describe.skipIf(!installed)("behind PgBouncer at max_client_conn", () => {
  beforeAll(async () => {
    bouncer = await Bouncer.start(databaseUrl(), { poolMode: "transaction", poolSize: 4, maxClientConn: clients })
  })
  afterAll(async () => {
    await bouncer?.stop()
  })

  it.live("each member says once that connections are refused, retries, and the group forms when PgBouncer takes clients again", () =>
    Effect.gen(function*() {
      // Every client slot taken by someone else.
      const holders = yield* Effect.promise(holdEverySlot)
      // What PgBouncer says to one more client: its own refusal, not the server's.
      const refused = yield* Effect.promise(async () => {
        const c = new pg.Client({ connectionString: bouncer!.url })
        c.on("error", () => undefined)
        return c.connect().then(() => c.end().then(() => undefined), (e: { code?: string; message?: string }) => e)
      })
      expect(refused?.code).toBe("08P01")
      expect(refused?.message).toMatch(/max_client_conn/)

      const violations = yield* formAfterRefusals(
        bouncer!.url,
        randomGroupId("bouncer-refused"),
        () => count(/refuses connections/) >= 4,
        Effect.promise(holders.release)
      )
      expect(violations).toEqual([])
      expect(count(/refuses connections/)).toBe(4)
      expect(lines.filter((l) => /refuses connections/.test(l))[0]).toMatch(/max_client_conn/)
      expect(count(/join failed|heartbeat failed/)).toBe(0)
      expect(count(/connected to the database again/)).toBe(4)
    }).pipe(Effect.scoped, Effect.provide(capture)), 60_000)

  it("join waits out PgBouncer's refusal at start, says so once, and joins when let in", async () => {
    assertBuilt()
    const holders = await holdEverySlot()
    let stdout = ""
    let stderr = ""
    let exited: number | null | undefined = undefined
    const { MODULO_GROUP_LISTEN_URL: _, ...base } = process.env
    const child = spawn(process.execPath, [bin, "join", randomGroupId("bouncer-cli-refused"), "--json", "--heartbeat", "300ms"], {
      env: { ...base, DATABASE_URL: bouncer!.url },
      stdio: ["ignore", "pipe", "pipe"]
    })
    try {
      child.stdout.on("data", (c: Buffer) => (stdout += c.toString("utf8")))
      child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")))
      child.once("exit", (code) => (exited = code))
      await eventually("the refusal said", async () => /refuses connections/.test(stderr) || exited !== undefined, 30_000)
      expect(stderr).not.toMatch(/cannot connect/)
      expect(stderr).toMatch(/refuses connections \(no more connections allowed \(max_client_conn\)/)
      await new Promise((r) => setTimeout(r, 1_500))
      expect(exited).toBeUndefined()
      await holders.release()
      await eventually("assigned", async () => /"state":"assigned"/.test(stdout), 30_000)
      child.kill("SIGINT")
      await eventually("exit", async () => exited !== undefined, 15_000)
      expect(exited).toBe(0)
      expect(stderr.match(/refuses connections/g)?.length).toBe(1)
    } finally {
      if (exited === undefined) child.kill("SIGKILL")
      await holders.release()
    }
  }, 90_000)
})
