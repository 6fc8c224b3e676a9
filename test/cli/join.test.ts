/**
 * `modulo-group join` as users run it: separate processes on one database. Reads their JSON Lines
 * and checks G1 (exact cover within an epoch) and G2 (no overlap across epochs) through joins, a
 * graceful leave (SIGTERM) and a crash (kill -9).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { databaseUrl, randomGroupId } from "../support/Database.js"
import { assertBuilt, converged, expectG1G2, joinTimings, type JoinEvent, Member, tenures } from "./support.js"

// Short timings: lease 3 s > heartbeat 200 ms + fence margin 1 s + statement timeout 1 s.
const HEARTBEAT_MS = 200
const LEASE_MS = 3_000
const TIMINGS = joinTimings(HEARTBEAT_MS, LEASE_MS)
// Starting node with Effect takes a second or more on a busy machine.
const START_MS = 30_000

const ENDINGS = new Set(["renegotiating", "fenced", "lost", "leaving"])

describe("modulo-group join (child processes)", () => {
  const group = randomGroupId("cli-join")
  const env = { ...process.env, DATABASE_URL: databaseUrl() }
  const members: Array<Member> = []
  const start = (label: string) => {
    const m = new Member(label, group, TIMINGS, env)
    members.push(m)
    return m
  }

  beforeAll(assertBuilt)
  afterAll(async () => {
    for (const m of members) m.kill("SIGKILL")
  })

  it("keeps G1 and G2 across joins, a graceful leave and a kill -9", async () => {
    // Four at once.
    const [a, b, c, d] = ["a", "b", "c", "d"].map(start) as [Member, Member, Member, Member]
    const four = await converged([a, b, c, d], 4, 0, START_MS)

    // A fifth: everyone moves to [k/5].
    const e = start("e")
    const five = await converged([a, b, c, d, e], 5, four.epoch, START_MS)

    // SIGTERM: a graceful leave; the rest are at [k/4] well before a lease could expire.
    const termAt = Date.now()
    b.kill("SIGTERM")
    const afterLeave = await converged([a, c, d, e], 4, five.epoch, LEASE_MS * 2)
    const leaveMs = afterLeave.lastMs - termAt
    expect(await b.exited).toEqual({ code: 0, signal: null })
    expect(b.events.at(-1)?.state).toBe("left")

    // kill -9: the rest reconverge once the lease expired (lease + one heartbeat, plus slack).
    const killAt = Date.now()
    c.kill("SIGKILL")
    const afterKill = await converged([a, d, e], 3, afterLeave.epoch, LEASE_MS * 3)
    const killMs = afterKill.lastMs - killAt

    // Everyone left leaves gracefully and exits 0.
    for (const m of [a, d, e]) m.kill("SIGTERM")
    for (const m of [a, d, e]) expect(await m.exited).toEqual({ code: 0, signal: null })

    console.log(
      `[cli join] epochs: [k/4] ${four.epoch}, [k/5] ${five.epoch}, after SIGTERM ${afterLeave.epoch} in ${leaveMs} ms, ` +
        `after kill -9 ${afterKill.epoch} in ${killMs} ms (lease ${LEASE_MS} ms, heartbeat ${HEARTBEAT_MS} ms)`
    )
    expect(leaveMs).toBeLessThan(LEASE_MS)
    // Slack for process scheduling on a busy machine; a reap by lease takes at least LEASE_MS.
    expect(killMs).toBeLessThan(LEASE_MS + HEARTBEAT_MS + 2_000)

    for (const m of members) {
      expect(m.garbage).toEqual([])
      checkFormat(m.events)
    }
    const all = members.flatMap((m) => tenures(m.events))

    // Every assignment ends with a state line (the killed member's excepted), printed before the ack.
    for (const t of all) {
      if (t.endedBy !== "killed") expect(ENDINGS).toContain(t.endedBy)
    }
    expect(all.filter((t) => t.endedBy === "killed").map((t) => t.member)).toEqual(
      c.events.length > 0 ? [c.events[0]!.member] : []
    )

    // G1: within an epoch, distinct indices in [0, N), one N; exactly 0..N-1 where we converged.
    // G2: every tenure in an older epoch ended before any tenure in a newer one started.
    expectG1G2(all, [
      { epoch: four.epoch, size: 4 },
      { epoch: five.epoch, size: 5 },
      { epoch: afterLeave.epoch, size: 4 },
      { epoch: afterKill.epoch, size: 3 }
    ])
  }, 90_000)
})

/** Exactly the documented fields, with the documented types. */
const checkFormat = (events: ReadonlyArray<JoinEvent>) => {
  for (const e of events) {
    expect(Object.keys(e)).toEqual(["ts", "member", "group", "event", "state", "epoch", "index", "size", "instance"])
    expect(e.ts).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    expect(["state", "work"]).toContain(e.event)
    expect(["joining", "awaiting", "assigned", "renegotiating", "fenced", "lost", "leaving", "left"]).toContain(e.state)
    const known = e.epoch !== null
    expect(e.index !== null).toBe(known)
    expect(e.size !== null).toBe(known)
    if (e.event === "work") expect(e.state).toBe("assigned")
  }
  expect(events[0]?.state).toBe("joining")
}
