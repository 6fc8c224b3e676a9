/**
 * What the demo shows: event lines (stdout, or stderr with `--json`) under a progress bar (on a
 * terminal), and the summary at the end (text, or one JSON object).
 *
 * @since 0.1.0
 * @internal
 */
import type * as Database from "../Database.js"
import { formatMillis } from "../Durations.js"
import { type ChangeRow, fromChangeLog, type Mark, type MarkKind, renderSvg } from "../ui/timeline.js"
import type { FaultKind } from "./faults.js"
import type { Progress } from "./ledger.js"
import type { ChangePauses } from "./pauses.js"

const BAR_WIDTH = 28

/**
 * A progress bar: `[████████░░░░]`.
 *
 * @since 0.1.0
 * @internal
 */
export const bar = (done: number, total: number, width = BAR_WIDTH): string => {
  const filled = total <= 0 ? width : Math.min(width, Math.floor((done / total) * width))
  return `[${"█".repeat(filled)}${"░".repeat(width - filled)}]`
}

/** `12,345` */
export const thousands = (n: number): string => n.toLocaleString("en-US")

/** `1.5s` */
export const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)}s`

/**
 * The demo's terminal: `say` prints an event line, with the time since the start, and redraws the
 * progress bar (on stderr, when it is a terminal) under it.
 *
 * @since 0.1.0
 * @internal
 */
export interface Output {
  /** Whether stderr is a terminal (then the bar is drawn). */
  readonly tty: boolean
  readonly say: (line: string) => void
  /** A line of a member's stderr, with `--verbose`. */
  readonly echo: (line: string) => void
  readonly clearBar: () => void
  readonly drawBar: () => void
  readonly progress: () => Progress
  readonly setProgress: (progress: Progress) => void
  /** Counts a transaction the fence refused (shown in the bar). */
  readonly countStale: () => void
}

/**
 * @since 0.1.0
 * @internal
 */
export const makeOutput = (options: { readonly json: boolean; readonly items: number }, since: () => number): Output => {
  const logStream = options.json ? process.stderr : process.stdout
  const tty = process.stderr.isTTY === true
  let barShown = false
  let progress: Progress = { done: 0, epoch: 0, size: 0 }
  let staleTotal = 0
  const barText = () =>
    `${bar(progress.done, options.items)} ${thousands(progress.done)}/${thousands(options.items)} ${
      String(Math.floor((progress.done / options.items) * 100)).padStart(3)
    }%  epoch ${progress.epoch}  members ${progress.size}  stale rejected ${staleTotal}  ${seconds(since())}`
  const clearBar = () => {
    if (barShown) process.stderr.write("\r\x1b[2K")
    barShown = false
  }
  const drawBar = () => {
    if (!tty) return
    process.stderr.write(`\r\x1b[2K${barText()}`)
    barShown = true
  }
  return {
    tty,
    say: (line) => {
      clearBar()
      logStream.write(`${seconds(since()).padStart(6)}  ${line}\n`)
      drawBar()
    },
    echo: (line) => {
      clearBar()
      process.stderr.write(`${line}\n`)
      drawBar()
    },
    clearBar,
    drawBar,
    progress: () => progress,
    setProgress: (p) => {
      progress = p
    },
    countStale: () => {
      staleTotal++
    }
  }
}

/**
 * One injected fault and how the group took it.
 *
 * @since 0.1.0
 * @internal
 */
export interface Change {
  readonly kind: FaultKind
  readonly member: string
  /** When it was injected, in ms since the demo started. */
  readonly atMs: number
  /** Items done when it was injected. */
  readonly doneBefore: number
  /** The group size the demo waited for. */
  readonly size: number
  /** The epoch the group converged to; `null` if it did not within the timeout. */
  readonly epoch: number | null
  /**
   * From the fault to the last member's `assigned` line (slots mode: and every slot worked by a live
   * member, evenly); `null` if it did not converge.
   */
  readonly convergedMs: number | null
  /** Slots mode: the slots whose work paused during this change (until the next one), and for how long. */
  readonly pauses?: ChangePauses | undefined
}

/**
 * The JSON summary (`--json`: one object, the last line of stdout).
 *
 * @since 0.1.0
 * @internal
 */
export interface Summary {
  readonly ok: boolean
  readonly run: string
  readonly group: string
  readonly database: Database.Resolved["source"]
  readonly items: number
  readonly once: number
  readonly duplicates: number
  readonly missing: number
  /** Processings beyond the first, over all duplicated items. */
  readonly extraProcessings: number
  /** Fenced transactions that failed with `StaleAssignment` (nothing committed). */
  readonly staleRejected: number
  /** Fenced transactions that failed otherwise (timeout, lost connection; nothing committed). */
  readonly aborted: number
  /** Pairs of consecutive epochs whose processings overlap in time on the database clock (G2: 0; not checked in slots mode). */
  readonly epochOverlaps: number
  /** Slots mode: the slot count; null in modulo mode. */
  readonly slots: number | null
  /** Slots mode: per slot, consecutive generations that both processed items. */
  readonly slotHandoffs: number
  /** Slots mode: those whose processings overlap in time on the database clock (per-slot G2: 0). */
  readonly slotOverlaps: number
  readonly startup: { readonly members: number; readonly epoch: number; readonly convergedMs: number }
  readonly changes: ReadonlyArray<Change>
  readonly epochs: ReadonlyArray<{
    readonly epoch: number
    readonly size: number
    readonly processed: number
    readonly members: number
    readonly first: string
    readonly last: string
  }>
  readonly members: ReadonlyArray<{
    readonly name: string
    readonly pid: number
    readonly processed: number
    readonly staleRejected: number
    readonly aborted: number
    readonly end: string
  }>
  readonly settings: {
    readonly members: number
    readonly batch: number
    readonly batchIntervalMs: number
    readonly heartbeatMs: number
    readonly leaseMs: number
    readonly fenceMarginMs: number
    readonly statementTimeoutMs: number
  }
  readonly drainMs: number | null
  readonly durationMs: number
  /** The tenure timeline (who held which index when, faults marked), an SVG file; null if none was written. */
  readonly timeline: string | null
}

const KIND_TEXT: Record<FaultKind, string> = {
  join: "a member joined",
  sigterm: "SIGTERM (graceful leave)",
  sigkill: "SIGKILL (crash)",
  sigstop: "SIGSTOP (frozen)",
  sigcont: "SIGCONT (resumed)"
}

/**
 * The text summary.
 *
 * @since 0.1.0
 * @internal
 */
export const renderSummary = (s: Summary): string => {
  const w = String(s.items).length
  const n = (x: number) => String(x).padStart(w)
  const lines = [
    "",
    `summary of run ${s.run} (${thousands(s.items)} items, ${s.settings.members} members + 1 joined, ${
      seconds(s.durationMs)
    } in all${s.drainMs === null ? "" : `, drained in ${seconds(s.drainMs)}`}):`,
    `  processed exactly once   ${n(s.once)}`,
    `  processed twice or more  ${n(s.duplicates)}${s.extraProcessings > 0 ? `  (${s.extraProcessings} extra processings)` : ""}`,
    `  never processed          ${n(s.missing)}`,
    `  stale transactions refused by the fence: ${s.staleRejected}; other transactions that did not commit: ${s.aborted}`,
    s.slots === null
      ? `  epochs whose work overlapped in time: ${s.epochOverlaps} of ${Math.max(0, s.epochs.length - 1)} epoch changes`
      : `  slot handoffs whose work overlapped in time: ${s.slotOverlaps} of ${s.slotHandoffs} (${s.slots} slots; epochs are no barrier)`,
    s.slots === null
      ? `  convergence (every live member assigned in the new epoch):`
      : `  convergence (every live member assigned, every slot worked by one, evenly) and slots paused:`,
    `    start                     ${s.startup.members} members  epoch ${String(s.startup.epoch).padEnd(3)}  ${
      formatMillis(s.startup.convergedMs)
    } after spawning`,
    ...s.changes.map((c) =>
      `    ${KIND_TEXT[c.kind].padEnd(24)}  ${c.size} members  ${
        c.epoch === null ? "did not converge" : `epoch ${String(c.epoch).padEnd(3)}  ${formatMillis(c.convergedMs ?? 0)}`
      }  (${c.member}, at ${seconds(c.atMs)}, ${thousands(c.doneBefore)} done)${
        c.pauses === undefined ? "" : `\n${renderPauses(c.pauses)}`
      }`
    ),
    ...(s.timeline === null ? [] : [`  timeline (who held which index when, faults marked): ${s.timeline}`]),
    s.ok
      ? "OK: every item was processed exactly once."
      : `FAILED: ${
        [
          s.duplicates > 0 ? `${s.duplicates} items processed more than once` : "",
          s.missing > 0 ? `${s.missing} items never processed` : "",
          s.slots === null && s.epochOverlaps > 0 ? `${s.epochOverlaps} epoch changes with overlapping work` : "",
          s.slotOverlaps > 0 ? `${s.slotOverlaps} slot handoffs with overlapping work` : ""
        ].filter((x) => x !== "").join(", ")
      }.`
  ]
  return `${lines.join("\n")}\n`
}

/** `      paused 12 of its slots ...`: one change's pauses, under its convergence line. */
const renderPauses = (p: ChangePauses): string =>
  `      paused ${p.slots} slot${p.slots === 1 ? "" : "s"}: max ${formatMillis(p.maxMs)}, total ${(p.totalMs / 1000).toFixed(2)} slot-s${
    p.unfinished > 0 ? ` (${p.unfinished} not resumed)` : ""
  }; ${p.kept} slots went on; stopped slots: ${p.stopped.length === 0 ? "nobody" : p.stopped.join(", ")}; no pause: ${
    p.unpaused.length === 0 ? "nobody" : p.unpaused.join(", ")
  }${p.fencedSlots > 0 ? `; besides, ${p.fencedSlots} slots paused by a self-fence (late renewal): ${p.fenced.join(", ")}` : ""}`

const FAULT_MARK: Record<FaultKind, MarkKind> = {
  join: "join",
  sigterm: "leave",
  sigkill: "crash",
  sigstop: "freeze",
  sigcont: "fault"
}

/**
 * The demo's tenure timeline as SVG: the group's change log over the run (who held which index
 * when, departures by lease expiry marked as crashes) with the injected faults marked at the moment
 * they were injected.
 *
 * @since 0.1.0
 * @internal
 */
export const renderTimeline = (
  rows: ReadonlyArray<ChangeRow>,
  run: { readonly id: string; readonly startedAt: number; readonly endedAt: number; readonly changes: ReadonlyArray<Change> }
): string => {
  const faults: ReadonlyArray<Mark> = run.changes.map((c) => ({
    at: run.startedAt + c.atMs,
    kind: FAULT_MARK[c.kind],
    label: `${KIND_TEXT[c.kind]}: ${c.member}`
  }))
  return renderSvg(
    fromChangeLog(rows, { from: run.startedAt, to: run.endedAt, title: `demo run ${run.id}: who held which index when` }, faults)
  )
}
