/**
 * The tenure timeline SVG (cli/src/ui/timeline.ts), from made-up events: drawn directly, from a
 * made-up change log (the dashboard's and the demo's source), and from a made-up chaos event log
 * (chaos/monitor.mjs `timelineOf`, the chaos report's source).
 */
import { describe, expect, it } from "@effect/vitest"
import { type ChangeRow, fromChangeLog, renderSvg } from "../../cli/src/ui/timeline.js"
import { Monitor, timelineOf } from "../../chaos/monitor.mjs"

const count = (svg: string, re: RegExp) => (svg.match(re) ?? []).length

/** Tags balance, and the document is one <svg> element. */
const wellFormed = (svg: string) => {
  expect(svg.startsWith("<svg xmlns=\"http://www.w3.org/2000/svg\"")).toBe(true)
  expect(svg.trimEnd().endsWith("</svg>")).toBe(true)
  for (const tag of ["g", "title", "text", "svg"]) {
    expect(count(svg, new RegExp(`<${tag}[ >]`, "g")), tag).toBe(count(svg, new RegExp(`</${tag}>`, "g")))
  }
  // No raw markup from labels.
  expect(svg).not.toMatch(/<script|<evil/)
}

const T0 = Date.parse("2026-12-01T10:00:00Z")
const s = (seconds: number) => T0 + seconds * 1000
const m = (id: string, index: number | null) => ({ member_id: id, name: id, host: "h", pid: 1, index })

describe("tenure timeline", () => {
  it("draws one lane per index, a bar per tenure and a mark per event", () => {
    const svg = renderSvg({
      title: "a <evil> & title",
      from: s(0),
      to: s(60),
      lanes: 3,
      bars: [
        { lane: 0, from: s(0), to: s(30), label: "a", key: "a" },
        { lane: 1, from: s(0), to: s(60), label: "b", key: "b", open: true },
        { lane: 0, from: s(31), to: s(60), label: "c", key: "c", open: true }
      ],
      marks: [
        { at: s(30), kind: "crash", label: "a killed", lane: 0 },
        { at: s(31), kind: "change", label: "epoch 3" },
        { at: s(45), kind: "fence", label: "b fenced", lane: 1 }
      ]
    })
    wellFormed(svg)
    expect(count(svg, /class="lane"/g)).toBe(3)
    expect(count(svg, /<g class="bar" data-lane="0"/g)).toBe(2)
    expect(count(svg, /<g class="bar" data-lane="1"/g)).toBe(1)
    expect(count(svg, /data-open="true"/g)).toBe(2)
    expect(count(svg, /<g class="mark" data-kind="crash" data-lane="0"/g)).toBe(1)
    expect(count(svg, /<g class="mark" data-kind="fence" data-lane="1"/g)).toBe(1)
    expect(count(svg, /<g class="legend"/g)).toBe(3)
    expect(svg).toContain("a &lt;evil&gt; &amp; title")
  })

  it("reads a change log: joins, a leave, a reap (crash) and a rejoin", () => {
    const rows: Array<ChangeRow> = [
      { epoch: 1, size: 1, incarnation: 1, changedAt: s(1), cause: "join", subject: "a", assignment: [m("a", 0)] },
      { epoch: 2, size: 2, incarnation: 1, changedAt: s(2), cause: "join", subject: "b", assignment: [m("a", 0), m("b", 1)] },
      { epoch: 3, size: 3, incarnation: 1, changedAt: s(3), cause: "join", subject: "c", assignment: [m("a", 0), m("b", 1), m("c", 2)] },
      // b leaves: c moves into index 1.
      { epoch: 4, size: 2, incarnation: 1, changedAt: s(10), cause: "leave", subject: "b", assignment: [m("a", 0), m("c", 1)] },
      // a is reaped (crashed).
      { epoch: 5, size: 1, incarnation: 1, changedAt: s(20), cause: "reap", subject: null, assignment: [m("c", 0)] },
      // c rejoins while its own row is still there (it had fenced itself).
      { epoch: 6, size: 1, incarnation: 1, changedAt: s(30), cause: "join", subject: "c", assignment: [m("c", 0)] }
    ]
    const t = fromChangeLog(rows, { from: s(0), to: s(40), title: "g" })
    const bars = t.bars.map((b) => `${b.label}@${b.lane}:${(b.from - T0) / 1000}-${(b.to - T0) / 1000}${b.open ? "+" : ""}`)
    expect(bars.sort()).toEqual(["a@0:1-20", "b@1:2-10", "c@0:20-30", "c@0:30-40+", "c@1:10-20", "c@2:3-10"].sort())
    expect(t.lanes).toBe(3)
    const marks = t.marks.filter((x) => x.kind !== "change").map((x) => `${x.kind}@${(x.at - T0) / 1000}:${x.lane}`)
    expect(marks.sort()).toEqual(["crash@20:0", "leave@10:1", "rejoin@30:0"])
    expect(t.marks.filter((x) => x.kind === "change")).toHaveLength(6)
    const svg = renderSvg(t)
    wellFormed(svg)
    expect(count(svg, /<g class="bar"/g)).toBe(6)
    expect(count(svg, /data-kind="crash"/g)).toBeGreaterThanOrEqual(1)
  })

  it("keeps who held what when the window opened (the row before it) and drops older bars", () => {
    const rows: Array<ChangeRow> = [
      { epoch: 7, size: 1, incarnation: 1, changedAt: s(-100), cause: "join", subject: "a", assignment: [m("a", 0)] },
      { epoch: 8, size: 2, incarnation: 1, changedAt: s(5), cause: "join", subject: "b", assignment: [m("a", 0), m("b", 1)] }
    ]
    const t = fromChangeLog(rows, { from: s(0), to: s(10), title: "g" })
    expect(t.bars.map((b) => `${b.label}@${b.lane}${b.open ? "+" : ""}`).sort()).toEqual(["a@0+", "b@1+"])
    // The change before the window is not marked.
    expect(t.marks).toHaveLength(1)
  })

  it("draws a chaos run from the monitor: tenures by index, the kill and the fence marked", () => {
    const line = (label: string, at: number, state: string, epoch: number | null, index: number | null, size: number | null, event = "state") =>
      JSON.stringify({
        label,
        line: { ts: new Date(s(at)).toISOString(), member: `id-${label}`, group: "g", event, state, epoch, index, size }
      })
    const log = [
      JSON.stringify({ at: s(0), label: "m1", action: "spawn", slot: 0 }),
      JSON.stringify({ at: s(0), label: "m2", action: "spawn", slot: 1 }),
      line("m1", 1, "assigned", 2, 0, 2),
      line("m2", 1, "assigned", 2, 1, 2),
      JSON.stringify({ at: s(5), label: "m2", action: "SIGKILL" }),
      JSON.stringify({ at: s(5), fault: "kill", label: "m2", boundMs: 5000 }),
      line("m1", 8, "renegotiating", 3, 0, 1),
      line("m1", 8.5, "assigned", 3, 0, 1),
      line("m1", 12, "fenced", 3, 0, 1),
      line("m1", 14, "assigned", 4, 0, 1)
    ].join("\n")
    const monitor = Monitor.replay(log, { heartbeatMs: 500, leaseMs: 3000 })
    const analysis = monitor.analyze(s(0), s(20))
    const t = timelineOf(analysis, (monitor as unknown as { faults: ReadonlyArray<{ kind: string; at: number; label?: string }> }).faults, s(0), s(20))
    expect(t.bars.map((b) => `${b.label}@${b.lane}:${(b.from - T0) / 1000}-${(b.to - T0) / 1000}`).sort()).toEqual(
      ["m1@0:1-8", "m1@0:8.5-12", "m1@0:14-20", "m2@1:1-5"].sort()
    )
    expect(t.marks.map((x) => `${x.kind}@${(x.at - T0) / 1000}:${x.lane}`).sort()).toEqual(["crash@5:1", "fence@12:0"])
    const svg = renderSvg(t)
    wellFormed(svg)
    expect(count(svg, /<g class="bar"/g)).toBe(4)
    expect(count(svg, /class="lane"/g)).toBe(2)
  })
})
