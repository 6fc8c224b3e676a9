/**
 * The CLI's pure parts: duration parsing, the JSON event format, status' derived states.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Either } from "effect"
import * as Database from "../../cli/src/Database.js"
import * as Durations from "../../cli/src/Durations.js"
import * as Events from "../../cli/src/Events.js"
import * as Status from "../../cli/src/commands/status.js"
import { MemberState } from "../../src/MemberState.js"

describe("Durations.parse", () => {
  it.each([
    ["250ms", 250],
    ["2s", 2_000],
    ["1m", 60_000],
    ["1m30s", 90_000],
    ["1.5s", 1_500],
    ["250 millis", 250],
    ["2 seconds", 2_000],
    [" 1 minute ", 60_000]
  ])("%s is %i ms", (text, ms) => {
    expect(Either.map(Durations.parse(text), Duration.toMillis)).toEqual(Either.right(ms))
  })

  it.each(["5", "", "ms", "1 fortnight", "2 s s", "-1s", "0ms", "0 millis", "Infinity", "1e3ms"])("rejects %j", (text) => {
    expect(Either.isLeft(Durations.parse(text))).toBe(true)
  })

  it("formats milliseconds for people", () => {
    expect([850, 2_400, 185_000, -1_200].map(Durations.formatMillis)).toEqual(["850ms", "2.4s", "3m 5s", "-1.2s"])
  })
})

describe("Events", () => {
  const at = new Date("2025-01-02T03:04:05.678Z")

  it("state events carry the slot, or nulls", () => {
    expect(Events.stateEvent("m", "g", MemberState.Joining(), at)).toEqual({
      ts: "2025-01-02T03:04:05.678Z",
      member: "m",
      group: "g",
      event: "state",
      state: "joining",
      epoch: null,
      index: null,
      size: null,
      instance: null
    })
    expect(Events.stateEvent("m", "g", MemberState.Joining(), at, "w1").instance).toBe("w1")
    const renegotiating = MemberState.Renegotiating({
      epoch: 4,
      index: 1,
      size: 3,
      incarnation: 1,
      next: { epoch: 5, index: 1, size: 4, incarnation: 1 },
      stuck: false
    })
    expect(Events.stateEvent("m", "g", renegotiating, at)).toMatchObject({ state: "renegotiating", epoch: 4, index: 1, size: 3 })
    expect(Events.stateText("g", renegotiating)).toBe("g: renegotiating epoch 4 -> 5")
  })

  it("work lines keep the original's format", () => {
    const a = { epoch: 7, index: 2, size: 4, incarnation: 1, isLeader: false }
    expect(Events.workText("jobs", a)).toBe("jobs:[2/4] working away as usual...")
    expect(Object.keys(Events.workEvent("m", "jobs", a, at))).toEqual([
      "ts",
      "member",
      "group",
      "event",
      "state",
      "epoch",
      "index",
      "size",
      "instance"
    ])
  })
})

describe("Status.deriveStates", () => {
  const group: Status.StatusGroup = { groupId: "g", epoch: 5, size: 3, changedAt: new Date(0) }
  const row = (ackedEpoch: number, leaseLeftMs: number): Status.StatusMember => ({
    memberId: "x",
    name: "n",
    host: "h",
    pid: 1,
    index: 0,
    ackedEpoch,
    joinedAt: new Date(0),
    heartbeatAgeMs: 100,
    leaseLeftMs
  })

  it("everyone acknowledged: assigned", () => {
    expect(Status.deriveStates(group, [row(5, 900), row(5, 900)])).toEqual(["assigned", "assigned"])
  })

  it("someone has not acknowledged: renegotiating for it, awaiting for the rest", () => {
    expect(Status.deriveStates(group, [row(5, 900), row(4, 900)])).toEqual(["awaiting", "renegotiating"])
  })

  it("a member that acknowledged an epoch above the group's (its rows were put back: a restore) holds the barrier", () => {
    expect(Status.deriveStates(group, [row(5, 900), row(6, 900)])).toEqual(["awaiting", "awaiting"])
  })

  it("a lease gone: expired, whatever it acknowledged", () => {
    expect(Status.deriveStates(group, [row(5, 900), row(5, 0), row(4, -20)])).toEqual(["awaiting", "expired", "expired"])
  })

  it("a row without an index and a live lease: a joiner waiting for an overdue member (not holding the barrier)", () => {
    const waiting = { ...row(6, 900), index: null }
    expect(Status.deriveStates(group, [row(5, 900), row(5, 900), waiting])).toEqual(["assigned", "assigned", "waiting"])
    expect(Status.deriveStates(group, [row(5, 900), { ...waiting, leaseLeftMs: -1 }])).toEqual(["assigned", "expired"])
  })

  it("static membership: a released row, and an expired one within its grace, are held; past the grace, expired", () => {
    const held = (releasedAt: Date | null, graceLeftMs: number) => ({ ...row(5, -100), instanceId: "w1", releasedAt, graceLeftMs })
    expect(Status.deriveStates(group, [row(5, 900), held(new Date(0), 4_000), held(null, 4_000), held(null, -5)])).toEqual([
      "assigned",
      "released",
      "held",
      "expired"
    ])
    const text = Status.renderStatus({
      group: { ...group, groupId: "g", changedAt: new Date(0) },
      members: [{ ...held(new Date(0), 4_200), state: "released" }]
    })
    expect(text).toMatch(/INSTANCE/)
    expect(text).toMatch(/w1/)
    expect(text).toMatch(/released: index held 4\.2s more/)
  })

  it("a member whose work has not stopped past the stop timeout: how long, in the text and the JSON", () => {
    const stuck = { ...row(5, 900), memberId: "m-1", name: "w1", host: "h1", pid: 11, index: 0, state: "renegotiating" as const, stoppingSinceMs: 12_300 }
    const fine = { ...row(5, 900), memberId: "m-2", name: "w2", host: "h1", pid: 12, index: 1, state: "renegotiating" as const, stoppingSinceMs: null }
    const s: Status.GroupStatus = { group, members: [stuck, fine] }
    const lines = Status.renderStatus(s).split("\n")
    expect(lines.find((l) => l.includes("w1"))).toMatch(/renegotiating, work stopping for 12\.3s/)
    expect(lines.find((l) => l.includes("w2"))).not.toMatch(/stopping/)
    expect(Status.statusJson(s).members.map((m) => m.stoppingMs)).toEqual([12_300, null])
  })

  it("static membership: processes waiting for an instance id, beside its holder (text and JSON)", () => {
    const holder = { ...row(5, 900), memberId: "m-1", name: "w1", host: "h1", pid: 11, index: 2, instanceId: "w1", state: "assigned" as const }
    const waiter = (memberId: string, instanceId: string, name: string, waitingMs: number) => ({
      instanceId,
      memberId,
      name,
      host: "h2",
      pid: 22,
      waitingMs,
      seenAgoMs: 150
    })
    const s: Status.GroupStatus = {
      group,
      members: [holder],
      waiters: [waiter("m-2", "w1", "dup", 12_300), waiter("m-3", "w1", "dup2", 800), waiter("m-4", "w7", "lone", 2_000)]
    }
    const lines = Status.renderStatus(s).split("\n")
    expect(lines.slice(-2)).toEqual([
      "instance w1: held by w1 (h1/11) [2/3]; waiting: dup (h2/22) since 12.3s, dup2 (h2/22) since 800ms",
      "instance w7: no member row; waiting: lone (h2/22) since 2.0s"
    ])
    expect(Status.statusJson(s).waiters).toEqual([
      { instanceId: "w1", heldBy: "m-1", memberId: "m-2", name: "dup", host: "h2", pid: 22, waitingMs: 12_300, seenAgoMs: 150 },
      { instanceId: "w1", heldBy: "m-1", memberId: "m-3", name: "dup2", host: "h2", pid: 22, waitingMs: 800, seenAgoMs: 150 },
      { instanceId: "w7", heldBy: null, memberId: "m-4", name: "lone", host: "h2", pid: 22, waitingMs: 2_000, seenAgoMs: 150 }
    ])
    // No waiters: no lines, an empty list.
    expect(Status.renderStatus({ group, members: [holder] })).not.toMatch(/waiting/)
    expect(Status.statusJson({ group, members: [holder] }).waiters).toEqual([])
  })
})

describe("Database.redact", () => {
  // An adversarial review: a password with a `/`, a URL without its scheme and a `password` query
  // parameter were shown in error messages.
  it.each([
    ["postgres://admin:Hunter2@db.example.com:5432/app", "postgres://admin:***@db.example.com:5432/app"],
    ["postgres://admin:Hunter2/x@db.example.com:5432/app", "postgres://admin:***@db.example.com:5432/app"],
    ["admin:Hunter2@db.example.com:5432/app", "admin:***@db.example.com:5432/app"],
    ["mysql://admin:Hunter2@db/app", "mysql://admin:***@db/app"],
    ["postgres://admin@db.example.com:5432/app?password=Hunter2&sslmode=disable", "postgres://admin@db.example.com:5432/app?password=***&sslmode=disable"],
    ["postgres://admin@db/app?sslpassword=Hunter2", "postgres://admin@db/app?sslpassword=***"],
    ["postgres://admin@db.example.com/app", "postgres://admin@db.example.com/app"],
    ["not a url", "not a url"]
  ])("%s", (url, shown) => {
    expect(Database.redact(url)).toBe(shown)
    expect(Database.redact(url)).not.toContain("Hunter2")
  })
})
