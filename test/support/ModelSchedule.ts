/**
 * Fault schedules for the model test: what can happen to a group of up to eight members, as data
 * that FastCheck generates and shrinks, and that prints as a readable script.
 */
import { FastCheck as fc } from "effect"

/** Member slots: a slot holds one member at a time; a join into a slot whose member left or crashed starts a new one. */
export const slots = 8

export type Step =
  /** A new member joins in `slot`; its clock runs at `rate` (drift) from `offset` (skew). */
  | { readonly _tag: "Join"; readonly slot: number; readonly rate: number; readonly offset: number }
  /** Graceful leave: the member's scope closes. */
  | { readonly _tag: "Leave"; readonly slot: number }
  /** The member's store calls hang forever: to the others it has crashed. */
  | { readonly _tag: "Crash"; readonly slot: number }
  /** The member's store calls hang (a partition, a dead connection) until `Resume`. */
  | { readonly _tag: "Hang"; readonly slot: number }
  | { readonly _tag: "Resume"; readonly slot: number }
  /** The member's whole process stops (SIGSTOP, a long GC pause) until `Continue`; time goes on. */
  | { readonly _tag: "Pause"; readonly slot: number }
  | { readonly _tag: "Continue"; readonly slot: number }
  /** Every store call fails while on. */
  | { readonly _tag: "Outage"; readonly on: boolean }
  /** Every notification is lost while on. */
  | { readonly _tag: "LoseNotifications"; readonly on: boolean }
  /**
   * While on, a heartbeat that comes within a statement timeout of a change reads a mix of two
   * committed states, as a READ COMMITTED statement that waited on the change's row lock does: its
   * own row from the new state, the group's epoch, size and barrier from the one before.
   */
  | { readonly _tag: "MixedViews"; readonly on: boolean }
  /** A stranger sends `count` notifications on the group's channel (anyone who can connect can). */
  | { readonly _tag: "Forge"; readonly count: number }
  /** While on, a stranger sends a notification every few milliseconds. */
  | { readonly _tag: "Flood"; readonly on: boolean }
  /**
   * While on, a join is applied at once (its row and lease written) and its reply comes between a
   * heartbeat and the lease deadline later, past any client timeout: a rider whose turn came behind
   * slow changes of its store (a review).
   */
  | { readonly _tag: "SlowJoins"; readonly on: boolean }
  /** From now on the member's work ignores interruption for 3 x stopTimeout each time it is stopped. */
  | { readonly _tag: "Stubborn"; readonly slot: number }
  /** Virtual time passes. */
  | { readonly _tag: "Advance"; readonly ms: number }

export interface Schedule {
  readonly steps: ReadonlyArray<Step>
  /** Store calls time out after the statement timeout (the PostgreSQL store's behaviour) and may still commit later. */
  readonly timeouts: boolean
  /** Each store call waits up to this long before it runs and again before its reply arrives. */
  readonly latencyMs: number
  /** Seeds the latency of each call. */
  readonly seed: number
  /**
   * Static membership: every member joins with the instance id of its slot (`m<slot>`), so a join
   * into a slot whose member left or crashed takes its row over, and rows are held for the grace.
   */
  readonly statics?: boolean | undefined
  /**
   * A heartbeat longer than the fence margin (400 ms against 100 ms, instead of 100 against 200): a
   * deadline left unwatched for a heartbeat then outlives the lease on the store's clock (a review).
   */
  readonly longHeartbeat?: boolean | undefined
}

const slot = fc.integer({ min: 0, max: slots - 1 })

/** Clock rates: exact, or drifting by up to 2% either way. */
const rate = fc.constantFrom(1, 1, 1, 0.98, 0.995, 1.005, 1.02)

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 12, arbitrary: fc.record({ _tag: fc.constant("Join" as const), slot, rate, offset: fc.constantFrom(0, -3_600_000, 86_400_000, 1234) }) },
  { weight: 2, arbitrary: fc.record({ _tag: fc.constant("Leave" as const), slot }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Crash" as const), slot }) },
  { weight: 2, arbitrary: fc.record({ _tag: fc.constant("Hang" as const), slot }) },
  { weight: 2, arbitrary: fc.record({ _tag: fc.constant("Resume" as const), slot }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Pause" as const), slot }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Continue" as const), slot }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Outage" as const), on: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("LoseNotifications" as const), on: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("MixedViews" as const), on: fc.constantFrom(true, true, false) }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Forge" as const), count: fc.constantFrom(1, 1, 50) }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Flood" as const), on: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Stubborn" as const), slot }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("SlowJoins" as const), on: fc.constantFrom(true, true, false) }) },
  {
    weight: 8,
    arbitrary: fc.record({
      _tag: fc.constant("Advance" as const),
      ms: fc.constantFrom(1, 10, 50, 100, 150, 300, 500, 800, 1000, 1500)
    })
  }
)

/**
 * Random schedules; `maxSteps` keeps each one cheap. Drawn at FastCheck's "medium" size, with joins
 * weighted to make groups of a few members: at the default small size and half the join weight, a
 * schedule held 1.3 members on average, and few held the races between members (docs/testing.md).
 */
export const schedule = (maxSteps = 20, maxWaitMs = 6_000): fc.Arbitrary<Schedule> =>
  fc.record({
    steps: fc.array(step, { minLength: 1, maxLength: maxSteps, size: "medium" }).filter((steps) => totalWait(steps) <= maxWaitMs),
    timeouts: fc.boolean(),
    latencyMs: fc.constantFrom(0, 0, 1, 5, 20),
    seed: fc.integer({ min: 0, max: 0x7fffffff }),
    statics: fc.boolean(),
    longHeartbeat: fc.boolean()
  }).map((s) => withToString(s))

/** Virtual time the steps wait in all. */
export const totalWait = (steps: ReadonlyArray<Step>): number =>
  steps.reduce((t, s) => t + (s._tag === "Advance" ? s.ms : 0), 0)

/** One step as a line of the script. */
export const formatStep = (s: Step): string => {
  switch (s._tag) {
    case "Join": {
      const clock = [s.rate !== 1 ? `clock rate ${s.rate}` : "", s.offset !== 0 ? `clock offset ${s.offset} ms` : ""]
        .filter((x) => x !== "")
        .join(", ")
      return `join m${s.slot}${clock === "" ? "" : ` (${clock})`}`
    }
    case "Leave":
      return `m${s.slot} leaves`
    case "Crash":
      return `m${s.slot} crashes (store calls hang forever)`
    case "Hang":
      return `m${s.slot}'s store calls hang`
    case "Resume":
      return `m${s.slot}'s store calls resume`
    case "Pause":
      return `m${s.slot}'s process is paused (SIGSTOP)`
    case "Continue":
      return `m${s.slot}'s process continues (SIGCONT)`
    case "Outage":
      return s.on ? "store outage begins" : "store outage ends"
    case "LoseNotifications":
      return s.on ? "notifications are lost from now on" : "notifications are delivered again"
    case "MixedViews":
      return s.on ? "heartbeats read mixed views from now on" : "heartbeats read one state again"
    case "Forge":
      return `a stranger sends ${s.count} notification${s.count === 1 ? "" : "s"}`
    case "Flood":
      return s.on ? "a notification flood begins" : "the notification flood ends"
    case "Stubborn":
      return `m${s.slot}'s work ignores interruption from now on`
    case "SlowJoins":
      return s.on ? "join replies come late from now on" : "join replies come in time again"
    case "Advance":
      return `wait ${s.ms} ms`
  }
}

/** The schedule as a script a person can read (and paste into a regression test). */
export const formatSchedule = (s: Schedule): string =>
  [
    `schedule (store calls ${s.timeouts ? "time out and may commit late" : "never time out"}, latency up to ${s.latencyMs} ms, seed ${s.seed}${
      s.statics === true ? ", static members: instance id m<slot>" : ""
    }${s.longHeartbeat === true ? ", heartbeat 400 ms, fence margin 100 ms" : ""}):`,
    ...s.steps.map((step, i) => `  ${String(i + 1).padStart(2)}. ${formatStep(step)}`),
    "  then: faults heal (outage ends, notifications delivered, views whole, no flood, hung and paused members resume); wait for convergence"
  ].join("\n")

/** Makes FastCheck print a counterexample as the script. */
export const withToString = (s: Schedule): Schedule =>
  Object.defineProperty({ ...s }, fc.toStringMethod, { value: () => `\n${formatSchedule(s)}\n`, enumerable: false })

/** Parses one line written by `formatStep` (so a printed counterexample can be pasted into a regression test). */
export const parseStep = (line: string): Step => {
  const text = line.trim().replace(/^\d+\.\s*/, "")
  let m: RegExpMatchArray | null
  if ((m = text.match(/^join m(\d)(?: \((.*)\))?$/))) {
    const opts = m[2] ?? ""
    const rate = opts.match(/clock rate ([\d.]+)/)
    const offset = opts.match(/clock offset (-?\d+) ms/)
    return { _tag: "Join", slot: Number(m[1]), rate: rate ? Number(rate[1]) : 1, offset: offset ? Number(offset[1]) : 0 }
  }
  if ((m = text.match(/^m(\d) leaves$/))) return { _tag: "Leave", slot: Number(m[1]) }
  if ((m = text.match(/^m(\d) crashes/))) return { _tag: "Crash", slot: Number(m[1]) }
  if ((m = text.match(/^m(\d)'s store calls hang$/))) return { _tag: "Hang", slot: Number(m[1]) }
  if ((m = text.match(/^m(\d)'s store calls resume$/))) return { _tag: "Resume", slot: Number(m[1]) }
  if ((m = text.match(/^m(\d)'s process is paused/))) return { _tag: "Pause", slot: Number(m[1]) }
  if ((m = text.match(/^m(\d)'s process continues/))) return { _tag: "Continue", slot: Number(m[1]) }
  if (text === "store outage begins") return { _tag: "Outage", on: true }
  if (text === "store outage ends") return { _tag: "Outage", on: false }
  if (text === "notifications are lost from now on") return { _tag: "LoseNotifications", on: true }
  if (text === "notifications are delivered again") return { _tag: "LoseNotifications", on: false }
  if (text === "heartbeats read mixed views from now on") return { _tag: "MixedViews", on: true }
  if (text === "heartbeats read one state again") return { _tag: "MixedViews", on: false }
  if ((m = text.match(/^a stranger sends (\d+) notifications?$/))) return { _tag: "Forge", count: Number(m[1]) }
  if (text === "a notification flood begins") return { _tag: "Flood", on: true }
  if (text === "the notification flood ends") return { _tag: "Flood", on: false }
  if ((m = text.match(/^m(\d)'s work ignores interruption/))) return { _tag: "Stubborn", slot: Number(m[1]) }
  if (text === "join replies come late from now on") return { _tag: "SlowJoins", on: true }
  if (text === "join replies come in time again") return { _tag: "SlowJoins", on: false }
  if ((m = text.match(/^wait (\d+) ms$/))) return { _tag: "Advance", ms: Number(m[1]) }
  throw new Error(`not a step: ${JSON.stringify(line)}`)
}

/** A schedule from script lines (see `formatSchedule`). */
export const script = (
  lines: ReadonlyArray<string>,
  options: {
    readonly timeouts?: boolean
    readonly latencyMs?: number
    readonly seed?: number
    readonly statics?: boolean
    readonly longHeartbeat?: boolean
  } = {}
): Schedule =>
  withToString({
    steps: lines.map(parseStep),
    timeouts: options.timeouts ?? false,
    latencyMs: options.latencyMs ?? 0,
    seed: options.seed ?? 0,
    statics: options.statics ?? false,
    longHeartbeat: options.longHeartbeat ?? false
  })
