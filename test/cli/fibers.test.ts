/**
 * `modulo-group join --fibers N`: N members in one process, each with its own JSON Lines (its own
 * `member` id), G1/G2 over their lines as for separate processes, and SIGTERM makes every one leave.
 */
import { spawn } from "node:child_process"
import * as readline from "node:readline"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { databaseUrl, randomGroupId } from "../support/Database.js"
import { assertBuilt, bin, joinTimings, type JoinEvent, Member, run, tenures } from "./support.js"

const TIMINGS = joinTimings(200, 3_000)
// Starting node with Effect takes a second or more on a busy machine.
const START_MS = 30_000

describe("modulo-group join --fibers (child process)", () => {
  const env = { ...process.env, DATABASE_URL: databaseUrl() }
  const hosts: Array<Member> = []

  beforeAll(assertBuilt)
  afterAll(() => {
    for (const h of hosts) h.kill("SIGKILL")
  })

  it("--fibers 4 --json: a group of 4 with indices {0,1,2,3}, each line its member's; SIGTERM: all four leave", async () => {
    const group = randomGroupId("cli-fibers")
    const host = new Member("fibers", group, ["--fibers", "4", ...TIMINGS], env)
    hosts.push(host)

    // Until four members each printed a work line at size 4 in one epoch.
    const formedIn = (events: ReadonlyArray<JoinEvent>): number | undefined => {
      const byEpoch = new Map<number, Map<string, number>>()
      for (const e of events) {
        if (e.event !== "work" || e.size !== 4) continue
        const m = byEpoch.get(e.epoch!) ?? new Map<string, number>()
        m.set(e.member, e.index!)
        byEpoch.set(e.epoch!, m)
        if (m.size === 4) return e.epoch!
      }
      return undefined
    }
    await host.waitFor(() => formedIn(host.events) !== undefined, START_MS, "work lines of four members at size 4 in one epoch")
    const epoch = formedIn(host.events)!
    const indices = new Map<string, number>()
    for (const e of host.events) if (e.event === "work" && e.epoch === epoch) indices.set(e.member, e.index!)
    expect(indices.size).toBe(4)
    expect(new Set(indices.values())).toEqual(new Set([0, 1, 2, 3]))

    // Every line carries a member id, one of four, and each member's lines keep their own order.
    expect(host.garbage).toEqual([])
    const ids = new Set(host.events.map((e) => e.member))
    expect(ids.size).toBe(4)
    for (const id of ids) expect(id).toMatch(/^[0-9a-f-]{36}$/)
    const byMember = (id: string) => host.events.filter((e) => e.member === id)
    for (const id of ids) {
      expect(byMember(id)[0]).toMatchObject({ event: "state", state: "joining", group })
      tenures(byMember(id)) // throws on a work line outside its assignment
    }

    // G1/G2 across the four: no two tenures on one index overlap, whatever their epochs.
    const all = [...ids].flatMap((id) => tenures(byMember(id)))
    for (const a of all) {
      for (const b of all) {
        if (a === b || a.index !== b.index || a.member === b.member) continue
        expect(a.end < b.start || b.end < a.start, `${JSON.stringify(a)} overlaps ${JSON.stringify(b)}`).toBe(true)
      }
    }

    // SIGTERM: every member prints `leaving` then `left`, and the process exits 0.
    host.kill("SIGTERM")
    expect(await host.exited).toEqual({ code: 0, signal: null })
    for (const id of ids) {
      const states = byMember(id).filter((e) => e.event === "state").map((e) => e.state)
      expect(states.slice(-2)).toEqual(["leaving", "left"])
    }
    const status = await run(["status", group, "--json"], env)
    expect(status.code, status.stderr).toBe(0)
    expect(JSON.parse(status.stdout)).toMatchObject({ members: [] })
  })

  it("text lines start with their member's tag; SIGTERM: both leave", async () => {
    const group = randomGroupId("cli-fibers-text")
    const child = spawn(process.execPath, [bin, "join", group, "--fibers", "2", ...TIMINGS], {
      env,
      stdio: ["ignore", "pipe", "pipe"]
    })
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
    const lines: Array<string> = []
    const working = new Set<string>()
    let onWork: () => void = () => {}
    const bothWork = new Promise<void>((resolve) => (onWork = resolve))
    readline.createInterface({ input: child.stdout }).on("line", (line) => {
      lines.push(line)
      const m = /^([0-9a-f]{8}) .*:\[\d+\/2\] working away as usual\.\.\.$/.exec(line)
      if (m) working.add(m[1]!)
      if (working.size === 2) onWork()
    })
    try {
      await Promise.race([
        bothWork,
        new Promise((_, reject) => setTimeout(() => reject(new Error(`no work lines of two members:\n${lines.join("\n")}`)), START_MS))
      ])
    } finally {
      child.kill("SIGTERM")
    }
    expect(await exited).toBe(0)
    for (const line of lines) expect(line).toMatch(/^[0-9a-f]{8} /)
    for (const tag of working) {
      const own = lines.filter((l) => l.startsWith(`${tag} `))
      expect(own[0]).toBe(`${tag} ${group}: joining`)
      expect(own.slice(-2)).toEqual([`${tag} ${group}: leaving`, `${tag} ${group}: left`])
    }
  })

  it.each([["0"], ["10001"], ["2.5"], ["many"]])("--fibers %s: a usage error (exit 2) naming the option", async (n) => {
    const r = await run(["join", "g", "--fibers", n], env)
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/fibers/)
    expect(r.stdout).toBe("")
  })

  it("--fibers 2 with an instance id: a usage error", async () => {
    const r = await run(["join", "g", "--fibers", "2", "--instance-id", "w1"], env)
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/--fibers .*instance id/)
  })

  // Characters are code points: 198 emoji and "#12" are 201 (the message said 399, counting UTF-16 units; a review).
  it.each(["n", "\u{1F600}"])("--fibers 12 with a name (of %s) that fits alone but not with #12: a usage error before any database work", async (char) => {
    const group = randomGroupId("cli-fibers-name")
    const r = await run(["join", group, "--fibers", "12", "--name", char.repeat(198)], env)
    expect(r.code).toBe(2)
    expect(r.stderr.trim()).toBe(
      "modulo-group: --name: with --fibers 12 each member is named <name>#<n>, 201 characters for the last; names are at most 200 characters: shorten --name"
    )
    expect(r.stdout).toBe("")
    // Before: nine members joined and left, and the group's row stayed behind.
    const listed = await run(["groups", "--json"], env)
    expect(JSON.parse(listed.stdout).map((g: { group: string }) => g.group)).not.toContain(group)
  })
})
