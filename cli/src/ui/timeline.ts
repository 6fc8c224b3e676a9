/**
 * The tenure timeline as an SVG: one lane per index, a bar per member while it held that index, and
 * marks for changes, crashes, fences and other faults. Pure (text in, text out), no dependency: the
 * dashboard (`modulo-group ui`), the demo summary and the chaos report (chaos/runner.mjs, which loads
 * the built file) draw the same picture.
 *
 * @since 0.1.0
 * @internal
 */

/**
 * A member holding lane (index) `lane` from `from` to `to` (ms since the epoch).
 *
 * @since 0.1.0
 * @internal
 */
export interface Bar {
  readonly lane: number
  readonly from: number
  readonly to: number
  /** Shown in the bar (when it fits) and in its tooltip. */
  readonly label: string
  /** Bars with one key share a colour (a member id, a process label). */
  readonly key: string
  /** The epoch it started in, if known. */
  readonly epoch?: number | undefined
  /** Still held at the end of the window. */
  readonly open?: boolean | undefined
}

/**
 * What a mark stands for: an epoch change, a crash (SIGKILL, or a lease found expired), a fence, a
 * graceful leave, a join or rejoin, or any other injected fault.
 *
 * @since 0.1.0
 * @internal
 */
export type MarkKind = "change" | "crash" | "fence" | "leave" | "join" | "rejoin" | "freeze" | "fault"

/**
 * @since 0.1.0
 * @internal
 */
export interface Mark {
  readonly at: number
  readonly kind: MarkKind
  readonly label: string
  /** The lane it concerns, if any (drawn on that lane; else across all lanes). */
  readonly lane?: number | undefined
}

/**
 * @since 0.1.0
 * @internal
 */
export interface Timeline {
  readonly title: string
  readonly from: number
  readonly to: number
  /** How many lanes (indices 0..lanes-1); at least the highest bar's lane + 1. */
  readonly lanes: number
  readonly bars: ReadonlyArray<Bar>
  readonly marks: ReadonlyArray<Mark>
}

const WIDTH = 960
const LEFT = 56
const RIGHT = 16
const TOP = 44
const LANE = 28
const BOTTOM = 46

const MARK_STYLE: Record<MarkKind, { readonly color: string; readonly glyph: string; readonly name: string }> = {
  change: { color: "#8a94a6", glyph: "", name: "epoch change" },
  crash: { color: "#d0342c", glyph: "✕", name: "crash / lease expired" },
  fence: { color: "#e07b00", glyph: "⊘", name: "fence" },
  leave: { color: "#2f6fdf", glyph: "↓", name: "leave" },
  join: { color: "#1e9e5a", glyph: "↑", name: "join" },
  rejoin: { color: "#e07b00", glyph: "↻", name: "rejoin" },
  freeze: { color: "#7b4fc9", glyph: "❄", name: "freeze" },
  fault: { color: "#555", glyph: "!", name: "fault" }
}

/** XML-escaped text. */
export const escapeXml = (s: string): string =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&#39;")

const PALETTE = [
  "#6c8ee6", "#e6a04a", "#5fbf8f", "#d9677a", "#a67fd9", "#4fb8c9",
  "#c9b84f", "#e07fb7", "#7fa35a", "#b5835a", "#8c9bb5", "#e6735c"
]

/** A distinct colour per key, in the order the keys first appear (the palette repeats past 12). */
const colorsOf = (keys: ReadonlyArray<string>): Map<string, string> => {
  const colors = new Map<string, string>()
  for (const k of keys) if (!colors.has(k)) colors.set(k, PALETTE[colors.size % PALETTE.length]!)
  return colors
}

const clock = (ms: number): string => new Date(ms).toISOString().slice(11, 19)

/** Tick spacing: about 8 ticks over the window, on a round number of seconds or minutes. */
const tickStep = (spanMs: number): number => {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600].map((s) => s * 1000)
  return steps.find((s) => spanMs / s <= 9) ?? 3600_000
}

/**
 * The SVG text of a timeline. Every bar is a `<g class="bar" data-lane data-key>` with a `<title>`,
 * every mark a `<g class="mark" data-kind>`; the legend lists the kinds of marks drawn.
 *
 * @since 0.1.0
 * @internal
 */
export const renderSvg = (t: Timeline): string => {
  const lanes = Math.max(1, t.lanes, ...t.bars.map((b) => b.lane + 1))
  const height = TOP + lanes * LANE + BOTTOM
  const span = Math.max(1, t.to - t.from)
  const x = (ms: number) => LEFT + ((Math.min(Math.max(ms, t.from), t.to) - t.from) / span) * (WIDTH - LEFT - RIGHT)
  const y = (lane: number) => TOP + lane * LANE
  const out: Array<string> = []
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" class="tenure-timeline" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="system-ui, sans-serif" font-size="11">`
  )
  out.push(`<title>${escapeXml(t.title)}</title>`)
  out.push(`<rect x="0" y="0" width="${WIDTH}" height="${height}" fill="#fff"/>`)
  out.push(`<text x="${LEFT}" y="16" font-size="13" font-weight="600">${escapeXml(t.title)}</text>`)
  // Lanes and their labels.
  for (let lane = 0; lane < lanes; lane++) {
    out.push(
      `<rect class="lane" data-lane="${lane}" x="${LEFT}" y="${y(lane)}" width="${WIDTH - LEFT - RIGHT}" height="${LANE}" fill="${
        lane % 2 === 0 ? "#f6f7f9" : "#eef0f4"
      }"/>`
    )
    out.push(`<text x="${LEFT - 8}" y="${y(lane) + LANE / 2 + 4}" text-anchor="end">k=${lane}</text>`)
  }
  // Time axis.
  const step = tickStep(span)
  const axisY = TOP + lanes * LANE
  for (let tick = Math.ceil(t.from / step) * step; tick <= t.to; tick += step) {
    out.push(`<line x1="${x(tick)}" x2="${x(tick)}" y1="${axisY}" y2="${axisY + 4}" stroke="#999"/>`)
    out.push(`<text class="tick" x="${x(tick)}" y="${axisY + 15}" text-anchor="middle" fill="#666">${clock(tick)}</text>`)
  }
  // Bars, coloured by key in order of first appearance.
  const colors = colorsOf([...t.bars].sort((a, b) => a.from - b.from || a.lane - b.lane).map((b) => b.key))
  for (const b of t.bars) {
    const x0 = x(b.from)
    const w = Math.max(1.5, x(b.to) - x0)
    const tip = `${b.label}: k=${b.lane}${b.epoch === undefined ? "" : ` from epoch ${b.epoch}`}, ${clock(b.from)} to ${
      b.open === true ? "now" : clock(b.to)
    }`
    out.push(`<g class="bar" data-lane="${b.lane}" data-key="${escapeXml(b.key)}"${b.open === true ? ` data-open="true"` : ""}>`)
    out.push(`<title>${escapeXml(tip)}</title>`)
    out.push(
      `<rect x="${x0.toFixed(1)}" y="${y(b.lane) + 4}" width="${w.toFixed(1)}" height="${LANE - 8}" rx="3" fill="${colors.get(b.key)}" stroke="#0002"/>`
    )
    if (w > b.label.length * 6 + 8) {
      out.push(`<text x="${(x0 + 4).toFixed(1)}" y="${y(b.lane) + LANE / 2 + 4}" fill="#111">${escapeXml(b.label)}</text>`)
    }
    out.push(`</g>`)
  }
  // Marks: a line over the lane (or all lanes) and a glyph above.
  for (const m of t.marks) {
    const s = MARK_STYLE[m.kind]
    const mx = x(m.at).toFixed(1)
    const y1 = m.lane === undefined ? TOP : y(m.lane)
    const y2 = m.lane === undefined ? axisY : y(m.lane) + LANE
    out.push(`<g class="mark" data-kind="${m.kind}"${m.lane === undefined ? "" : ` data-lane="${m.lane}"`}>`)
    out.push(`<title>${escapeXml(`${s.name} at ${clock(m.at)}: ${m.label}`)}</title>`)
    out.push(
      `<line x1="${mx}" x2="${mx}" y1="${y1}" y2="${y2}" stroke="${s.color}" stroke-width="${m.kind === "change" ? 1 : 2}"${
        m.kind === "change" ? ` stroke-dasharray="3 3"` : ""
      }/>`
    )
    if (s.glyph !== "") {
      out.push(`<text x="${mx}" y="${y1 - 3}" text-anchor="middle" fill="${s.color}" font-size="13">${s.glyph}</text>`)
    }
    out.push(`</g>`)
  }
  // Legend: the kinds drawn.
  const kinds = [...new Set(t.marks.map((m) => m.kind))]
  let lx = LEFT
  const ly = axisY + 34
  for (const k of kinds) {
    const s = MARK_STYLE[k]
    out.push(`<g class="legend" data-kind="${k}">`)
    out.push(`<line x1="${lx}" x2="${lx + 14}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2"/>`)
    out.push(`<text x="${lx + 18}" y="${ly}">${escapeXml(`${s.glyph} ${s.name}`.trim())}</text>`)
    out.push(`</g>`)
    lx += 36 + `${s.glyph} ${s.name}`.length * 6.2
  }
  out.push(`</svg>`)
  return out.join("\n")
}

/**
 * One row of the change log (migration 0004), as the dashboard and the demo read it.
 *
 * @since 0.1.0
 * @internal
 */
export interface ChangeRow {
  readonly epoch: number
  readonly size: number
  readonly incarnation: number
  readonly changedAt: number
  readonly cause: "join" | "leave" | "reap" | "repair"
  readonly subject: string | null
  readonly assignment: ReadonlyArray<
    { readonly member_id: string; readonly name: string; readonly host: string; readonly pid: number; readonly index: number | null }
  >
}

const nameOf = (m: ChangeRow["assignment"][number]): string => (m.name !== "" ? m.name : `${m.host}:${m.pid}`)

/** The most lanes (indices) a timeline draws. */
const maxLanes = 4_096

/**
 * The timeline of a window of the change log: `rows` in commit order (the first may precede the
 * window: it says who held what when the window opened). A member that left its index by a `reap`
 * (its lease ran out: crashed, frozen or fenced) is marked as a crash; one that joined while its
 * own older row was still there (it had fenced itself and rejoined) as a rejoin; a leave as a leave.
 *
 * @since 0.1.0
 * @internal
 */
export const fromChangeLog = (
  rows: ReadonlyArray<ChangeRow>,
  window: { readonly from: number; readonly to: number; readonly title: string },
  extraMarks: ReadonlyArray<Mark> = []
): Timeline => {
  const bars: Array<Bar> = []
  const marks: Array<Mark> = []
  // member id -> the open tenure
  let open = new Map<string, { lane: number; from: number; label: string; epoch: number }>()
  let lanes = 0
  for (const row of rows) {
    const at = row.changedAt
    const next = new Map<string, { lane: number; from: number; label: string; epoch: number }>()
    const present = new Set(row.assignment.map((m) => m.member_id))
    for (const [id, t] of open) {
      const now = row.assignment.find((m) => m.member_id === id)
      if (now !== undefined && now.index === t.lane && !(row.cause === "join" && row.subject === id)) {
        next.set(id, t)
        continue
      }
      bars.push({ lane: t.lane, from: t.from, to: at, label: t.label, key: id, epoch: t.epoch })
      if (!present.has(id) || (row.cause === "join" && row.subject === id)) {
        if (at >= window.from) {
          const kind: MarkKind = row.cause === "leave" && row.subject === id
            ? "leave"
            : row.cause === "join" && row.subject === id
            ? "rejoin"
            : "crash"
          const what = kind === "leave" ? "left" : kind === "rejoin" ? "rejoined (its old row was still there)" : "lease expired, reaped"
          marks.push({ at, kind, label: `${t.label} ${what} (epoch ${row.epoch})`, lane: t.lane })
        }
      }
    }
    for (const m of row.assignment) {
      // Only indices the row's size allows, and at most `maxLanes`: a change-log row written by hand
      // naming index 20,000,000 drew a lane for each below it (a review: the dashboard took 4 GB and
      // aborted, every group's view with it).
      if (m.index === null || !Number.isInteger(m.index) || m.index < 0 || m.index >= Math.min(row.size, maxLanes)) continue
      lanes = Math.max(lanes, m.index + 1)
      if (!next.has(m.member_id)) next.set(m.member_id, { lane: m.index, from: at, label: nameOf(m), epoch: row.epoch })
    }
    if (at >= window.from) {
      const subject = row.assignment.find((m) => m.member_id === row.subject)
      marks.push({
        at,
        kind: "change",
        label: `epoch ${row.epoch}, N=${row.size}: ${row.cause}${subject === undefined ? "" : ` of ${nameOf(subject)}`}`
      })
    }
    open = next
  }
  for (const [id, t] of open) bars.push({ lane: t.lane, from: t.from, to: window.to, label: t.label, key: id, epoch: t.epoch, open: true })
  const visible = bars.filter((b) => b.to >= window.from && b.from <= window.to)
  return { title: window.title, from: window.from, to: window.to, lanes, bars: visible, marks: [...marks, ...extraMarks] }
}
