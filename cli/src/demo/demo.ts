/**
 * `modulo-group demo`: member processes drain a ledger of items through fenced transactions while
 * the demo adds a member, stops one (SIGTERM), kills one (SIGKILL), and freezes one past its lease
 * (SIGSTOP, then SIGCONT). At the end it counts, from the ledger, the items processed exactly once,
 * more than once and never.
 *
 * Two halves:
 * - the controller (`demo`): creates the ledger, spawns the members as child processes of this same
 *   command, injects the faults, shows progress, and reads the verdict from the database;
 * - a member (`runMember`, the hidden `modulo-group demo-member <spec>`): one `Membership`, and a
 *   `Work.runEvery` loop that takes a small batch of its own items (`Ownership.owned`) per tick inside
 *   `Fenced.fenced`, recording every processing in `modulo_group_demo.processed`. It prints JSON Lines
 *   (its state changes, and every transaction the fence refused) for the controller to read.
 *
 * Nothing hides a duplicate: the `UPDATE` that marks an item done has no "not done yet" condition and
 * `processed` has no unique key, so an item processed twice shows up as two rows.
 *
 * @since 0.1.0
 * @internal
 */
import { SqlClient } from "@effect/sql"
import { Cause, Duration, Effect, Option, Schema, Stream } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import { Fenced, Membership, MembershipConfig, Migrations, Ownership, PgMembershipStore, Work } from "modulo-group"
import { describe, Exit, ExitCodes, fail, report, withLogging } from "../CliError.js"
import * as Database from "../Database.js"
import { formatMillis } from "../Durations.js"
import * as Events from "../Events.js"

type MembershipConfigInput = MembershipConfig.MembershipConfigInput

// --- names --------------------------------------------------------------------------------------

/**
 * The hidden command a member process runs: `modulo-group demo-member <spec as JSON> [--verbose]`.
 *
 * @since 0.1.0
 * @internal
 */
export const memberCommand = "demo-member"

/**
 * The group of a demo run.
 *
 * @since 0.1.0
 * @internal
 */
export const groupOf = (run: string): string => `modulo-group-demo-${run}`

/**
 * The kinds of fault, in the order the demo injects them.
 *
 * @since 0.1.0
 * @internal
 */
export const faultKinds = ["join", "sigterm", "sigkill", "sigstop", "sigcont"] as const

/**
 * @since 0.1.0
 * @internal
 */
export type FaultKind = (typeof faultKinds)[number]

// --- the ledger ---------------------------------------------------------------------------------

// The demo's own schema; rows of different runs are told apart by `run_id`. Created under an
// advisory lock: concurrent `CREATE ... IF NOT EXISTS` of one table can still collide.
const setupLock = 0x64656d6f // "demo"

const createSchema = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.withTransaction(Effect.gen(function*() {
    yield* sql`SELECT pg_advisory_xact_lock(${setupLock})`
    yield* sql`CREATE SCHEMA IF NOT EXISTS modulo_group_demo`
    yield* sql`
      CREATE TABLE IF NOT EXISTS modulo_group_demo.runs (
        run_id     text        PRIMARY KEY,
        group_id   text        NOT NULL,
        items      integer     NOT NULL,
        -- Items with id <= released may be taken: the controller raises it at a steady pace.
        released   integer     NOT NULL DEFAULT 0,
        started_at timestamptz NOT NULL DEFAULT now()
      )`
    // The ledger: one row per item, marked with the epoch and member that did it (last one wins).
    yield* sql`
      CREATE TABLE IF NOT EXISTS modulo_group_demo.items (
        run_id     text        NOT NULL,
        id         integer     NOT NULL,
        done_at    timestamptz,
        done_epoch bigint,
        done_by    text,
        PRIMARY KEY (run_id, id)
      )`
    yield* sql`
      CREATE INDEX IF NOT EXISTS items_pending ON modulo_group_demo.items (run_id, id) WHERE done_at IS NULL`
    // Every processing, duplicates included: no unique key on purpose.
    yield* sql`
      CREATE TABLE IF NOT EXISTS modulo_group_demo.processed (
        run_id  text        NOT NULL,
        item_id integer     NOT NULL,
        epoch   bigint      NOT NULL,
        idx     integer     NOT NULL,
        size    integer     NOT NULL,
        member  text        NOT NULL,
        at      timestamptz NOT NULL DEFAULT clock_timestamp()
      )`
    yield* sql`CREATE INDEX IF NOT EXISTS processed_run_item ON modulo_group_demo.processed (run_id, item_id)`
  }))
})

const createRun = (run: string, items: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`INSERT INTO modulo_group_demo.runs (run_id, group_id, items) VALUES (${run}, ${groupOf(run)}, ${items})`
      yield* sql`
        INSERT INTO modulo_group_demo.items (run_id, id)
        SELECT ${run}, g FROM generate_series(1, ${items}::int) AS g`
    }))
  })

const deleteRun = (run: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const group = groupOf(run)
    yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`DELETE FROM modulo_group_demo.processed WHERE run_id = ${run}`
      yield* sql`DELETE FROM modulo_group_demo.items WHERE run_id = ${run}`
      yield* sql`DELETE FROM modulo_group_demo.runs WHERE run_id = ${run}`
      // The group row stays after its last member left; drop it if nobody is left in it.
      yield* sql`
        DELETE FROM modulo_group.groups g
         WHERE g.group_id = ${group}
           AND NOT EXISTS (SELECT 1 FROM modulo_group.members m WHERE m.group_id = ${group})`
    }))
  })

// --- a member -------------------------------------------------------------------------------------

const MemberSpec = Schema.Struct({
  run: Schema.String,
  name: Schema.String,
  batch: Schema.Int.pipe(Schema.positive()),
  intervalMs: Schema.Number.pipe(Schema.positive()),
  heartbeatMs: Schema.Number.pipe(Schema.positive()),
  leaseMs: Schema.Number.pipe(Schema.positive()),
  fenceMarginMs: Schema.Number.pipe(Schema.positive()),
  statementTimeoutMs: Schema.Number.pipe(Schema.positive()),
  /** Connect, print `ready`, and join only when a `join` line arrives on stdin. */
  standby: Schema.Boolean
})

/**
 * What the controller tells a member process.
 *
 * @since 0.1.0
 * @internal
 */
export type MemberSpec = typeof MemberSpec.Type

/**
 * One JSON line a member prints: its state changes (the fields of `join --json`, plus `name`), and
 * every fenced transaction that did not commit (`stale`: refused by the fence; `aborted`: timed out or
 * lost its connection).
 *
 * @since 0.1.0
 * @internal
 */
export type MemberLine =
  | (Events.JoinEvent & { readonly name: string })
  | {
    readonly ts: string
    readonly name: string
    readonly event: "stale" | "aborted"
    readonly epoch: number
    readonly reason: string
  }
  | { readonly ts: string; readonly name: string; readonly event: "ready" }

const writeLine = (value: unknown) => {
  process.stdout.write(`${JSON.stringify(value)}\n`)
}

/** One tick: take up to `batch` of this member's pending items and mark them done, all in one fenced transaction. */
const drainBatch = (spec: MemberSpec, tick: Work.Tick) =>
  Fenced.fenced(
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const picked = yield* sql<{ id: number }>`
        SELECT id FROM modulo_group_demo.items
         WHERE run_id = ${spec.run} AND done_at IS NULL AND ${Ownership.owned(sql, "id", tick)}
           AND id <= (SELECT released FROM modulo_group_demo.runs WHERE run_id = ${spec.run})
         ORDER BY id
         LIMIT ${spec.batch}`
      if (picked.length === 0) return 0
      const ids = picked.map((r) => r.id)
      // No "AND done_at IS NULL" and no ON CONFLICT: a second processing must be seen, not hidden.
      yield* sql`
        UPDATE modulo_group_demo.items
           SET done_at = clock_timestamp(), done_epoch = ${tick.epoch}, done_by = ${spec.name}
         WHERE run_id = ${spec.run} AND ${sql.in("id", ids)}`
      yield* sql`
        INSERT INTO modulo_group_demo.processed ${
        sql.insert(ids.map((id) => ({
          run_id: spec.run,
          item_id: id,
          epoch: tick.epoch,
          idx: tick.index,
          size: tick.size,
          member: spec.name
        })))
      }`
      return ids.length
    }),
    { assignment: tick }
  ).pipe(
    Effect.catchAll((error) =>
      Effect.sync(() =>
        writeLine({
          ts: new Date().toISOString(),
          name: spec.name,
          event: error._tag === "StaleAssignment" ? "stale" : "aborted",
          epoch: tick.epoch,
          reason: error._tag === "StaleAssignment" ? error.reason : `${error._tag}: ${describe(error)}`
        })
      )
    )
  )

/**
 * Reads the controller's stdin: `join` lines wake a standby member; the end of the stream (the
 * controller is gone, even by SIGKILL) makes the member leave the group, as SIGTERM does.
 */
const controllerLink = () => {
  let go = false
  const waiting = new Set<() => void>()
  if (process.stdin.isTTY !== true) {
    process.stdin.setEncoding("utf8")
    process.stdin.on("data", (chunk: string) => {
      if (!go && chunk.includes("join")) {
        go = true
        for (const wake of waiting) wake()
      }
    })
    process.stdin.on("error", () => undefined)
    process.stdin.once("end", () => process.kill(process.pid, "SIGTERM"))
  }
  const awaitJoin = Effect.async<void>((resume) => {
    if (go) return resume(Effect.void)
    const wake = () => resume(Effect.void)
    waiting.add(wake)
    return Effect.sync(() => waiting.delete(wake))
  })
  return { awaitJoin }
}

const member = (spec: MemberSpec) =>
  Effect.gen(function*() {
    const link = controllerLink()
    const input: MembershipConfigInput = {
      groupId: groupOf(spec.run),
      name: spec.name,
      heartbeat: Duration.millis(spec.heartbeatMs),
      lease: Duration.millis(spec.leaseMs),
      fenceMargin: Duration.millis(spec.fenceMarginMs),
      statementTimeout: Duration.millis(spec.statementTimeoutMs),
      startupTimeout: Duration.seconds(10)
    }
    const config = yield* MembershipConfig.make(input)
    const database = yield* Database.resolve(Option.none())
    yield* Effect.scoped(Effect.gen(function*() {
      if (spec.standby) {
        writeLine({ ts: new Date().toISOString(), name: spec.name, event: "ready" })
        yield* link.awaitJoin
      }
      const m = yield* Membership.make(input)
      const group = config.groupId
      yield* m.changes.pipe(
        Stream.runForEach((state) =>
          Effect.sync(() => writeLine({ ...Events.stateEvent(m.memberId, group, state, new Date()), name: spec.name }))
        ),
        Effect.forkScoped
      )
      const interval = Duration.millis(spec.intervalMs)
      yield* Work.runEvery(interval, (tick) => drainBatch(spec, tick), { modulo: interval }).pipe(
        Effect.provideService(Membership.Membership, m)
      )
      return yield* Effect.never
    })).pipe(
      Effect.provide(
        PgMembershipStore.layer({ migrate: true, startupTimeout: Duration.seconds(10), statementTimeout: config.statementTimeout })
      ),
      Effect.provide(Database.layer(database.url))
    )
  })

/**
 * The hidden `demo-member` command: `args` is what follows it on the command line.
 *
 * @since 0.1.0
 * @internal
 */
export const runMember = (args: ReadonlyArray<string>) => {
  const verbose = args.includes("--verbose")
  return Effect.gen(function*() {
    const spec = yield* Schema.decodeUnknown(Schema.parseJson(MemberSpec))(args[0] ?? "").pipe(
      Effect.mapError((e) => fail(`${memberCommand} is started by \`modulo-group demo\`; bad spec: ${e.message}`, e, ExitCodes.usage))
    )
    yield* member(spec)
  }).pipe(report(verbose), withLogging(verbose))
}

// --- the controller: member processes -------------------------------------------------------------

type ProcStatus = "standby" | "running" | "frozen" | "stopping" | "killed" | "gone"

interface Proc {
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
}

const binPath = (): string => {
  for (const rel of ["../../../bin/modulo-group.js", "../../bin/modulo-group.js"]) {
    const file = fileURLToPath(new URL(rel, import.meta.url))
    if (fs.existsSync(file)) return file
  }
  return process.argv[1] ?? "modulo-group"
}

const signal = (p: Proc, sig: NodeJS.Signals) => {
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

// --- the controller: convergence ------------------------------------------------------------------

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

// --- the controller: output -----------------------------------------------------------------------

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

const thousands = (n: number): string => n.toLocaleString("en-US")

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)}s`

// --- the controller -------------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @internal
 */
export interface DemoOptions {
  readonly members: number
  readonly items: number
  readonly drainTime: Duration.Duration
  readonly batchInterval: Duration.Duration
  readonly batch: number | undefined
  readonly heartbeat: Duration.Duration
  readonly lease: Duration.Duration
  readonly fenceMargin: Duration.Duration
  readonly statementTimeout: Duration.Duration
  readonly keep: boolean
  readonly json: boolean
  readonly verbose: boolean
  readonly databaseUrl: Option.Option<string>
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
  /** From the fault to the last member's `assigned` line; `null` if it did not converge. */
  readonly convergedMs: number | null
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
  /** Pairs of consecutive epochs whose processings overlap in time on the database clock (G2: 0). */
  readonly epochOverlaps: number
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
}

const ms = Duration.toMillis

const validate = (options: DemoOptions) =>
  Effect.gen(function*() {
    const bad = (message: string) => Effect.fail(fail(message, undefined, ExitCodes.usage))
    if (!Number.isSafeInteger(options.members) || options.members < 3 || options.members > 20) {
      return yield* bad(`--members must be between 3 and 20 (the faults take two members away), got ${options.members}`)
    }
    if (!Number.isSafeInteger(options.items) || options.items < 1 || options.items > 10_000_000) {
      return yield* bad(`--items must be between 1 and 10000000, got ${options.items}`)
    }
    if (options.batch !== undefined && (!Number.isSafeInteger(options.batch) || options.batch < 1)) {
      return yield* bad(`--batch must be a positive integer, got ${options.batch}`)
    }
    // The same rules as `join`, checked before anything starts.
    yield* MembershipConfig.make({
      groupId: "demo",
      heartbeat: options.heartbeat,
      lease: options.lease,
      fenceMargin: options.fenceMargin,
      statementTimeout: options.statementTimeout
    })
  })

/**
 * `modulo-group demo`.
 *
 * @since 0.1.0
 * @internal
 */
export const demo = (options: DemoOptions) =>
  Effect.gen(function*() {
    yield* validate(options)
    const database = yield* Database.resolve(options.databaseUrl)
    const summary = yield* Effect.scoped(controller(options, database)).pipe(
      Effect.onInterrupt(() => Effect.sync(() => process.stderr.write("\nmodulo-group: demo interrupted; its members were stopped\n"))),
      Effect.provide(Database.layer(database.url))
    )
    if (!summary.ok) return yield* Effect.fail(new Exit({ code: ExitCodes.failure }))
  })

const controller = (options: DemoOptions, database: Database.Resolved) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const startedAt = Date.now()
    const since = (t: number = Date.now()) => t - startedAt
    const run = randomBytes(4).toString("hex")
    const group = groupOf(run)
    const leaseMs = ms(options.lease)
    const heartbeatMs = ms(options.heartbeat)
    const intervalMs = ms(options.batchInterval)
    const drainMs = ms(options.drainTime)
    // Items are released at a steady pace over `drainMs`; one batch per tick is what the whole group
    // needs per tick, so that even the two members left during the freeze keep up with ease.
    const batch = options.batch ?? Math.max(1, Math.ceil((options.items * intervalMs) / drainMs))

    // --- output: event lines (stdout, or stderr with --json), and a progress bar on a terminal ---
    const logStream = options.json ? process.stderr : process.stdout
    const tty = process.stderr.isTTY === true
    let barShown = false
    let progress = { done: 0, epoch: 0, size: 0 }
    let staleTotal = 0
    let working = false
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
    const say = (line: string) => {
      clearBar()
      logStream.write(`${seconds(since()).padStart(6)}  ${line}\n`)
      drawBar()
    }
    yield* Effect.addFinalizer(() => Effect.sync(clearBar))

    // --- the ledger ---
    yield* Migrations.run
    yield* createSchema
    yield* createRun(run, options.items)
    // The run's rows go when it ends (after its members: finalizers run in reverse), unless asked to
    // keep them or the run failed, when they are the evidence.
    let keepRows = options.keep
    yield* Effect.addFinalizer(() =>
      keepRows ? Effect.void : deleteRun(run).pipe(
        Effect.timeout(Duration.seconds(10)),
        Effect.catchAllCause((cause) =>
          Effect.sync(() => process.stderr.write(`modulo-group: could not delete run ${run}'s rows: ${describe(Cause.squash(cause))}\n`))
        )
      )
    )
    say(
      `ledger: ${thousands(options.items)} items in modulo_group_demo.items (run ${run}); group ${group}; database: ${
        database.source === "embedded" ? "embedded PostgreSQL" : Database.redact(database.url)
      }`
    )
    say(
      `${options.members} members, each taking up to ${batch} of its items (id % N = k) every ${
        formatMillis(intervalMs)
      } in a fenced transaction; heartbeat ${formatMillis(heartbeatMs)}, lease ${formatMillis(leaseMs)}`
    )

    // --- member processes ---
    const procs: Array<Proc> = []
    const bin = binPath()
    const childEnv = { ...process.env, DATABASE_URL: database.url }
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
        p.state = line
        if (line.state === "assigned" && line.epoch !== null && !p.assignedAt.has(line.epoch)) {
          p.assignedAt.set(line.epoch, Date.parse(line.ts))
        }
        if (line.state === "assigned" && p.assignedAt.size === 1 && !working) {
          say(`${p.name}: assigned epoch ${line.epoch} [${line.index}/${line.size}]`)
        }
        if (line.state === "fenced") say(`${p.name}: fenced itself (lease deadline passed in epoch ${line.epoch}): no work until it renews`)
        if (line.state === "lost") say(`${p.name}: lost its membership (reaped while away); rejoining`)
      } else if (line.event === "stale") {
        p.stale++
        staleTotal++
        say(`${p.name}: the fence refused a transaction of epoch ${line.epoch}: ${line.reason}`)
      } else if (line.event === "ready") {
        p.ready = true
      } else if (line.event === "aborted") {
        p.aborted++
        say(`${p.name}: a transaction of epoch ${line.epoch} did not commit: ${line.reason}`)
      }
    }
    const start = (standby: boolean) => {
      const name = `m${nextName++}`
      const spec: MemberSpec = {
        run,
        name,
        batch,
        intervalMs,
        heartbeatMs,
        leaseMs,
        fenceMarginMs: ms(options.fenceMargin),
        statementTimeoutMs: ms(options.statementTimeout),
        standby
      }
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
        tail: []
      }
      child.stdin!.on("error", () => undefined)
      readline.createInterface({ input: child.stdout! }).on("line", (text) => onLine(p, text))
      readline.createInterface({ input: child.stderr! }).on("line", (text) => {
        remember(p, text)
        if (options.verbose) {
          clearBar()
          process.stderr.write(`[${name}] ${text}\n`)
          drawBar()
        }
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

    // Never leave a member behind: stopped on the way out (also after Ctrl-C), killed at process exit.
    const killAll = () => {
      for (const p of procs) {
        signal(p, "SIGCONT")
        signal(p, "SIGKILL")
      }
    }
    process.once("exit", killAll)
    yield* Effect.addFinalizer(() =>
      Effect.forEach(procs, (p) => terminate(p), { concurrency: "unbounded", discard: true }).pipe(
        Effect.ensuring(Effect.sync(() => process.removeListener("exit", killAll)))
      )
    )

    // --- progress, read from the database ---
    const poll = Effect.gen(function*() {
      const [row] = yield* sql<{ done: string; epoch: string | null; size: number | null }>`
        SELECT (SELECT count(*) FROM modulo_group_demo.items WHERE run_id = ${run} AND done_at IS NOT NULL) AS done,
               g.epoch, g.size
          FROM (SELECT 1) AS one LEFT JOIN modulo_group.groups g ON g.group_id = ${group}`
      if (row !== undefined) {
        progress = { done: Number(row.done), epoch: Number(row.epoch ?? 0), size: Number(row.size ?? 0) }
      }
    }).pipe(Effect.timeout(Duration.seconds(2)), Effect.ignore)
    let lastPlain = 0
    yield* Effect.gen(function*() {
      while (true) {
        yield* poll
        if (tty) drawBar()
        else if (working && Date.now() - lastPlain >= 2_000) {
          lastPlain = Date.now()
          say(`progress: ${thousands(progress.done)}/${thousands(options.items)} done, epoch ${progress.epoch}, ${progress.size} members`)
        }
        yield* Effect.sleep(Duration.millis(tty ? 200 : 250))
      }
    }).pipe(Effect.forkScoped)

    /** Waits until the live members have converged after `after`; `undefined` after `timeoutMs`. */
    const awaitConvergence = (after: number, timeoutMs: number) =>
      Effect.gen(function*() {
        const deadline = Date.now() + timeoutMs
        while (Date.now() < deadline) {
          const c = convergence(live(), after)
          if (c !== undefined) return c
          yield* Effect.sleep(Duration.millis(20))
        }
        return undefined
      })

    // --- start ---
    // The member that joins later starts now too, connects and waits: what the demo measures is how
    // the group takes a new member, not how long Node takes to load on a busy machine.
    const first = Array.from({ length: options.members }, () => start(false))
    const joiner = start(true)
    say(
      `started ${first.map((p) => `${p.name} (pid ${p.pid})`).join(", ")}, and ${joiner.name} (pid ${joiner.pid}), which waits to join later`
    )
    const spawnedAt = Date.now()
    const initial = yield* awaitConvergence(0, 60_000)
    if (initial === undefined) {
      const why = procs.map((p) => `${p.name}: ${p.exit !== undefined ? "exited" : p.state?.state ?? "no output"}${
        p.tail.length > 0 ? ` (${p.tail.at(-1)})` : ""
      }`).join("; ")
      return yield* Effect.fail(fail(`the members did not all get assigned within 60s: ${why}`))
    }
    say(
      `converged: epoch ${initial.epoch}, ${options.members} members ${
        live().map((p) => `${p.name}=[${p.state!.index}/${p.state!.size}]`).join(" ")
      } (${formatMillis(initial.at - spawnedAt)} after spawning)`
    )
    const workStart = Date.now()
    working = true

    // Release the items at a steady pace, so that the faults land while there is work going on.
    const release = (n: number) =>
      sql`UPDATE modulo_group_demo.runs SET released = ${n} WHERE run_id = ${run}`.pipe(
        Effect.timeout(Duration.seconds(2)),
        Effect.ignore
      )
    yield* Effect.gen(function*() {
      while (true) {
        const n = Math.min(options.items, Math.ceil((options.items * (Date.now() - workStart)) / drainMs))
        yield* release(n)
        if (n >= options.items) return
        yield* Effect.sleep(Duration.millis(Math.min(100, intervalMs)))
      }
    }).pipe(Effect.forkScoped)

    // --- the faults ---
    const changes: Array<Change> = []
    let epoch = initial.epoch
    // Who gets stopped, killed and frozen: the live members in order, m1 last.
    const victims = () => live().filter((p) => p.name !== "m1").concat(live().filter((p) => p.name === "m1"))
    let frozen: Proc | undefined = undefined
    let frozenAt = 0
    for (const [i, kind] of faultKinds.entries()) {
      // Spread over the first part of the planned drain, each after the previous change settled.
      let due = workStart + (drainMs * (i + 1)) / 7
      if (kind === "sigcont") due = Math.max(due, frozenAt + leaseMs + heartbeatMs)
      const wait = Math.max(due - Date.now(), 300)
      yield* Effect.sleep(Duration.millis(wait))
      if (kind === "join") {
        const readyBy = Date.now() + 30_000
        while (!joiner.ready && joiner.exit === undefined && Date.now() < readyBy) yield* Effect.sleep(Duration.millis(20))
      }
      yield* poll
      const at = Date.now()
      const doneBefore = progress.done
      // Stop, kill and freeze only while someone else is left to do the work.
      const target: Proc | undefined = kind === "join"
        ? joiner
        : kind === "sigcont"
        ? frozen
        : live().length > 1
        ? victims()[0]
        : undefined
      if (target === undefined) {
        say(`fault ${i + 1}/5 (${kind}) skipped: no member to spare`)
        continue
      }
      switch (kind) {
        case "join":
          if (target.exit === undefined) target.status = "running"
          target.child.stdin!.write("join\n")
          say(`fault 1/5: ${target.name} joins the group`)
          break
        case "sigterm":
          target.status = "stopping"
          signal(target, "SIGTERM")
          say(`fault 2/5: SIGTERM ${target.name}: it stops its work and leaves the group`)
          break
        case "sigkill":
          target.status = "killed"
          signal(target, "SIGKILL")
          say(`fault 3/5: SIGKILL ${target.name}: a crash; the others wait for its lease (${formatMillis(leaseMs)}) to run out`)
          break
        case "sigstop":
          target.status = "frozen"
          signal(target, "SIGSTOP")
          frozen = target
          frozenAt = at
          say(`fault 4/5: SIGSTOP ${target.name}: frozen, maybe inside a transaction; the others reap it when its lease runs out`)
          break
        case "sigcont":
          if (target.exit === undefined) target.status = "running"
          signal(target, "SIGCONT")
          say(
            `fault 5/5: SIGCONT ${target.name} after ${formatMillis(at - frozenAt)} frozen: it finds its lease gone and rejoins`
          )
          break
      }
      const size = live().length
      const c = yield* awaitConvergence(epoch, kind === "join" ? 45_000 : 4 * leaseMs + 15_000)
      if (c === undefined) {
        say(`no convergence at ${size} members after ${kind} ${target.name}; carrying on`)
      } else {
        epoch = c.epoch
        say(
          `converged: epoch ${c.epoch}, ${size} members ${
            live().map((p) => `${p.name}=[${p.state!.index}/${p.state!.size}]`).join(" ")
          } (${formatMillis(c.at - at)} after the change)`
        )
      }
      changes.push({
        kind,
        member: target.name,
        atMs: since(at),
        doneBefore,
        size,
        epoch: c?.epoch ?? null,
        convergedMs: c === undefined ? null : Math.max(0, c.at - at)
      })
    }

    // --- drain, then stop ---
    let drainedAt: number | undefined = undefined
    let lastDone = -1
    let lastMoved = Date.now()
    while (true) {
      yield* poll
      if (progress.done >= options.items) {
        drainedAt = Date.now()
        break
      }
      if (progress.done !== lastDone) {
        lastDone = progress.done
        lastMoved = Date.now()
      } else if (Date.now() - lastMoved > 20_000) {
        say(`no progress for 20s at ${thousands(progress.done)}/${thousands(options.items)}; stopping`)
        break
      }
      yield* Effect.sleep(Duration.millis(100))
    }
    if (drainedAt !== undefined) say(`ledger drained in ${formatMillis(drainedAt - workStart)}; stopping the members (SIGTERM)`)
    yield* Effect.forEach(procs, (p) => terminate(p), { concurrency: "unbounded", discard: true })

    // --- the verdict, from the ledger ---
    const [counts] = yield* sql<{ items: string; once: string; duplicates: string; missing: string; extra: string }>`
      WITH counts AS (
        SELECT i.id, count(p.item_id) AS n
          FROM modulo_group_demo.items i
          LEFT JOIN modulo_group_demo.processed p ON p.run_id = i.run_id AND p.item_id = i.id
         WHERE i.run_id = ${run}
         GROUP BY i.id
      )
      SELECT count(*) AS items,
             count(*) FILTER (WHERE n = 1) AS once,
             count(*) FILTER (WHERE n > 1) AS duplicates,
             count(*) FILTER (WHERE n = 0) AS missing,
             coalesce(sum(n - 1) FILTER (WHERE n > 1), 0) AS extra
        FROM counts`
    const epochRows = yield* sql<{ epoch: string; size: number; n: string; members: string; first: Date; last: Date; overlaps: boolean | null }>`
      WITH e AS (
        SELECT epoch, max(size) AS size, count(*) AS n, count(DISTINCT member) AS members, min(at) AS first, max(at) AS last
          FROM modulo_group_demo.processed WHERE run_id = ${run} GROUP BY epoch
      )
      SELECT epoch, size, n, members, first, last, lag(last) OVER (ORDER BY epoch) >= first AS overlaps
        FROM e ORDER BY epoch`
    const perMember = yield* sql<{ member: string; n: string }>`
      SELECT member, count(*) AS n FROM modulo_group_demo.processed WHERE run_id = ${run} GROUP BY member`
    const processedBy = new Map(perMember.map((r) => [r.member, Number(r.n)]))

    const duplicates = Number(counts?.duplicates ?? 0)
    const missing = Number(counts?.missing ?? 0)
    const epochOverlaps = epochRows.filter((r) => r.overlaps === true).length
    const ok = duplicates === 0 && missing === 0 && epochOverlaps === 0
    const summary: Summary = {
      ok,
      run,
      group,
      database: database.source,
      items: Number(counts?.items ?? 0),
      once: Number(counts?.once ?? 0),
      duplicates,
      missing,
      extraProcessings: Number(counts?.extra ?? 0),
      staleRejected: procs.reduce((n, p) => n + p.stale, 0),
      aborted: procs.reduce((n, p) => n + p.aborted, 0),
      epochOverlaps,
      startup: { members: options.members, epoch: initial.epoch, convergedMs: initial.at - spawnedAt },
      changes,
      epochs: epochRows.map((r) => ({
        epoch: Number(r.epoch),
        size: Number(r.size),
        processed: Number(r.n),
        members: Number(r.members),
        first: r.first.toISOString(),
        last: r.last.toISOString()
      })),
      members: procs.map((p) => ({
        name: p.name,
        pid: p.pid,
        processed: processedBy.get(p.name) ?? 0,
        staleRejected: p.stale,
        aborted: p.aborted,
        end: p.status === "killed"
          ? "killed (SIGKILL)"
          : p.exit === undefined
          ? "running"
          : p.exit.signal !== null
          ? `signal ${p.exit.signal}`
          : `exit ${p.exit.code}`
      })),
      settings: {
        members: options.members,
        batch,
        batchIntervalMs: intervalMs,
        heartbeatMs,
        leaseMs,
        fenceMarginMs: ms(options.fenceMargin),
        statementTimeoutMs: ms(options.statementTimeout)
      },
      drainMs: drainedAt === undefined ? null : drainedAt - workStart,
      durationMs: since()
    }

    if (!ok) keepRows = true
    if (keepRows) {
      say(`kept the rows: SELECT * FROM modulo_group_demo.processed WHERE run_id = '${run}' (and modulo_group_demo.items)`)
    }
    clearBar()
    process.stdout.write(options.json ? `${JSON.stringify(summary)}\n` : renderSummary(summary))
    return summary
  })

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
    `  epochs whose work overlapped in time: ${s.epochOverlaps} of ${Math.max(0, s.epochs.length - 1)} epoch changes`,
    `  convergence (every live member assigned in the new epoch):`,
    `    start                     ${s.startup.members} members  epoch ${String(s.startup.epoch).padEnd(3)}  ${
      formatMillis(s.startup.convergedMs)
    } after spawning`,
    ...s.changes.map((c) =>
      `    ${KIND_TEXT[c.kind].padEnd(24)}  ${c.size} members  ${
        c.epoch === null ? "did not converge" : `epoch ${String(c.epoch).padEnd(3)}  ${formatMillis(c.convergedMs ?? 0)}`
      }  (${c.member}, at ${seconds(c.atMs)}, ${thousands(c.doneBefore)} done)`
    ),
    s.ok
      ? "OK: every item was processed exactly once."
      : `FAILED: ${
        [
          s.duplicates > 0 ? `${s.duplicates} items processed more than once` : "",
          s.missing > 0 ? `${s.missing} items never processed` : "",
          s.epochOverlaps > 0 ? `${s.epochOverlaps} epoch changes with overlapping work` : ""
        ].filter((x) => x !== "").join(", ")
      }.`
  ]
  return `${lines.join("\n")}\n`
}
