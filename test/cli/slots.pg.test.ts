/**
 * `join --slots S` and `status` in slots mode (child processes of the built CLI, real PostgreSQL):
 * the JSON events carry `slots` (sorted) and `size` with `index: null`; when a second member joins,
 * the first prints its smaller set before the second prints the slots it took (per slot, the giving
 * line precedes the taking line); `status` shows each member's slot count and ranges; a member that
 * asks for another S never works, and exits 1.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { assertBuilt, joinTimings, Member, run } from "./support.js"
import { type ScratchDatabase, scratchDatabase } from "./pgSupport.js"

describe("modulo-group join --slots (child processes)", () => {
  let db: ScratchDatabase
  const env = () => ({ ...process.env, DATABASE_URL: db.url })
  const members: Array<Member> = []

  beforeAll(async () => {
    assertBuilt()
    db = await scratchDatabase()
  })
  afterAll(async () => {
    for (const m of members) m.kill("SIGKILL")
    await db?.drop()
  })

  it("after a hang past its lease (SIGSTOP, SIGCONT) a member prints no work tick under the slots it held (G3)", async () => {
    const group = "slots-cli-hang"
    const a = new Member("a", group, ["--slots", "4", ...joinTimings(200, 3_000)], env())
    members.push(a)
    await a.waitFor((e) => e.event === "work" && e.slots?.length === 4, 20_000, "a working 4 slots")
    a.kill("SIGSTOP")
    // The fault: frozen past its lease deadline (3 s - 1 s margin) and past the lease itself.
    await new Promise((r) => setTimeout(r, 3_500))
    const from = a.events.length
    a.kill("SIGCONT")
    await a.waitFor((e) => a.events.indexOf(e) >= from && e.event === "work" && (e.slots?.length ?? 0) === 0, 20_000, "a stopped every slot")
    // Every line after the resume, up to the one with no slot left, names a smaller set than the one
    // before it: the slots' stops. Before the fix the work tick, due first, printed all 4 again.
    let last = 4
    for (const e of a.events.slice(from)) {
      if (e.event !== "work") continue
      expect(e.slots?.length ?? 0, JSON.stringify(e)).toBeLessThan(last)
      last = e.slots?.length ?? 0
      if (last === 0) break
    }
  }, 60_000)

  it("prints slot sets; the giving line precedes the taking line; status shows counts and ranges", async () => {
    const group = "slots-cli"
    const a = new Member("a", group, ["--slots", "8", ...joinTimings(200, 3_000)], env())
    members.push(a)
    await a.waitFor((e) => e.event === "work" && e.slots?.length === 8, 20_000, "a working 8 slots")
    const b = new Member("b", group, ["--slots", "8", ...joinTimings(200, 3_000)], env())
    members.push(b)
    await b.waitFor((e) => e.event === "work" && e.slots?.length === 4, 20_000, "b working 4 slots")
    await a.waitFor((e) => e.event === "work" && e.slots?.length === 4, 20_000, "a working 4 slots")
    for (const e of [...a.events, ...b.events].filter((x) => x.event === "work")) {
      expect(e.index).toBeNull()
      expect([...(e.slots ?? [])]).toEqual([...(e.slots ?? [])].sort((x, y) => x - y))
    }
    const bSlots = b.events.filter((e) => e.event === "work" && e.slots?.length === 4)[0]!.slots!
    // Per slot b took: a's last line that still had it is before b's first line with it.
    for (const slot of bSlots) {
      const aGave = a.events.findIndex((e, i) => e.event === "work" && !(e.slots ?? []).includes(slot) && a.events.slice(0, i).some((x) => (x.slots ?? []).includes(slot)))
      const bTook = b.events.find((e) => e.event === "work" && (e.slots ?? []).includes(slot))!
      expect(aGave).toBeGreaterThanOrEqual(0)
      expect(Date.parse(a.events[aGave]!.ts)).toBeLessThanOrEqual(Date.parse(bTook.ts))
    }
    expect(b.events.find((e) => e.event === "work")!.size).toBe(2)
    const status = await run(["status", group], env())
    expect(status.code, status.stderr).toBe(0)
    expect(status.stdout).toMatch(/size 2, 8 slots/)
    expect(status.stdout).toMatch(/SLOTS\s+RANGES\s+NAME/)
    expect(status.stdout).toContain("0-3")
    expect(status.stdout).toContain("4-7")
    const json = JSON.parse((await run(["status", group, "--json"], env())).stdout) as {
      slots: number
      members: ReadonlyArray<{ slots: ReadonlyArray<number>; index: number | null }>
    }
    expect(json.slots).toBe(8)
    expect(json.members.map((m) => m.slots).sort()).toEqual([[0, 1, 2, 3], [4, 5, 6, 7]])
    // Another slot count: refused, never works.
    const c = new Member("c", group, ["--slots", "16", ...joinTimings(200, 3_000)], env())
    members.push(c)
    // Until it says why (a process start can take seconds on a loaded host), then: it never worked.
    const refusal = /slots mode with 8 slots, but this member asked for slots mode with 16 slots/
    for (let waited = 0; !refusal.test(c.stderr) && waited < 20_000; waited += 100) await new Promise((r) => setTimeout(r, 100))
    expect(c.stderr).toMatch(refusal)
    // A refusal no retry overcomes: it exits 1 (it used to wait for ever).
    expect(await c.exited).toEqual({ code: 1, signal: null })
    expect(c.events.filter((e) => e.event === "work")).toEqual([])
    for (const m of [a, b, c]) m.kill("SIGTERM")
    await Promise.all([a.exited, b.exited, c.exited])
  }, 60_000)
})
