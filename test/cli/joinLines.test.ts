/**
 * `join`'s lines and its stops, past the common path: SIGHUP (a closed terminal) is a graceful leave,
 * as SIGTERM.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { databaseUrl, randomGroupId } from "../support/Database.js"
import { assertBuilt, converged, joinTimings, Member } from "./support.js"

// Lease 3 s > heartbeat 200 ms + fence margin 1 s + statement timeout 1 s.
const TIMINGS = joinTimings(200, 3_000)

describe("modulo-group join lines and stops (child processes)", () => {
  const env = { ...process.env, DATABASE_URL: databaseUrl() }
  const members: Array<Member> = []
  const start = (label: string, group: string, args: ReadonlyArray<string> = TIMINGS) => {
    const m = new Member(label, group, args, env)
    members.push(m)
    return m
  }

  beforeAll(assertBuilt)
  afterAll(async () => {
    for (const m of members) m.kill("SIGKILL")
  })

  it("SIGHUP leaves gracefully: exit 0 after `left`, and the other takes over before any lease could expire", async () => {
    const group = randomGroupId("cli-hup")
    const [a, b] = [start("a", group), start("b", group)] as [Member, Member]
    const two = await converged([a, b], 2, 0, 30_000)
    const hupAt = Date.now()
    b.kill("SIGHUP")
    expect(await b.exited).toEqual({ code: 0, signal: null })
    expect(b.events.at(-1)?.state).toBe("left")
    const alone = await converged([a], 1, two.epoch, 10_000)
    expect(alone.lastMs - hupAt).toBeLessThan(3_000)
    a.kill("SIGTERM")
    expect(await a.exited).toEqual({ code: 0, signal: null })
  }, 60_000)
})
