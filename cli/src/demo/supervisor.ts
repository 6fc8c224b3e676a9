/**
 * The demo's member processes, seen from the demo: spawns them (children of this same command,
 * `modulo-group demo-member <spec>`), reads their JSON Lines, signals and stops them, and tells
 * when the live ones have converged on one epoch.
 *
 * @since 0.1.0
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import type * as Events from "../Events.js"
import { type MemberLine, memberCommand, type MemberSpec } from "./member.js"
import type { Cutoff, SlotEvent } from "./pauses.js"
import type { Output } from "./render.js"

type ProcStatus = "standby" | "running" | "frozen" | "stopping" | "killed" | "gone"

/**
 * A member process and what it has told us.
 *
 * @since 0.1.0
 * @internal
 */
export interface Proc {
  readonly name: string
  readonly pid: number
  readonly child: ChildProcess
  status: ProcStatus
  /** A standby member has connected and waits for `join`. */
  ready: boolean
  /** How it ended, once it has. */
  exit: { readonly code: number | null; readonly signal: string | null } | undefined
  readonly exited: Promise<void>
  /** Its last state line. */
  state: Events.JoinEvent | undefined
  /** Epoch -> when it printed `assigned` for it (ms since the Unix epoch). */
  readonly assignedAt: Map<number, number>
  stale: number
  aborted: number
  readonly tail: Array<string>
  /** Slots mode: the slots it works now, from its `slot` lines. */
  readonly slots: Set<number>
}

/** This package's `bin/modulo-group.js`, from `dist/` (the bundle), `src/demo/` or `dist/demo/`. */
const binPath = (): string => {
  for (const rel of ["../bin/modulo-group.js", "../../bin/modulo-group.js"]) {
    const file = fileURLToPath(new URL(rel, import.meta.url))
    if (fs.existsSync(file)) return file
  }
  return process.argv[1] ?? "modulo-group"
}

/**
 * Sends `sig` to a member that has not exited.
 *
 * @since 0.1.0
 * @internal
 */
export const signal = (p: Proc, sig: NodeJS.Signals) => {
  if (p.exit !== undefined) return
  try {
    p.child.kill(sig)
  } catch {
    // already gone
  }
}

/** Stops a member: SIGCONT (it may be frozen) and SIGTERM, then SIGKILL if it has not exited in time. */
const terminate = (p: Proc, graceMs = 5_000) =>
  Effect.gen(function*() {
    if (p.exit !== undefined) return
    if (p.status === "running" || p.status === "frozen" || p.status === "standby") p.status = "stopping"
    signal(p, "SIGCONT")
    signal(p, "SIGTERM")
    const done = yield* Effect.promise(() => p.exited).pipe(Effect.timeoutOption(Duration.millis(graceMs)))
    if (Option.isNone(done)) {
      signal(p, "SIGKILL")
      yield* Effect.promise(() => p.exited).pipe(Effect.timeoutOption(Duration.seconds(2)))
    }
  })

/**
 * Whether `members` (the ones expected to be in the group) have converged: every one of them
 * assigned in one epoch newer than `after`, with the group size equal to their number. Returns that
 * epoch and when the last of them printed `assigned` for it.
 *
 * @since 0.1.0
 * @internal
 */
export const convergence = (
  members: ReadonlyArray<{ readonly state: Events.JoinEvent | undefined; readonly assignedAt: ReadonlyMap<number, number> }>,
  after: number
): { readonly epoch: number; readonly at: number } | undefined => {
  if (members.length === 0) return undefined
  const epoch = members[0]!.state?.epoch
  if (epoch === null || epoch === undefined || epoch <= after) return undefined
  let at = 0
  for (const m of members) {
    const s = m.state
    if (s === undefined || s.state !== "assigned" || s.epoch !== epoch || s.size !== members.length) return undefined
    at = Math.max(at, m.assignedAt.get(epoch) ?? Date.parse(s.ts))
  }
  return { epoch, at }
}

/**
 * Slots mode: whether the live members' slots (from their `slot` lines) are every one of the `count`
 * slots, each worked by one of them, spread evenly (sizes `floor(S/N)` or `ceil(S/N)`).
 *
 * @since 0.3.0
 * @internal
 */
export const slotsSettled = (members: ReadonlyArray<{ readonly slots: ReadonlySet<number> }>, count: number): boolean => {
  if (members.length === 0) return false
  const low = Math.floor(count / members.length)
  const high = Math.ceil(count / members.length)
  const seen = new Set<number>()
  for (const m of members) {
    if (m.slots.size < low || m.slots.size > high) return false
    for (const slot of m.slots) {
      if (seen.has(slot)) return false
      seen.add(slot)
    }
  }
  return seen.size === count
}

/**
 * How a member's place is shown: `m1=[0/4]` (modulo mode), `m1=16 slots` (slots mode).
 *
 * @since 0.3.0
 * @internal
 */
export const placement = (p: Proc, slots: number | undefined): string =>
  slots === undefined ? `${p.name}=[${p.state?.index}/${p.state?.size}]` : `${p.name}=${p.slots.size} slots`

/**
 * @since 0.1.0
 * @internal
 */
export interface SupervisorOptions {
  /** What every member gets; `name` and `standby` are per member. */
  readonly spec: Omit<MemberSpec, "name" | "standby">
  readonly databaseUrl: string
  readonly verbose: boolean
  readonly output: Output
  /** Whether the items are being drained (then a member's first `assigned` is not worth a line). */
  readonly working: () => boolean
}

/**
 * @since 0.1.0
 * @internal
 */
export interface Supervisor {
  /** Every member started, in order. */
  readonly procs: ReadonlyArray<Proc>
  /** Spawns member `m<n>`; a standby one connects and waits for `join` on its stdin. */
  readonly start: (standby: boolean) => Proc
  /** The members expected to be in the group. */
  readonly live: () => Array<Proc>
  /** Waits until the live members have converged after epoch `after`; `undefined` after `timeoutMs`. */
  readonly awaitConvergence: (
    after: number,
    timeoutMs: number
  ) => Effect.Effect<{ readonly epoch: number; readonly at: number } | undefined>
  /** Stops every member (SIGTERM, then SIGKILL after 5 s). */
  readonly stopAll: Effect.Effect<void>
  /** Slots mode: every member's `slot` lines, in the order read. */
  readonly slotEvents: ReadonlyArray<SlotEvent>
  /** Each `fenced` state line of a member (a self-fence: its lease deadline passed), when printed. */
  readonly fenceEvents: ReadonlyArray<Cutoff>
}

/**
 * A supervisor whose members are stopped when the scope closes (also after Ctrl-C), and killed if
 * this process exits first.
 *
 * @since 0.1.0
 * @internal
 */
export const make = (options: SupervisorOptions) =>
  Effect.gen(function*() {
    const { output } = options
    const say = output.say
    const procs: Array<Proc> = []
    const slotEvents: Array<SlotEvent> = []
    const fenceEvents: Array<Cutoff> = []
    const slots = options.spec.slots
    let lastSlotStart = 0
    const bin = binPath()
    const childEnv = { ...process.env, DATABASE_URL: options.databaseUrl }
    let nextName = 1
    const remember = (p: Proc, text: string) => {
      p.tail.push(text)
      if (p.tail.length > 20) p.tail.shift()
    }
    const onLine = (p: Proc, text: string) => {
      let line: MemberLine
      try {
        line = JSON.parse(text) as MemberLine
      } catch {
        remember(p, text)
        return
      }
      if (line.event === "state") {
        // A fence is two records (stopping work, then stopped): said once (a review saw it twice).
        const again = p.state?.state === line.state && p.state?.epoch === line.epoch
        p.state = line
        if (line.state === "assigned" && line.epoch !== null && !p.assignedAt.has(line.epoch)) {
          p.assignedAt.set(line.epoch, Date.parse(line.ts))
        }
        if (line.state === "assigned" && p.assignedAt.size === 1 && !options.working()) {
          say(`${p.name}: assigned epoch ${line.epoch} ${slots === undefined ? `[${line.index}/${line.size}]` : `(${line.size} members)`}`)
        }
        if (line.state === "fenced") fenceEvents.push({ member: p.name, at: Date.parse(line.ts) })
        if (line.state === "fenced" && !again) say(`${p.name}: fenced itself (lease deadline passed in epoch ${line.epoch}): no work until it renews`)
        if (line.state === "lost") say(`${p.name}: lost its membership (reaped while away); rejoining`)
      } else if (line.event === "stale") {
        p.stale++
        output.countStale()
        say(`${p.name}: the fence refused a transaction of epoch ${line.epoch}: ${line.reason}`)
      } else if (line.event === "slot") {
        if (line.action === "start") {
          p.slots.add(line.slot)
          lastSlotStart = Math.max(lastSlotStart, Date.parse(line.ts))
        } else {
          p.slots.delete(line.slot)
        }
        slotEvents.push({ member: p.name, slot: line.slot, action: line.action, at: Date.parse(line.ts), generation: line.generation })
      } else if (line.event === "ready") {
        p.ready = true
      } else if (line.event === "aborted") {
        p.aborted++
        say(`${p.name}: a transaction of epoch ${line.epoch} did not commit: ${line.reason}`)
      }
    }
    const start = (standby: boolean) => {
      const name = `m${nextName++}`
      const spec: MemberSpec = { ...options.spec, name, standby }
      const child = spawn(
        process.execPath,
        [bin, memberCommand, JSON.stringify(spec), ...(options.verbose ? ["--verbose"] : [])],
        // A process group of its own: a Ctrl-C in the terminal reaches only the controller, which stops them.
        { env: childEnv, stdio: ["pipe", "pipe", "pipe"], detached: true }
      )
      let resolveExited: () => void = () => undefined
      const exited = new Promise<void>((resolve) => (resolveExited = resolve))
      const p: Proc = {
        name,
        pid: child.pid ?? -1,
        child,
        status: standby ? "standby" : "running",
        ready: false,
        exit: undefined,
        exited,
        state: undefined,
        assignedAt: new Map(),
        stale: 0,
        aborted: 0,
        tail: [],
        slots: new Set()
      }
      child.stdin!.on("error", () => undefined)
      readline.createInterface({ input: child.stdout! }).on("line", (text) => onLine(p, text))
      readline.createInterface({ input: child.stderr! }).on("line", (text) => {
        remember(p, text)
        if (options.verbose) output.echo(`[${name}] ${text}`)
      })
      child.once("error", (e) => remember(p, `spawn failed: ${e.message}`))
      child.once("exit", (code, sig) => {
        p.exit = { code, signal: sig }
        child.stdin!.destroy()
        if (p.status === "running" || p.status === "frozen" || p.status === "standby") {
          p.status = "gone"
          say(`${name} exited unexpectedly (${sig ?? `code ${code}`})${p.tail.length > 0 ? `: ${p.tail.at(-1)}` : ""}`)
        }
        resolveExited()
      })
      procs.push(p)
      return p
    }
    const live = () => procs.filter((p) => p.status === "running")
    const stopAll = Effect.forEach(procs, (p) => terminate(p), { concurrency: "unbounded", discard: true })

    // Never leave a member behind: stopped on the way out (also after Ctrl-C), killed at process exit.
    const killAll = () => {
      for (const p of procs) {
        signal(p, "SIGCONT")
        signal(p, "SIGKILL")
      }
    }
    process.once("exit", killAll)
    yield* Effect.addFinalizer(() => stopAll.pipe(Effect.ensuring(Effect.sync(() => process.removeListener("exit", killAll)))))

    const awaitConvergence = (after: number, timeoutMs: number) =>
      Effect.gen(function*() {
        const deadline = Date.now() + timeoutMs
        while (Date.now() < deadline) {
          const c = convergence(live(), after)
          // Slots mode: also every slot worked by a live member, evenly (the handoffs are done).
          if (c !== undefined && slots === undefined) return c
          if (c !== undefined && slots !== undefined && slotsSettled(live(), slots)) {
            return { epoch: c.epoch, at: Math.max(c.at, lastSlotStart) }
          }
          yield* Effect.sleep(Duration.millis(20))
        }
        return undefined
      })

    return { procs, start, live, awaitConvergence, stopAll, slotEvents, fenceEvents } satisfies Supervisor
  })
