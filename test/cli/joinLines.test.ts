/**
 * `join`'s lines and its stops, past the common path: SIGHUP (a closed terminal) is a graceful leave,
 * as SIGTERM; the lines name the group and instance as stored (NFC); a member frozen past its lease
 * prints its `fenced` record once.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { databaseUrl, randomGroupId } from "../support/Database.js"
import { connect } from "./pgSupport.js"
import { assertBuilt, converged, joinTimings, Member, run } from "./support.js"

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

  it("two SIGTERMs at once (timeout(1) signals the process, then its group) are one request to leave", async () => {
    // A review: the second killed join in the middle of its leave (exit 143, its row left to expire).
    const group = randomGroupId("cli-term-twice")
    const m = start("twice", group)
    await m.waitFor((e) => e.event === "work", 30_000, "a work line")
    m.kill("SIGTERM")
    // Apart (two pending signals of one kind are delivered as one), as timeout's two are.
    await new Promise((resolve) => setTimeout(resolve, 20))
    m.kill("SIGTERM")
    expect(await m.exited).toEqual({ code: 0, signal: null })
    expect(m.events.at(-1)?.state).toBe("left")
    const status = await run(["status", group, "--json"], env)
    expect((JSON.parse(status.stdout) as { members: ReadonlyArray<unknown> }).members).toEqual([])
  }, 60_000)

  it("a second Ctrl-C during the leave kills at once: the process dies of SIGINT (a shell shows 130) and its row is left to expire", async () => {
    const group = randomGroupId("cli-int-twice")
    const m = start("int", group)
    await m.waitFor((e) => e.event === "work", 30_000, "a work line")
    // The group's row held as a change holds it: the leave waits for it.
    const holder = await connect(databaseUrl())
    try {
      await holder.query("BEGIN")
      await holder.query("SELECT 1 FROM modulo_group.groups WHERE group_id = $1 FOR UPDATE", [group])
      m.kill("SIGINT")
      await m.waitFor((e) => e.state === "leaving", 10_000, "leaving")
      m.kill("SIGINT")
      expect(await m.exited).toEqual({ code: null, signal: "SIGINT" })
      await holder.query("ROLLBACK")
      const status = await run(["status", group, "--json"], env)
      expect((JSON.parse(status.stdout) as { members: ReadonlyArray<unknown> }).members).toHaveLength(1)
    } finally {
      await holder.end()
    }
  }, 60_000)

  it("--json names the group and the instance in NFC, as status does", async () => {
    const nfd = `${randomGroupId("cli-cafe")}-cafe\u0301`
    const m = start("nfc", nfd, [...TIMINGS, "--instance-id", "e\u0301"])
    const first = await m.waitFor(() => true, 30_000, "a first line")
    await m.waitFor((e) => e.event === "work", 30_000, "a work line")
    const status = await run(["status", nfd, "--json"], env)
    m.kill("SIGTERM")
    await m.exited
    const stored = JSON.parse(status.stdout) as { group: string; members: ReadonlyArray<{ instanceId: string }> }
    expect(stored.group).toBe(nfd.normalize("NFC"))
    expect(first.group).toBe(stored.group)
    expect(first.instance).toBe("\u00e9")
    expect(stored.members[0]!.instanceId).toBe("\u00e9")
  }, 60_000)

  it("a member frozen past its lease prints `fenced` once, not twice", async () => {
    const group = randomGroupId("cli-frozen")
    const [other, frozen] = [start("other", group), start("frozen", group)] as [Member, Member]
    const two = await converged([other, frozen], 2, 0, 30_000)
    frozen.kill("SIGSTOP")
    // Frozen until the other has reaped it (its lease ran out) and works alone.
    await converged([other], 1, two.epoch, 15_000)
    const from = frozen.events.length
    frozen.kill("SIGCONT")
    // It resumes fenced, finds its row gone, and joins again.
    await frozen.waitFor((e) => frozen.events.indexOf(e) >= from && e.state === "assigned", 20_000, "assigned again")
    for (const m of [other, frozen]) m.kill("SIGTERM")
    await Promise.all([other.exited, frozen.exited])
    const states = frozen.events.filter((e) => e.event === "state")
    expect(states.map((e) => e.state)).toContain("fenced")
    const key = (e: (typeof states)[number]) => JSON.stringify([e.state, e.epoch, e.index, e.size])
    expect(states.filter((e, i) => i > 0 && key(e) === key(states[i - 1]!)).map(key)).toEqual([])
  }, 60_000)
})
