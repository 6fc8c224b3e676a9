/**
 * `modulo-group join` processes with DATABASE_URL pointing at PgBouncer in transaction mode (4
 * server connections for all of them): they form, renegotiate on a join, a graceful leave and a
 * kill -9, with G1 and G2 read from their JSON Lines. Those without `--listen-url` say once that
 * notifications cannot work there and poll; the one with `--listen-url` (direct) says nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { assertBuilt, converged, expectG1G2, joinTimings, Member, run, tenures } from "../cli/support.js"
import { databaseUrl, randomGroupId } from "../support/Database.js"
import * as Bouncer from "./pgbouncer.js"

const installed = Bouncer.pgbouncerBinary() !== undefined
if (!installed) console.log(Bouncer.skipMessage)

const HEARTBEAT_MS = 300
const LEASE_MS = 3_000
const TIMINGS = joinTimings(HEARTBEAT_MS, LEASE_MS)
const START_MS = 30_000
const WARNING = "notifications cannot work"

it("join --listen-url refuses a URL that is not postgres://, without showing it", async () => {
  assertBuilt()
  const r = await run(["join", "g", "--listen-url", "mysql://u:hunter2@db/app"], { ...process.env, DATABASE_URL: databaseUrl() })
  expect(r.code).toBe(2)
  expect(r.stderr).toContain("listenUrl")
  expect(r.stderr).not.toContain("hunter2")
  expect(r.stdout).toBe("")
})

describe.skipIf(!installed)("modulo-group join behind PgBouncer (transaction mode)", () => {
  let bouncer: Bouncer.PgBouncer | undefined
  const members: Array<Member> = []
  const group = randomGroupId("bouncer-cli")

  beforeAll(async () => {
    assertBuilt()
    bouncer = await Bouncer.start(databaseUrl(), { poolMode: "transaction", poolSize: 4 })
  })
  afterAll(async () => {
    for (const m of members) m.kill("SIGKILL")
    await Promise.all(members.map((m) => m.exited))
    await bouncer?.stop()
  })

  it("forms and renegotiates on join, leave and kill -9 with G1 and G2; warns once without --listen-url", async () => {
    // MODULO_GROUP_LISTEN_URL must not leak in from the environment running the tests.
    const { MODULO_GROUP_LISTEN_URL: _, ...base } = process.env
    const env = { ...base, DATABASE_URL: bouncer!.url }
    const start = (label: string, extra: ReadonlyArray<string> = []) => {
      const m = new Member(label, group, [...TIMINGS, ...extra], env)
      members.push(m)
      return m
    }
    const [a, b, c] = ["a", "b", "c"].map((l) => start(l)) as [Member, Member, Member]
    const three = await converged([a, b, c], 3, 0, START_MS)
    const d = start("d", ["--listen-url", databaseUrl()])
    const four = await converged([a, b, c, d], 4, three.epoch, START_MS)
    b.kill("SIGTERM")
    const afterLeave = await converged([a, c, d], 3, four.epoch, LEASE_MS * 2)
    expect(await b.exited).toEqual({ code: 0, signal: null })
    c.kill("SIGKILL")
    const afterKill = await converged([a, d], 2, afterLeave.epoch, LEASE_MS * 3)
    for (const m of [a, d]) m.kill("SIGTERM")
    for (const m of [a, d]) expect(await m.exited).toEqual({ code: 0, signal: null })

    // A pooled one that ran to the end said it once (b and c may have gone before their 2 s self-test
    // ended); the direct listener did not.
    for (const m of [a, b, c]) expect(m.stderr.split(WARNING).length - 1, `${m.label}: ${m.stderr}`).toBeLessThanOrEqual(1)
    expect(a.stderr.split(WARNING).length - 1, a.stderr).toBe(1)
    expect(a.stderr).toContain("listenUrl")
    expect(d.stderr).not.toContain(WARNING)

    // G1 and G2 from the lines.
    const all = members.flatMap((m) => tenures(m.events))
    expectG1G2(all, [
      { epoch: three.epoch, size: 3 },
      { epoch: four.epoch, size: 4 },
      { epoch: afterLeave.epoch, size: 3 },
      { epoch: afterKill.epoch, size: 2 }
    ])
    for (const m of members) expect(m.garbage).toEqual([])
  }, 120_000)
})
