/**
 * `modulo-group demo`: member processes drain a ledger of items through fenced transactions while
 * the demo adds a member, stops one (SIGTERM), kills one (SIGKILL), and freezes one past its lease
 * (SIGSTOP, then SIGCONT). At the end it counts, from the ledger, the items processed exactly once,
 * more than once and never. With `--slots S` the members run in slots mode and work the items of
 * their slots; the summary then also shows, per change, how many slots paused and for how long
 * (`pauses.ts`).
 *
 * Its parts, in this folder:
 * - `ledger.ts`: the SQL (the items, every processing, the release pace, the verdict);
 * - `member.ts`: a member process (the hidden `modulo-group demo-member <spec>`);
 * - `supervisor.ts`: spawns, watches and stops the member processes;
 * - `faults.ts`: the fault plan, injected while the ledger drains;
 * - `render.ts`: event lines, the progress bar and the summary;
 * - `pauses.ts`: slots mode, the pauses per change from the members' slot lines;
 * - this file: the controller, which runs them in order: ledger, members, faults, drain, verdict.
 *
 * @since 0.1.0
 * @internal
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { Option } from "effect"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { MembershipConfig, Migrations } from "modulo-group"
import { describe, Exit, ExitCodes, fail } from "../CliError.js"
import * as Database from "../Database.js"
import * as UiQueries from "../ui/queries.js"
import { formatMillis } from "../Durations.js"
import * as Faults from "./faults.js"
import * as Ledger from "./ledger.js"
import { type Cutoff, pausesPerChange } from "./pauses.js"
import { type Change, makeOutput, renderSummary, renderTimeline, type Summary, thousands } from "./render.js"
import * as Supervisor from "./supervisor.js"
import { placement } from "./supervisor.js"

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
  /** Slots mode with this many slots; modulo mode when undefined. */
  readonly slots: number | undefined
  readonly keep: boolean
  readonly json: boolean
  readonly verbose: boolean
  readonly databaseUrl: Option.Option<string>
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
      statementTimeout: options.statementTimeout,
      slots: options.slots
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
    const startedAt = Date.now()
    const since = (t: number = Date.now()) => t - startedAt
    const run = randomBytes(4).toString("hex")
    const group = Ledger.groupOf(run)
    const leaseMs = ms(options.lease)
    const heartbeatMs = ms(options.heartbeat)
    const intervalMs = ms(options.batchInterval)
    const drainMs = ms(options.drainTime)
    // Items are released at a steady pace over `drainMs`; one batch per tick is what the whole group
    // needs per tick, so that even the two members left during the freeze keep up with ease.
    const batch = options.batch ?? Math.max(1, Math.ceil((options.items * intervalMs) / drainMs))

    const output = makeOutput(options, since)
    const say = output.say
    let working = false
    yield* Effect.addFinalizer(() => Effect.sync(output.clearBar))

    // --- the ledger ---
    yield* Migrations.run
    yield* Ledger.createSchema
    yield* Ledger.createRun(run, options.items)
    // The run's rows go when it ends (after its members: finalizers run in reverse), unless asked to
    // keep them or the run failed, when they are the evidence.
    let keepRows = options.keep
    yield* Effect.addFinalizer(() =>
      keepRows ? Effect.void : Ledger.deleteRun(run).pipe(
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
      `${options.members} members, each taking up to ${batch} of its items (${
        options.slots === undefined ? "id % N = k" : `slots mode: id % ${options.slots} in its slots`
      }) every ${formatMillis(intervalMs)} in a fenced transaction; heartbeat ${formatMillis(heartbeatMs)}, lease ${
        formatMillis(leaseMs)
      }`
    )

    // --- member processes ---
    const supervisor = yield* Supervisor.make({
      spec: {
        run,
        batch,
        intervalMs,
        heartbeatMs,
        leaseMs,
        fenceMarginMs: ms(options.fenceMargin),
        statementTimeoutMs: ms(options.statementTimeout),
        ...(options.slots === undefined ? {} : { slots: options.slots })
      },
      databaseUrl: database.url,
      verbose: options.verbose,
      output,
      working: () => working
    })
    const { procs, live } = supervisor

    // --- progress, read from the database ---
    const sql = yield* SqlClient.SqlClient
    const poll = Ledger.readProgress(run).pipe(
      Effect.flatMap((progress) =>
        Effect.sync(() => {
          if (progress !== undefined) output.setProgress(progress)
        })
      ),
      Effect.provideService(SqlClient.SqlClient, sql)
    )
    let lastPlain = 0
    yield* Effect.gen(function*() {
      while (true) {
        yield* poll
        if (output.tty) output.drawBar()
        else if (working && Date.now() - lastPlain >= 2_000) {
          lastPlain = Date.now()
          const progress = output.progress()
          say(`progress: ${thousands(progress.done)}/${thousands(options.items)} done, epoch ${progress.epoch}, ${progress.size} members`)
        }
        yield* Effect.sleep(Duration.millis(output.tty ? 200 : 250))
      }
    }).pipe(Effect.forkScoped)

    // --- start ---
    // The member that joins later starts now too, connects and waits: what the demo measures is how
    // the group takes a new member, not how long Node takes to load on a busy machine.
    const first = Array.from({ length: options.members }, () => supervisor.start(false))
    const joiner = supervisor.start(true)
    say(
      `started ${first.map((p) => `${p.name} (pid ${p.pid})`).join(", ")}, and ${joiner.name} (pid ${joiner.pid}), which waits to join later`
    )
    const spawnedAt = Date.now()
    const initial = yield* supervisor.awaitConvergence(0, 60_000)
    if (initial === undefined) {
      const why = procs.map((p) => `${p.name}: ${p.exit !== undefined ? "exited" : p.state?.state ?? "no output"}${
        p.tail.length > 0 ? ` (${p.tail.at(-1)})` : ""
      }`).join("; ")
      return yield* Effect.fail(fail(`the members did not all get assigned within 60s: ${why}`))
    }
    say(
      `converged: epoch ${initial.epoch}, ${options.members} members ${
        live().map((p) => placement(p, options.slots)).join(" ")
      } (${formatMillis(initial.at - spawnedAt)} after spawning)`
    )
    const workStart = Date.now()
    working = true

    // Release the items at a steady pace, so that the faults land while there is work going on. The
    // last tenth waits for the faults: on a loaded machine the faults, each after the group settled,
    // took longer than the pace, and the last landed on a drained ledger (a CI run: 2,000 of 2,000
    // done before the fifth fault).
    let faultsDone = false
    yield* Effect.gen(function*() {
      while (true) {
        const held = faultsDone ? 0 : Math.ceil(options.items / 10)
        const n = Math.min(options.items - held, Math.ceil((options.items * (Date.now() - workStart)) / drainMs))
        yield* Ledger.release(run, n)
        if (n >= options.items) return
        yield* Effect.sleep(Duration.millis(Math.min(100, intervalMs)))
      }
    }).pipe(Effect.forkScoped)

    // --- the faults ---
    const faultChanges = yield* Faults.run({
      supervisor,
      output,
      joiner,
      initialEpoch: initial.epoch,
      workStart,
      drainMs,
      leaseMs,
      heartbeatMs,
      poll,
      since,
      slots: options.slots
    })
    faultsDone = true

    // --- drain, then stop ---
    let drainedAt: number | undefined = undefined
    let lastDone = -1
    let lastMoved = Date.now()
    while (true) {
      yield* poll
      const done = output.progress().done
      if (done >= options.items) {
        drainedAt = Date.now()
        break
      }
      if (done !== lastDone) {
        lastDone = done
        lastMoved = Date.now()
      } else if (Date.now() - lastMoved > 20_000) {
        say(`no progress for 20s at ${thousands(done)}/${thousands(options.items)}; stopping`)
        break
      }
      yield* Effect.sleep(Duration.millis(100))
    }
    if (drainedAt !== undefined) say(`ledger drained in ${formatMillis(drainedAt - workStart)}; stopping the members (SIGTERM)`)
    const stoppingAt = Date.now()
    yield* supervisor.stopAll
    const changes = options.slots === undefined ? faultChanges : withPauses(faultChanges, supervisor, startedAt, stoppingAt)

    // --- the verdict, from the ledger ---
    const verdict = yield* Ledger.readVerdict(run)
    // The tenure timeline from the group's change log (before the run's rows and group are deleted).
    const timeline = yield* writeTimeline(group, run, startedAt, changes)
    const epochOverlaps = verdict.epochs.filter((e) => e.overlapsPrevious).length
    // Slots mode: epochs are no barrier (their work may overlap); per slot, generations must not.
    const ok = verdict.duplicates === 0 && verdict.missing === 0 &&
      (options.slots === undefined ? epochOverlaps === 0 : verdict.slotOverlaps === 0)
    const summary: Summary = {
      ok,
      run,
      group,
      database: database.source,
      items: verdict.items,
      once: verdict.once,
      duplicates: verdict.duplicates,
      missing: verdict.missing,
      extraProcessings: verdict.extraProcessings,
      staleRejected: procs.reduce((n, p) => n + p.stale, 0),
      aborted: procs.reduce((n, p) => n + p.aborted, 0),
      epochOverlaps,
      slots: options.slots ?? null,
      slotHandoffs: verdict.slotHandoffs,
      slotOverlaps: verdict.slotOverlaps,
      startup: { members: options.members, epoch: initial.epoch, convergedMs: initial.at - spawnedAt },
      changes,
      epochs: verdict.epochs.map((e) => ({
        epoch: e.epoch,
        size: e.size,
        processed: e.processed,
        members: e.members,
        first: e.first.toISOString(),
        last: e.last.toISOString()
      })),
      members: procs.map((p) => ({
        name: p.name,
        pid: p.pid,
        processed: verdict.processedBy.get(p.name) ?? 0,
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
      durationMs: since(),
      timeline
    }

    if (!ok) keepRows = true
    if (keepRows) {
      say(`kept the rows: SELECT * FROM modulo_group_demo.processed WHERE run_id = '${run}' (and modulo_group_demo.items)`)
    }
    output.clearBar()
    process.stdout.write(options.json ? `${JSON.stringify(summary)}\n` : renderSummary(summary))
    return summary
  })

/**
 * Slots mode: each change with the pauses that began between it and the next change (the last one:
 * until the demo stopped its members). A killed or frozen member works nothing from its signal on.
 */
const withPauses = (
  changes: ReadonlyArray<Change>,
  supervisor: Supervisor.Supervisor,
  startedAt: number,
  stoppingAt: number
): Array<Change> => {
  const cutoffs: Array<Cutoff> = changes
    .filter((c) => c.kind === "sigkill" || c.kind === "sigstop")
    .map((c) => ({ member: c.member, at: startedAt + c.atMs }))
  const windows = changes.map((c, i) => ({
    from: startedAt + c.atMs,
    to: i + 1 < changes.length ? startedAt + changes[i + 1]!.atMs : stoppingAt
  }))
  const pauses = pausesPerChange(supervisor.slotEvents, cutoffs, windows, stoppingAt, supervisor.fenceEvents)
  return changes.map((c, i) => ({ ...c, pauses: pauses[i] }))
}

/** Writes the run's tenure timeline to the OS temp dir; its path, or null (the demo goes on) on any failure. */
const writeTimeline = (group: string, run: string, startedAt: number, changes: ReadonlyArray<Change>) =>
  UiQueries.changes(group, startedAt).pipe(
    Effect.map((rows) => {
      const file = path.join(os.tmpdir(), `modulo-group-demo-${run}.svg`)
      fs.writeFileSync(file, `${renderTimeline(rows, { id: run, startedAt, endedAt: Date.now(), changes })}\n`)
      return file as string | null
    }),
    Effect.timeout(Duration.seconds(5)),
    Effect.catchAllCause(() => Effect.succeed(null))
  )
