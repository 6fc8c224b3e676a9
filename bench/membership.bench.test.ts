/**
 * The benchmark of issue 7: convergence, steady-state database cost, the largest stable group and
 * memory per member, each beside the original design measured in the same run on the same database.
 *
 *   npm run bench                      # full run (about 35 minutes on 2 cores)
 *   BENCH_QUICK=1 npm run bench        # reduced matrix, about 5 minutes
 *   DATABASE_URL=postgres://... npm run bench   # a server of your own (else an embedded PostgreSQL)
 *
 * Prints a table and writes docs/benchmarks.md (every figure from this run). The members run the
 * library as transpiled from src/ at the start of the run (support/Build.ts).
 * Overrides (see the matrix below): BENCH_SECTIONS=convergence,steady,stability,cli  BENCH_ROUNDS=20
 * (also `overdue`, not in the default run: stopped work when a member is overdue; BENCH_OVERDUE_ROUNDS=3;
 * also `burst`, not in the default run: K joins at once while a member is overdue; BENCH_BURST_ROUNDS=3
 * BENCH_BURST_SIZES=8,16;
 * `paused`, not in the default run: work paused per change, modulo mode beside slots mode;
 * BENCH_PAUSED_ROUNDS=3 BENCH_PAUSED_SIZES=4,16 BENCH_PAUSED_SLOTS=64 BENCH_PAUSED_MODES=modulo,slots
 * (BENCH_PAUSED_DUMP=<prefix>: every change's window and events to <prefix>-....json);
 * BENCH_SRC=<dir with src/> runs the members on another tree's library, e.g. main's, for a before/after)
 * BENCH_FIBER_SIZES=4,16  BENCH_PROCESS_SIZES=4  BENCH_ORIGINAL_SIZES=4  BENCH_FORM_SECONDS=90
 * BENCH_BUDGET_SECONDS=180  BENCH_STABLE_SIZES=1000,2000  BENCH_STABLE_SECONDS=60  BENCH_STEADY_SECONDS=30
 * BENCH_CLI_RUNS=10 (starts of each command in the cli section)
 * BENCH_CLI_AGAINST=<another clone>/cli/bin/modulo-group.js (the cli section: that build's starts
 * interleaved with this one's, for a before/after on a machine whose speed drifts)
 * BENCH_OUT=docs/benchmarks.md (BENCH_OUT=- prints only).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { execFileSync } from "node:child_process"
import pg from "pg"
import { it } from "vitest"
import type { MembershipConfigInput } from "../src/MembershipConfig.js"
import { createTable } from "./original/Original.js"
import { buildSnapshots, root } from "./support/Build.js"
import { Cover } from "./support/Cover.js"
import { measureStartup, type StartupRow } from "./support/CliStartup.js"
import { benchDatabase, connections, counters, median, migrate, percentile, serverCpuMs, statStatements } from "./support/Database.js"
import { OriginalGroup } from "./support/OriginalGroup.js"
import { type ChangeResult, PausedGroup } from "./support/Paused.js"
import { HostGroup, ProcessGroup } from "./support/ProcessGroup.js"
import type { Breakdown, Group, TrialResult } from "./support/Trials.js"
import { form, runTrials } from "./support/Trials.js"

// --- the matrix -------------------------------------------------------------------------------
const env = (k: string) => process.env[k]
const QUICK = env("BENCH_QUICK") === "1"
const list = (k: string, dflt: Array<number>) =>
  env(k) === undefined ? dflt : env(k)!.split(",").filter((x) => x.trim() !== "").map(Number)
const sections = new Set((env("BENCH_SECTIONS") ?? "convergence,steady,stability,cli").split(","))
/** The cli section: starts of each command, after one warm-up start. */
const CLI_RUNS = Number(env("BENCH_CLI_RUNS") ?? 10)
const CLI_AGAINST = env("BENCH_CLI_AGAINST")
const ROUNDS = Number(env("BENCH_ROUNDS") ?? (QUICK ? 5 : 20))
const FIBER_SIZES = list("BENCH_FIBER_SIZES", QUICK ? [4, 64] : [4, 16, 64, 256, 1000])
const PROCESS_SIZES = list("BENCH_PROCESS_SIZES", QUICK ? [4] : [4, 16, 32])
const ORIGINAL_SIZES = list("BENCH_ORIGINAL_SIZES", QUICK ? [4] : [4, 16])
/** The original as loops in this process, one connection each (off by default: it was run as processes). */
const ORIGINAL_FIBER_SIZES = list("BENCH_ORIGINAL_FIBER_SIZES", [])
/** The original's crash trials each wait out its 10 s liveness window: fewer of them. */
const ORIGINAL_CRASH_ROUNDS = Number(env("BENCH_ORIGINAL_CRASH_ROUNDS") ?? (QUICK ? 2 : 5))
/** Sizes tried for the stability window, in order; stops at the first that is not stable. */
const STABLE_SIZES = list("BENCH_STABLE_SIZES", QUICK ? [250] : [1000])
const STABLE_SECONDS = Number(env("BENCH_STABLE_SECONDS") ?? (QUICK ? 15 : 60))
/** Growing the stability group: this many joins at once, converged between batches, bounded. */
const STABLE_BATCH = Number(env("BENCH_STABLE_BATCH") ?? 50)
const STABLE_FORM_SECONDS = Number(env("BENCH_STABLE_FORM_SECONDS") ?? (QUICK ? 90 : 150))
/** barrierPoll (ms) of the stability group's members (default: the library's). */
const STABLE_BARRIER_POLL = env("BENCH_STABLE_BARRIER_POLL")
const STEADY_SECONDS = Number(env("BENCH_STEADY_SECONDS") ?? (QUICK ? 10 : 30))
const STEADY_SIZE = 16
/**
 * Forming a group for the convergence trials: this many joins at once, converged in between. Larger
 * batches form large groups no faster: concurrent joins queue on the group lock, each holding a pool
 * connection, and starve the members' heartbeats.
 */
const FORM_BATCH = Number(env("BENCH_FORM_BATCH") ?? 16)
/** Upper bound on forming one group for the convergence trials. */
const FORM_SECONDS = Number(env("BENCH_FORM_SECONDS") ?? (QUICK ? 60 : 90))
/** No new round starts after this long in one configuration (the samples so far are kept). */
const BUDGET_SECONDS = Number(env("BENCH_BUDGET_SECONDS") ?? (QUICK ? 60 : 180))
/** An experiment: barrierPoll in ms for every member of the convergence runs (default: the library's). */
const BARRIER_POLL = env("BENCH_BARRIER_POLL")
const OUT = env("BENCH_OUT") ?? "docs/benchmarks.md"
/** Stopped work when a member is overdue: rounds of (kill -9 one of three, a replacement joins 2 s later). */
const OVERDUE_ROUNDS = Number(env("BENCH_OVERDUE_ROUNDS") ?? 3)
/**
 * A burst of joins while a member is overdue: rounds of (kill -9 one of three, 2 s later K replacements
 * join at once), per K in BENCH_BURST_SIZES.
 */
const BURST_ROUNDS = Number(env("BENCH_BURST_ROUNDS") ?? 3)
const BURST_SIZES = list("BENCH_BURST_SIZES", [8, 16])
/** Work paused per change: rounds of (join, leave, join, crash) per mode and size; the slot count S. */
const PAUSED_ROUNDS = Number(env("BENCH_PAUSED_ROUNDS") ?? 3)
const PAUSED_SIZES = list("BENCH_PAUSED_SIZES", [4, 16])
const PAUSED_SLOTS = Number(env("BENCH_PAUSED_SLOTS") ?? 64)
/** `modulo,slots` (both, side by side) unless told. */
const PAUSED_MODES = new Set((env("BENCH_PAUSED_MODES") ?? "modulo,slots").split(","))

/** Convergence runs: lease 2 s, heartbeat 200 ms (fence margin and statement timeout as the tests use). */
const fast = {
  heartbeat: "200 millis",
  lease: "2 seconds",
  fenceMargin: "500 millis",
  statementTimeout: "1 second",
  ...(BARRIER_POLL ? { barrierPoll: Number(BARRIER_POLL) } : {})
} as const
/** Steady state and stability: the defaults (heartbeat 1 s, lease 10 s). */
const slow = { heartbeat: "1 second", lease: "10 seconds" } as const

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
/** `p`, or undefined if it takes longer than 10 s (an overloaded member host may not answer). */
const within = <A>(p: Promise<A> | undefined): Promise<A | undefined> =>
  p === undefined ? Promise.resolve(undefined) : Promise.race([p, sleep(10_000).then(() => undefined)])
let groupSeq = 0
const groupId = (label: string) => `bench-${label}-${++groupSeq}`

/** Busy and total CPU time of the whole machine so far (ms, all cores). */
const machineCpu = () => {
  let busy = 0
  let total = 0
  for (const c of os.cpus()) {
    const t = c.times.user + c.times.nice + c.times.sys + c.times.irq + c.times.idle
    total += t
    busy += t - c.times.idle
  }
  return { busy, total }
}

// --- results ----------------------------------------------------------------------------------
interface ConvergenceRow {
  readonly design: "modulo-group" | "original"
  readonly members: number
  readonly kind: "fibers" | "processes"
  readonly notifications: boolean | undefined
  readonly result: TrialResult
  readonly diagnosis?: Diagnosis | undefined
}
/** Where the time of the trials went: the load on the machine, and (fibers) the members' store calls. */
interface Diagnosis {
  readonly seconds: number
  /** Busy share of all cores of the machine. */
  readonly machineBusyPct: number
  /** CPU of the PostgreSQL server, in % of one core. */
  readonly serverCpuPct: number
  /** CPU of the process hosting the fiber members, in % of one core (NaN for processes). */
  readonly hostCpuPct: number
  readonly heartbeatsPerSecond: number
  /** Mean time of one store call as the member sees it (pool wait included). */
  readonly heartbeatMs: number
  readonly joinMs: number
  readonly leaveMs: number
  readonly reapMs: number
  /** p99 event-loop delay of the host process. */
  readonly loopP99Ms: number
}
interface SteadyRow {
  readonly design: "modulo-group" | "original"
  readonly kind: "fibers" | "processes"
  readonly members: number
  readonly seconds: number
  /** pg_stat_database. */
  readonly txPerMemberSecond: number
  /** Counted at the driver: exact, where pg_stat_database is off by what backends have not flushed yet. */
  readonly driverTxPerMemberSecond: number
  readonly statementsPerMemberSecond: number
  readonly serverStatementsPerMemberSecond: number
  readonly serverCpuMsPerMemberSecond: number
  /** The members' own processes (every thread), from their `stats`; NaN where they do not report it (the original). */
  readonly clientCpuMsPerMemberSecond: number
  readonly stable: boolean
}
interface StableRow {
  readonly members: number
  readonly formMs: number
  readonly seconds: number
  readonly stable: boolean
  readonly why: string
  readonly txPerMemberSecond: number
  readonly driverTxPerMemberSecond: number
  readonly statementsPerMemberSecond: number
  readonly serverCpuMsPerMemberSecond: number
  readonly heapPerMemberKb: number
  readonly rssPerMemberKb: number
  readonly diagnosis: Diagnosis
}
const convergence: Array<ConvergenceRow> = []
const emptyResult: TrialResult = {
  formMs: NaN,
  formError: undefined,
  joins: [],
  leaves: [],
  crashes: [],
  joinPhases: [],
  leavePhases: [],
  failures: 0,
  violations: [],
  reordered: 0,
  truncated: false
}
const steady: Array<SteadyRow> = []
const stability: Array<StableRow> = []
/** One round of the overdue section. */
interface OverdueRow {
  /** Member-seconds without work of the two survivors, from the kill until all three work in one epoch. */
  readonly stoppedMemberSeconds: number
  /** From the kill until {survivors + newcomer} work in one epoch of size 3 (ms). */
  readonly convergeMs: number
  /** Epoch changes from the kill until the three work in one epoch (1: one renegotiation). */
  readonly epochs: number
  readonly violations: number
}
const overdue: Array<OverdueRow> = []
/** One round of the burst section. */
interface BurstRow {
  readonly joiners: number
  /** Member-seconds without work of the two survivors, from the kill until all 2 + K work in one epoch. */
  readonly stoppedMemberSeconds: number
  /** From the joins' start until the survivors and the K newcomers work in one epoch (ms). */
  readonly convergeMs: number
  /** Epoch changes from the kill until then (1: the burst in one renegotiation, with the reap). */
  readonly epochs: number
  readonly violations: number
}
const burst: Array<BurstRow> = []
/** The paused section: one row per mode, size and kind of change. */
interface PausedRow {
  readonly mode: string
  readonly members: number
  readonly change: ChangeResult["change"]
  readonly results: ReadonlyArray<ChangeResult>
  readonly failures: number
}
const paused: Array<PausedRow> = []
const notes: Array<string> = []
const startup: Array<StartupRow> = []
let processRss: number | undefined

const log = (s: string) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}`)
const fmt = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : "–")
const mean = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0) / xs.length
const stat = (xs: ReadonlyArray<number>) => `${fmt(median(xs))} / ${fmt(percentile(xs, 95))}`
/** Medians of a convergence's phases: "stop / barrier / start". */
const phases = (xs: ReadonlyArray<Breakdown>) =>
  xs.length === 0 ? "–" : `${fmt(median(xs.map((x) => x.stop).filter(Number.isFinite)))} / ${fmt(median(xs.map((x) => x.barrier)))} / ${fmt(median(xs.map((x) => x.start)))}`
const describe = (d: Diagnosis) =>
  `machine ${fmt(d.machineBusyPct)}% busy, PostgreSQL ${fmt(d.serverCpuPct)}% of a core` +
  (Number.isFinite(d.hostCpuPct)
    ? `, member host ${fmt(d.hostCpuPct)}% of a core (event-loop delay p99 ${fmt(d.loopP99Ms)} ms); ${fmt(d.heartbeatsPerSecond)} heartbeats/s taking ${
      fmt(d.heartbeatMs, 1)
    } ms each; join call ${fmt(d.joinMs, 1)} ms, leave ${fmt(d.leaveMs, 1)} ms, reap ${fmt(d.reapMs, 1)} ms`
    : "")

// --- the run ----------------------------------------------------------------------------------
it("modulo-group benchmarks", async () => {
  const startedAt = new Date()
  // The 1-minute load average, sampled through the run.
  const loads: Array<number> = [os.loadavg()[0]!]
  const loadTimer = setInterval(() => loads.push(os.loadavg()[0]!), 15_000)
  // A database of this run's own (two runs at once must not drop each other's).
  const db = await benchDatabase(`modulo_group_bench_${process.pid}`)
  const pgss = await statStatements(db.url)
  if (!pgss.available) notes.push(`Server-side statement counts: ${pgss.note}; statements are counted at the driver instead (every query the pg clients send, BEGIN/COMMIT included).`)
  const snapshots = buildSnapshots()
  log(`database: ${db.server}, PostgreSQL ${db.version}; ${QUICK ? "quick" : "full"} mode`)
  {
    const c = new pg.Client({ connectionString: db.url })
    await c.connect()
    await createTable(c)
    await c.end()
  }
  await migrate(db.url)

  const memberEnv = { MODULO_GROUP_LIB: snapshots.lib, ORIGINAL_LIB: snapshots.original }
  // Fiber members live in a host process of their own per group (killed with the group, so an
  // overloaded configuration cannot leak into the next), over one pool of 20 connections; process
  // members have a pool of 2 (plus the LISTEN connection).
  const memberScript = path.join(root, "bench", "member.mjs")
  const ours = (kind: "fibers" | "processes", cover: Cover, config: MembershipConfigInput): Group<unknown> =>
    kind === "fibers"
      ? (new HostGroup(cover, {
        script: memberScript,
        env: memberEnv,
        options: { url: db.url, config: { ...config, migrate: false }, maxConnections: 20 }
      }) as unknown as Group<unknown>)
      : (new ProcessGroup(cover, {
        script: memberScript,
        env: memberEnv,
        options: { url: db.url, config: { ...config, migrate: false }, maxConnections: 2 }
      }) as unknown as Group<unknown>)
  const original = (kind: "fibers" | "processes", cover: Cover, group: string): Group<unknown> =>
    kind === "fibers"
      ? (new OriginalGroup(cover, db.url, group) as unknown as Group<unknown>)
      : (new ProcessGroup(cover, {
        script: path.join(root, "bench", "original-member.mjs"),
        env: memberEnv,
        options: { url: db.url, groupId: group, workIntervalMs: 200 }
      }) as unknown as Group<unknown>)

  /**
   * Opens a measurement window over the trials; the function it returns closes it. Store-call
   * figures come from the fiber members' host (processes come and go, so none for them).
   */
  const window = async (host: HostGroup | undefined): Promise<() => Promise<Diagnosis>> => {
    const t0 = performance.now()
    const cpu0 = machineCpu()
    const server0 = serverCpuMs()
    const host0 = await within(host?.stats())
    return async () => {
      const seconds = (performance.now() - t0) / 1000
      const cpu1 = machineCpu()
      const server1 = serverCpuMs()
      const host1 = await within(host?.stats())
      const call = (op: string) => {
        const a = host0?.calls?.[op]
        const b = host1?.calls?.[op]
        return a === undefined || b === undefined ? { n: NaN, ms: NaN } : { n: b.calls - a.calls, ms: (b.ms - a.ms) / (b.calls - a.calls) }
      }
      return {
        seconds,
        machineBusyPct: (100 * (cpu1.busy - cpu0.busy)) / (cpu1.total - cpu0.total),
        serverCpuPct: (server1 - server0) / seconds / 10,
        hostCpuPct: ((host1?.cpuMs ?? NaN) - (host0?.cpuMs ?? NaN)) / seconds / 10,
        heartbeatsPerSecond: call("heartbeat").n / seconds,
        heartbeatMs: call("heartbeat").ms,
        joinMs: call("join").ms,
        leaveMs: call("leave").ms,
        reapMs: call("reap").ms,
        loopP99Ms: host1?.loopP99Ms ?? NaN
      }
    }
  }

  try {
    // --- convergence ------------------------------------------------------------------------
    if (sections.has("convergence")) {
      const run = async (
        design: ConvergenceRow["design"],
        kind: ConvergenceRow["kind"],
        members: number,
        notifications: boolean | undefined
      ) => {
        const cover = new Cover({ checkGuarantees: design === "modulo-group" })
        const label = `${design === "original" ? "orig" : "mg"}-${kind}-${members}-${notifications ?? ""}`
        const group = design === "original"
          ? original(kind, cover, groupId(label))
          : ours(kind, cover, { groupId: groupId(label), ...fast, notifications: notifications! })
        const t = performance.now()
        let diagnosis: Diagnosis | undefined
        const host = group instanceof HostGroup ? group : undefined
        // Covers the forming of the group until it is formed, then the trials only.
        let open = await window(host)
        try {
          const result = await runTrials(group, cover, {
            size: members,
            formBatch: design === "original" ? members : FORM_BATCH,
            rounds: ROUNDS,
            crashRounds: design === "original" ? ORIGINAL_CRASH_ROUNDS : ROUNDS,
            timeoutMs: design === "original" ? 60_000 : 30_000,
            formTimeoutMs: FORM_SECONDS * 1000,
            pauseMs: design === "original" ? 500 : 250,
            budgetMs: BUDGET_SECONDS * 1000,
            onFormed: async () => {
              open = await window(host)
            }
          })
          diagnosis = await open()
          convergence.push({ design, kind, members, notifications, result, diagnosis })
          if (result.formError !== undefined) log(`${label}: could not form the group: ${result.formError}`)
          for (const v of result.violations.slice(0, 5)) log(`${label}: VIOLATION ${v}`)
          log(
            `${label}: form ${fmt(result.formMs)} ms; join ${stat(result.joins)}; leave ${stat(result.leaves)}; crash ${stat(result.crashes)} ms` +
              ` (median / p95; ${result.failures} failures, ${result.violations.length} violations` +
              `${result.reordered > 0 ? ` (${result.reordered} overlaps read out of order, settled by the marks' times)` : ""}; ` +
              `${fmt((performance.now() - t) / 1000)} s)`
          )
          if (diagnosis !== undefined) log(`${label}: ${describe(diagnosis)}`)
        } finally {
          await group.dispose()
        }
      }
      for (const n of FIBER_SIZES) {
        for (const notifications of [true, false]) {
          // A larger group is not attempted when a smaller one could not even be formed.
          const smaller = convergence.find((r) =>
            r.design === "modulo-group" && r.kind === "fibers" && r.notifications === notifications && r.members < n &&
            r.result.formError !== undefined
          )
          if (smaller !== undefined) {
            convergence.push({
              design: "modulo-group",
              kind: "fibers",
              members: n,
              notifications,
              result: { ...emptyResult, formError: `not attempted: ${smaller.members} fibers could not be formed` }
            })
            log(`mg-fibers-${n}-${notifications}: not attempted (${smaller.members} could not be formed)`)
            continue
          }
          await run("modulo-group", "fibers", n, notifications)
        }
      }
      for (const n of PROCESS_SIZES) {
        for (const notifications of [true, false]) await run("modulo-group", "processes", n, notifications)
      }
      for (const n of ORIGINAL_SIZES) await run("original", "processes", n, undefined)
      for (const n of ORIGINAL_FIBER_SIZES) await run("original", "fibers", n, undefined)
    }

    // --- steady state -----------------------------------------------------------------------
    if (sections.has("steady")) {
      const measure = async (design: SteadyRow["design"], kind: SteadyRow["kind"]) => {
        const cover = new Cover({ checkGuarantees: design === "modulo-group" })
        const id = groupId(`steady-${design}-${kind}`)
        const group = design === "original" ? original(kind, cover, id) : ours(kind, cover, { groupId: id, ...slow })
        try {
          await group.grow(STEADY_SIZE)
          await cover.when(STEADY_SIZE, 120_000)
          await sleep(12_000) // pg_stat_database lags by up to 10 s
          // Counted at the driver, every member of the group.
          const driver = async () =>
            group instanceof ProcessGroup
              ? (await group.stats()).reduce((a, s) => ({
                statements: a.statements + s.statements,
                transactions: a.transactions + s.transactions,
                cpuMs: a.cpuMs + (s.cpuMs ?? NaN)
              }), {
                statements: 0,
                transactions: 0,
                cpuMs: 0
              })
              : group instanceof HostGroup
              ? await group.stats()
              : (group as unknown as OriginalGroup)
          const marks0 = cover.marks
          const s0 = await driver()
          const c0 = await counters(db.url, pgss.available)
          const t0 = performance.now()
          await sleep(STEADY_SECONDS * 1000)
          const c1 = await counters(db.url, pgss.available)
          const s1 = await driver()
          const secs = (performance.now() - t0) / 1000
          if (group instanceof ProcessGroup && processRss === undefined) {
            processRss = median((await group.stats()).map((s) => s.rss))
          }
          const per = (x: number) => x / STEADY_SIZE / secs
          const row: SteadyRow = {
            design,
            kind,
            members: STEADY_SIZE,
            seconds: secs,
            txPerMemberSecond: per(c1.transactions - c0.transactions - c0.own),
            driverTxPerMemberSecond: per(s1.transactions - s0.transactions),
            statementsPerMemberSecond: per(s1.statements - s0.statements),
            serverStatementsPerMemberSecond: per(c1.serverStatements - c0.serverStatements),
            serverCpuMsPerMemberSecond: per(c1.serverCpuMs - c0.serverCpuMs),
            clientCpuMsPerMemberSecond: "cpuMs" in s1 && "cpuMs" in s0 ? per((s1.cpuMs ?? NaN) - (s0.cpuMs ?? NaN)) : NaN,
            stable: cover.marks === marks0 && cover.covered(STEADY_SIZE)
          }
          steady.push(row)
          log(
            `steady ${design} ${kind} x${STEADY_SIZE}: ${fmt(row.txPerMemberSecond, 3)} tx/member/s (driver: ${fmt(row.driverTxPerMemberSecond, 3)}), ${
              fmt(row.statementsPerMemberSecond, 2)
            } statements/member/s, ${fmt(row.serverCpuMsPerMemberSecond, 3)} server CPU ms/member/s, ${
              fmt(row.clientCpuMsPerMemberSecond, 2)
            } client CPU ms/member/s${row.stable ? "" : " (NOT stable)"}`
          )
        } finally {
          await group.dispose()
        }
      }
      await measure("modulo-group", "fibers")
      await measure("modulo-group", "processes")
      await measure("original", "processes")
    }

    // --- the largest stable group, memory per member -----------------------------------------
    if (sections.has("stability")) {
      const cover = new Cover()
      const group = ours("fibers", cover, {
        groupId: groupId("stable"),
        ...slow,
        ...(STABLE_BARRIER_POLL ? { barrierPoll: Number(STABLE_BARRIER_POLL) } : {})
      }) as unknown as HostGroup
      try {
        await group.prepare()
        await sleep(1_000)
        const m0 = await group.stats(true)
        for (const size of STABLE_SIZES) {
          const f0 = performance.now()
          let why = ""
          // Covers the forming; replaced by the stable window once formed.
          let close = await window(group)
          try {
            await form(group as unknown as Group<unknown>, cover, size, STABLE_BATCH, STABLE_FORM_SECONDS * 1000)
          } catch (e) {
            why = `${(e as Error).message}`
          }
          const formMs = performance.now() - f0
          const formed = why === ""
          const joined = group.members.length
          // The window opens once pg_stat_database has caught up (it lags by up to 10 s), but counts
          // renegotiations from the moment the group formed.
          const marks0 = cover.marks
          const epoch0 = cover.epoch
          await sleep(Math.min(12_000, STABLE_SECONDS * 1000 / 4))
          const m1 = (await within(group.stats(true))) ?? { ...m0, heap: NaN, rss: NaN }
          const c0 = await counters(db.url, pgss.available)
          if (formed) close = await window(group)
          const t0 = performance.now()
          if (formed) await sleep(STABLE_SECONDS * 1000 - (t0 - f0 - formMs))
          const c1 = await counters(db.url, pgss.available)
          const diagnosis = await close()
          const m2 = (await within(group.stats())) ?? { ...m1, statements: NaN, transactions: NaN }
          const secs = (performance.now() - t0) / 1000
          const changes = cover.marks - marks0
          if (formed && changes > 0) {
            why = `unstable: ${cover.epoch - epoch0} spurious renegotiations (epochs), ${changes} work starts/stops in ${STABLE_SECONDS} s`
          }
          if (formed && why === "" && !cover.covered(size)) why = "not all members working at the end"
          const row: StableRow = {
            members: size,
            formMs,
            // Observed since the group formed; the rates below are over the last `secs`.
            seconds: (performance.now() - f0 - formMs) / 1000,
            stable: why === "",
            why,
            // Steady-state figures only for a formed group.
            txPerMemberSecond: formed ? (c1.transactions - c0.transactions - c0.own) / size / secs : NaN,
            driverTxPerMemberSecond: formed ? (m2.transactions - m1.transactions) / size / secs : NaN,
            statementsPerMemberSecond: formed ? (m2.statements - m1.statements) / size / secs : NaN,
            serverCpuMsPerMemberSecond: formed ? (c1.serverCpuMs - c0.serverCpuMs) / size / secs : NaN,
            // Per member that joined (all of them, unless the group could not be formed).
            heapPerMemberKb: (m1.heap - m0.heap) / joined / 1024,
            rssPerMemberKb: (m1.rss - m0.rss) / joined / 1024,
            diagnosis
          }
          stability.push(row)
          log(
            `stability x${size}: ${formed ? "formed in" : "grew for"} ${fmt(formMs / 1000, 1)} s; ${row.stable ? `stable for ${fmt(row.seconds)} s` : `NOT stable: ${why}`}; ${
              fmt(row.txPerMemberSecond, 2)
            } tx/member/s; heap ${fmt(row.heapPerMemberKb)} KiB/member, RSS ${fmt(row.rssPerMemberKb)} KiB/member`
          )
          log(`stability x${size}: ${describe(diagnosis)}`)
          if (!row.stable) break
        }
      } finally {
        await group.dispose()
      }
    }

    // --- stopped work when a member is overdue ----------------------------------------------
    // Three process members (heartbeat 1 s, lease 10 s); one is killed (SIGKILL), a replacement
    // (already started and connected) joins 2 s later. Counted: the time the two survivors do not
    // work, from the kill until the survivors and the newcomer work in one epoch of size 3.
    // One round: three process members, one killed (SIGKILL), 2 s later `joiners` replacements (started
    // and connected beforehand) join at once; measured until the survivors and the newcomers work in
    // one epoch of size 2 + joiners.
    const overdueRound = async (label: string, joiners: number) => {
      const marks: Array<Parameters<Cover["add"]>[0]> = []
      const killed: Array<string> = []
      const cover = new (class extends Cover {
        override add(mark: Parameters<Cover["add"]>[0]) {
          marks.push(mark)
          super.add(mark)
        }
        override kill(member: string, stopped: boolean) {
          killed.push(member)
          super.kill(member, stopped)
        }
      })({ checkGuarantees: true })
      const group = new ProcessGroup(cover, {
        script: memberScript,
        env: memberEnv,
        options: { url: db.url, config: { groupId: groupId(label), ...slow, migrate: false }, maxConnections: 2 }
      })
      try {
        await group.prepare(3 + joiners)
        const joined = [await group.join(), await group.join(), await group.join()]
        await cover.when(3, 30_000)
        // A random phase against the heartbeats.
        await sleep(1_000 + Math.random() * 1_000)
        const victim = joined[2]!.member
        const killedAt = group.crash(victim)
        await sleep(2_000)
        const size = 2 + joiners
        const converged = cover.next(size, 60_000)
        const joinedAt = performance.now()
        if (joiners === 1) await group.join()
        else await group.grow(joiners)
        const convergedAt = await converged
        // Survivors: the members that worked before the kill, but the one killed.
        const survivors = [...new Set(marks.filter((m) => m.at < killedAt).map((m) => m.member))]
          .filter((id) => !killed.includes(id))
        let stopped = 0
        // Epoch changes from the kill to the cover: the epoch they all work in, less the one before.
        const epochBefore = Math.max(...marks.filter((m) => m.at < killedAt && m.kind === "start").map((m) => m.epoch))
        for (const id of survivors) {
          // Work intervals of this member clipped to [killedAt, convergedAt].
          let working = marks.filter((m) => m.member === id && m.at < killedAt).at(-1)?.kind === "start"
          let since = killedAt
          const mine = marks.filter((m) => m.member === id && m.at >= killedAt && m.at <= convergedAt)
          for (const m of mine) {
            if (m.kind === "end" && working) {
              working = false
              since = m.at
            } else if (m.kind === "start" && !working) {
              stopped += m.at - since
              working = true
            }
          }
          if (!working) stopped += convergedAt - since
        }
        for (const v of cover.violations.slice(0, 5)) log(`${label}: VIOLATION ${v}`)
        return {
          survivors: survivors.length,
          stoppedMemberSeconds: stopped / 1000,
          killedAt,
          joinedAt,
          convergedAt,
          epochs: cover.epoch - epochBefore,
          violations: cover.violations.length
        }
      } finally {
        await group.dispose()
      }
    }

    if (sections.has("overdue")) {
      for (let round = 1; round <= OVERDUE_ROUNDS; round++) {
        try {
          const r = await overdueRound("overdue", 1)
          const row = {
            stoppedMemberSeconds: r.stoppedMemberSeconds,
            convergeMs: r.convergedAt - r.killedAt,
            epochs: r.epochs,
            violations: r.violations
          }
          overdue.push(row)
          log(
            `overdue round ${round}: ${r.survivors} survivors stopped ${fmt(row.stoppedMemberSeconds, 2)} member-seconds; ` +
              `all three working ${fmt(row.convergeMs)} ms after the kill; ${row.epochs} epoch change(s); ` +
              `${row.violations} violations`
          )
        } catch (e) {
          log(`overdue round ${round}: ${String(e)}`)
        }
      }
    }

    // --- a burst of joins while a member is overdue ------------------------------------------
    // As the overdue section, with K replacements joining at once: each finds the overdue member and
    // waits in a waiting row; the reap promotes them all. Counted: epoch changes (ideally one), the
    // time from the joins to all 2 + K working, the survivors' stopped work.
    if (sections.has("burst")) {
      for (const joiners of BURST_SIZES) {
        for (let round = 1; round <= BURST_ROUNDS; round++) {
          try {
            const r = await overdueRound(`burst-${joiners}`, joiners)
            const row = {
              joiners,
              stoppedMemberSeconds: r.stoppedMemberSeconds,
              convergeMs: r.convergedAt - r.joinedAt,
              epochs: r.epochs,
              violations: r.violations
            }
            burst.push(row)
            log(
              `burst of ${joiners}, round ${round}: all ${2 + joiners} working ${fmt(row.convergeMs)} ms after the joins ` +
                `(${fmt(r.convergedAt - r.killedAt)} ms after the kill); ${row.epochs} epoch change(s); survivors stopped ` +
                `${fmt(row.stoppedMemberSeconds, 2)} member-seconds; ${row.violations} violations`
            )
          } catch (e) {
            log(`burst of ${joiners}, round ${round}: ${String(e)}`)
          }
        }
      }
    }

    // --- work paused per change: modulo mode beside slots mode -----------------------------
    // Process members (heartbeat 1 s, lease 10 s, as the overdue section); per mode and size, a
    // group of N, then rounds of: a join (N -> N+1), a graceful leave of a random member (-> N), a
    // join, a SIGKILL of a random member (-> N once its lease ran out). Definitions in
    // support/Paused.ts and in the printed section.
    if (sections.has("paused")) {
      for (const members of PAUSED_SIZES) {
        for (const slots of [...(PAUSED_MODES.has("modulo") ? [undefined] : []), ...(PAUSED_MODES.has("slots") ? [PAUSED_SLOTS] : [])]) {
          const mode = slots === undefined ? "modulo" : `slots S=${slots}`
          const group = new PausedGroup({
            script: memberScript,
            env: memberEnv,
            url: db.url,
            config: { groupId: groupId(`paused-${slots ?? "m"}-${members}`), ...slow },
            slots
          })
          const rows = new Map<ChangeResult["change"], PausedRow>(
            (["join", "leave", "crash"] as const).map((change) => [change, { mode, members, change, results: [], failures: 0 }])
          )
          const t0 = performance.now()
          try {
            for (let batch = 0; batch < members; batch += 4) {
              await group.grow(Math.min(4, members - batch))
              await group.whenSettled(60_000)
            }
            log(`paused: ${mode}, ${members} processes formed in ${fmt((performance.now() - t0) / 1000, 1)} s`)
            for (let round = 1; round <= PAUSED_ROUNDS; round++) {
              for (const change of ["join", "leave", "join", "crash"] as const) {
                const row = rows.get(change)!
                try {
                  await sleep(500 + Math.random() * 1_000)
                  const r = await group.change(change, 40_000)
                  if (env("BENCH_PAUSED_DUMP")) fs.writeFileSync(`${env("BENCH_PAUSED_DUMP")}-${mode.replace(/\W/g, "")}-${members}-${round}-${change}.json`, JSON.stringify({ r, at: group.lastWindow, events: group.events }))
                  ;(row.results as Array<ChangeResult>).push(r)
                  log(
                    `paused: ${mode}, ${members}, round ${round} ${change}: settled ${fmt(r.settleMs)} ms, paused ${fmt(r.pausedMemberSeconds, 3)} member-s` +
                      (slots !== undefined ? ` (slot-s/S ${fmt(r.slotSecondsPerS, 4)}, ${r.slotsMoved} slots moved)` : "") +
                      ` (survivors ${fmt(r.survivorsMemberSeconds, 3)}, departed ${fmt(r.departedMemberSeconds, 3)}), ${r.membersPaused} of ${r.survivors} survivors paused`
                  )
                } catch (e) {
                  ;(row as { failures: number }).failures++
                  log(`paused: ${mode}, ${members}, round ${round} ${change}: ${String(e)}`)
                  // Let the group settle before the next change.
                  await group.whenSettled(60_000).catch(() => undefined)
                }
              }
            }
          } catch (e) {
            log(`paused: ${mode}, ${members}: ${String(e)}`)
          } finally {
            await group.dispose()
          }
          paused.push(...rows.values())
        }
      }
    }

    // --- the CLI's start-up ------------------------------------------------------------------
    if (sections.has("cli")) {
      if (!fs.existsSync(path.join(root, "cli", "dist", "modulo-group.cjs"))) {
        notes.push("The cli section was skipped: cli/dist/modulo-group.cjs is missing (run `npm run build` first).")
      } else {
        const group = groupId("cli")
        startup.push(
          ...(await measureStartup(root, db.url, [
            { label: `modulo-group join <group> --json (first event)`, args: ["join", group, "--json"] },
            { label: "modulo-group --help (first line)", args: ["--help"] },
            { label: "modulo-group status <group> (first line)", args: ["status", group] }
          ], CLI_RUNS, CLI_AGAINST))
        )
        for (const r of startup) {
          log(`cli: ${r.command}: median ${fmt(r.medianMs)} ms (min ${fmt(r.minMs)}, max ${fmt(r.maxMs)}), CPU ${fmt(r.cpuMs)} ms`)
        }
      }
    }
  } finally {
    const conns = await connections(db.url).catch(() => undefined)
    if (conns !== undefined && conns.here > 1) log(`${conns.here} connections still open at the end`)
    await db.close()
  }

  clearInterval(loadTimer)
  loads.push(os.loadavg()[0]!)
  const report = render({ startedAt, loads, db })
  console.log(report.table)
  if (OUT !== "-") {
    fs.writeFileSync(path.resolve(root, OUT), report.markdown)
    log(`wrote ${OUT}`)
  }
})

// --- the report -------------------------------------------------------------------------------
interface RunInfo {
  readonly startedAt: Date
  /** 1-minute load averages sampled every 15 s. */
  readonly loads: ReadonlyArray<number>
  readonly db: { readonly server: string; readonly version: string }
}

const machine = () => {
  const cpus = os.cpus()
  let osName = `${os.type()} ${os.release()}`
  try {
    const rel = fs.readFileSync("/etc/os-release", "utf8").match(/^PRETTY_NAME="?([^"\n]+)"?/m)
    if (rel) osName = `${rel[1]}, Linux ${os.release()}`
  } catch {
    // not Linux
  }
  return `${cpus.length} × ${cpus[0]?.model.trim() ?? "unknown CPU"}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM, ${osName}, Node ${process.version}`
}

const gitRev = () => {
  try {
    const rev = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: root, encoding: "utf8" }).trim()
    const dirty = execFileSync("git", ["status", "--porcelain", "src"], { cwd: root, encoding: "utf8" }).trim() !== ""
    return `${rev}${dirty ? " (with uncommitted changes in src/)" : ""}`
  } catch {
    return "unknown"
  }
}

const mdTable = (head: Array<string>, rows: Array<Array<string>>) =>
  [`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`, ...rows.map((r) => `| ${r.join(" | ")} |`)].join("\n")

const textTable = (head: Array<string>, rows: Array<Array<string>>) => {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (r: Array<string>) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ")
  return [line(head), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n")
}

const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(1)}×` : "–")

const render = (info: RunInfo) => {
  const overrides = Object.keys(process.env).filter((k) => k.startsWith("BENCH_")).sort().map((k) => `${k}=${process.env[k]} `)
  const url = process.env["DATABASE_URL"] ? new URL(process.env["DATABASE_URL"]) : undefined
  if (url?.password) url.password = "***"
  const command = `${url ? `DATABASE_URL=${url.toString()} ` : ""}${overrides.join("")}npm run bench`
  const minutes = ((Date.now() - info.startedAt.getTime()) / 60_000).toFixed(1)
  const conv = convergence.map((r) => [
    r.design,
    `${r.members} ${r.kind}`,
    r.notifications === undefined ? "n/a" : r.notifications ? "on" : "off",
    stat(r.result.joins),
    stat(r.result.leaves),
    stat(r.result.crashes),
    `${r.result.joins.length}/${r.result.leaves.length}/${r.result.crashes.length}`,
    r.result.formError === undefined ? fmt(r.result.formMs) : `not formed: ${r.result.formError}`,
    `${r.result.failures}${r.result.truncated && r.result.formError === undefined ? " (time budget hit)" : ""}`,
    String(r.result.violations.length)
  ])
  const convHead = ["design", "members", "notify", "join ms (median / p95)", "leave ms", "crash ms", "samples j/l/c", "form ms", "misses", "G1/G2 violations"]

  // Ratios: the original over modulo-group, same number of members (fibers or processes).
  const ratioRows: Array<Array<string>> = []
  for (const o of convergence.filter((r) => r.design === "original")) {
    for (const m of convergence.filter((r) => r.design === "modulo-group" && r.members === o.members)) {
      ratioRows.push([
        `original ${o.members} ${o.kind} ÷ modulo-group ${m.members} ${m.kind}, notifications ${m.notifications ? "on" : "off"}`,
        ratio(median(o.result.joins), median(m.result.joins)),
        ratio(median(o.result.leaves), median(m.result.leaves)),
        ratio(median(o.result.crashes), median(m.result.crashes))
      ])
    }
  }
  const ratioHead = ["configuration", "join (original ÷ ours, medians)", "leave", "crash"]

  const steadyHead = ["design", "members", "tx / member / s (pg_stat_database)", "tx / member / s (driver)", "statements / member / s", "server CPU ms / member / s", "client CPU ms / member / s", "stable"]
  const steadyRows = steady.map((r) => [
    r.design,
    `${r.members} ${r.kind}`,
    fmt(r.txPerMemberSecond, 3),
    fmt(r.driverTxPerMemberSecond, 3),
    fmt(r.statementsPerMemberSecond, 2) + (Number.isFinite(r.serverStatementsPerMemberSecond) ? ` (server ${fmt(r.serverStatementsPerMemberSecond, 2)})` : ""),
    fmt(r.serverCpuMsPerMemberSecond, 3),
    fmt(r.clientCpuMsPerMemberSecond, 2),
    r.stable ? "yes" : "no"
  ])
  const steadyRatio: Array<Array<string>> = []
  const original = steady.find((r) => r.design === "original")
  for (const m of steady.filter((r) => r.design === "modulo-group")) {
    const o = original
    if (o) {
      steadyRatio.push([
        `original ${o.members} ${o.kind} ÷ modulo-group ${m.members} ${m.kind}`,
        ratio(o.driverTxPerMemberSecond, m.driverTxPerMemberSecond),
        ratio(o.statementsPerMemberSecond, m.statementsPerMemberSecond),
        ratio(o.serverCpuMsPerMemberSecond, m.serverCpuMsPerMemberSecond)
      ])
    }
  }
  const stableHead = ["members (fibers, 1 process)", "formed in s", `stable ${STABLE_SECONDS} s`, "tx / member / s (pg_stat_database)", "tx / member / s (driver)", "statements / member / s", "server CPU ms / member / s", "heap KiB / member", "RSS KiB / member"]
  const stableRows = stability.map((r) => [
    String(r.members),
    fmt(r.formMs / 1000, 1),
    r.stable ? `yes (${fmt(r.seconds)} s)` : `no: ${r.why}`,
    fmt(r.txPerMemberSecond, 3),
    fmt(r.driverTxPerMemberSecond, 3),
    fmt(r.statementsPerMemberSecond, 2),
    fmt(r.serverCpuMsPerMemberSecond, 3),
    fmt(r.heapPerMemberKb),
    fmt(r.rssPerMemberKb)
  ])

  const diagHead = ["configuration", "join: stop / barrier / start ms", "leave: stop / barrier / start ms", "window s", "machine busy %", "PostgreSQL % of a core", "member host % of a core", "host event-loop p99 ms", "heartbeats / s", "heartbeat call ms", "join call ms", "leave call ms", "reap call ms"]
  const diagRow = (label: string, d: Diagnosis, result?: TrialResult) => [
    label,
    result ? phases(result.joinPhases) : "–",
    result ? phases(result.leavePhases) : "–",
    fmt(d.seconds),
    fmt(d.machineBusyPct),
    fmt(d.serverCpuPct),
    fmt(d.hostCpuPct),
    fmt(d.loopP99Ms),
    fmt(d.heartbeatsPerSecond),
    fmt(d.heartbeatMs, 1),
    fmt(d.joinMs, 1),
    fmt(d.leaveMs, 1),
    fmt(d.reapMs, 1)
  ]
  const diagRows = [
    ...convergence.flatMap((r) =>
      r.design === "modulo-group" && r.diagnosis !== undefined
        ? [diagRow(`${r.members} ${r.kind}, notifications ${r.notifications ? "on" : "off"}${r.result.formError !== undefined ? " (forming)" : ""}`, r.diagnosis, r.result)]
        : []
    ),
    ...stability.flatMap((r) => (r.diagnosis !== undefined ? [diagRow(`stability, ${r.members} fibers, heartbeat 1 s`, r.diagnosis)] : []))
  ]

  // Targets.
  const find = (kind: string, members: number, notifications: boolean) =>
    convergence.find((r) => r.design === "modulo-group" && r.kind === kind && r.members === members && r.notifications === notifications)
  const targets: Array<Array<string>> = []
  const target = (what: string, limit: number, value: number, unit = "ms", digits = 0, measured = `${fmt(value, digits)} ${unit}`) =>
    targets.push([
      what,
      `≤ ${fmt(limit, digits)} ${unit}`,
      measured,
      !Number.isFinite(value)
        ? "not measured"
        : value <= limit
        ? "met"
        : `missed by ${fmt(value - limit, digits)} ${unit} (${(value / limit).toFixed(2)}× the limit)`
    ])
  // A convergence target; a group that could not be formed misses it.
  const convTarget = (r: ConvergenceRow, what: string, limit: number, xs: ReadonlyArray<number>, p95 = false) => {
    const label = `${what}, ${r.members} ${r.kind}, notifications ${r.notifications ? "on" : "off"}`
    if (r.result.formError !== undefined) {
      targets.push([label, `≤ ${limit} ms`, r.result.formError, "missed: no group to measure"])
    } else {
      target(label, limit, p95 ? percentile(xs, 95) : median(xs), "ms", 0, `median ${fmt(median(xs))} ms, p95 ${fmt(percentile(xs, 95))} ms`)
    }
  }
  for (const [kind, n, limit] of [["processes", 16, 50], ["fibers", 1000, 250]] as const) {
    const r = find(kind, n, true)
    if (r) {
      convTarget(r, "join (median)", limit, r.result.joins)
      convTarget(r, "leave (median)", limit, r.result.leaves)
    }
  }
  for (const r of convergence.filter((r) => r.design === "modulo-group" && r.notifications === false)) {
    convTarget(r, "join (median ≤ one heartbeat)", 200, r.result.joins)
    convTarget(r, "leave (median ≤ one heartbeat)", 200, r.result.leaves)
  }
  for (const r of convergence.filter((r) => r.design === "modulo-group")) {
    convTarget(r, "crash (p95 ≤ lease + heartbeat)", 2200, r.result.crashes, true)
  }
  for (const r of steady.filter((r) => r.design === "modulo-group")) {
    target(
      `steady state, ${r.members} ${r.kind}, heartbeat 1 s (≤ 1 transaction per member per heartbeat; counted at the driver)`,
      1,
      r.driverTxPerMemberSecond,
      "tx/member/s",
      3,
      `${fmt(r.driverTxPerMemberSecond, 3)} tx/member/s (pg_stat_database: ${fmt(r.txPerMemberSecond, 3)})`
    )
    if (original !== undefined) {
      // The issue's 40× is against the original's 41 transactions per member per second; the rebuild
      // here, from the issue's description, issues fewer: both comparisons are shown.
      const here = original.driverTxPerMemberSecond / r.driverTxPerMemberSecond
      const issue = 41 / r.driverTxPerMemberSecond
      const verdict = (x: number) => (!Number.isFinite(x) ? "not measured" : x >= 40 ? "met" : `missed (${fmt(x, 1)}× of 40×)`)
      targets.push([
        `steady state, ${r.members} ${r.kind}: at least 40× fewer transactions than the original`,
        "≥ 40×",
        `${fmt(issue, 1)}× against the original's 41 tx/member/s (issue); ${fmt(here, 1)}× against the rebuild measured here (${
          fmt(original.driverTxPerMemberSecond, 1)
        } tx/member/s)`,
        `against the issue's figure: ${verdict(issue)}; against the rebuild: ${verdict(here)}`
      ])
    }
  }
  const largest = stability.filter((r) => r.stable).map((r) => r.members).reduce((a, b) => Math.max(a, b), 0)
  const at1000 = stability.find((r) => r.members >= 1000)
  targets.push([
    "1,000 members stable in one process (60 s, heartbeat 1 s, lease 10 s), memory per member reported",
    "stable",
    `largest stable: ${largest || "none"} (largest tried: ${Math.max(0, ...stability.map((r) => r.members))})${
      at1000 ? `; ${fmt(at1000.heapPerMemberKb)} KiB heap, ${fmt(at1000.rssPerMemberKb)} KiB RSS per member` : ""
    }`,
    largest >= 1000 ? "met" : stability.length === 0 ? "not measured" : "missed"
  ])
  const joinStart = startup.find((r) => r.command.startsWith("modulo-group join"))
  if (joinStart !== undefined) {
    target("CLI start-up: `modulo-group join <group> --json` to its first event (median)", 250, joinStart.medianMs)
  }
  const targetHead = ["target", "limit", "measured", "verdict"]
  const overdueHead = ["round", "stopped work (member-s)", "all three working after the kill (ms)", "epoch changes", "violations"]
  const overdueRows = overdue.map((r, i) => [
    String(i + 1),
    fmt(r.stoppedMemberSeconds, 2),
    fmt(r.convergeMs),
    String(r.epochs),
    String(r.violations)
  ])
  const pausedHead = ["mode", "members", "change", "samples", "paused member-s, median (min–max)", "survivors' part", "departed's share", "slot-s / S, median", "survivors paused, median (of)", "slots moved, median", "settled ms, median", "failed"]
  const range = (xs: ReadonlyArray<number>, d: number) =>
    xs.length === 0 ? "–" : `${fmt(median(xs), d)} (${fmt(Math.min(...xs), d)}–${fmt(Math.max(...xs), d)})`
  const burstHead = ["joiners", "rounds", "epoch changes, median (min–max)", "all working after the joins, ms, median (min–max)", "survivors stopped (member-s), median", "violations"]
  const burstRows = BURST_SIZES.flatMap((k) => {
    const rs = burst.filter((r) => r.joiners === k)
    if (rs.length === 0) return []
    return [[
      String(k),
      String(rs.length),
      range(rs.map((r) => r.epochs), 0),
      range(rs.map((r) => r.convergeMs), 0),
      fmt(median(rs.map((r) => r.stoppedMemberSeconds)), 2),
      String(rs.reduce((a, r) => a + r.violations, 0))
    ]]
  })
  const pausedRows = paused.map((r) => [
    r.mode,
    String(r.members),
    r.change,
    String(r.results.length),
    range(r.results.map((x) => x.pausedMemberSeconds), 3),
    fmt(median(r.results.map((x) => x.survivorsMemberSeconds)), 3),
    fmt(median(r.results.map((x) => x.departedMemberSeconds)), 3),
    r.mode === "modulo" ? "–" : fmt(median(r.results.map((x) => x.slotSecondsPerS)), 4),
    r.results.length === 0 ? "–" : `${fmt(median(r.results.map((x) => x.membersPaused)))} (${fmt(median(r.results.map((x) => x.survivors)))})`,
    r.mode === "modulo" ? "–" : fmt(median(r.results.map((x) => x.slotsMoved))),
    fmt(median(r.results.map((x) => x.settleMs))),
    String(r.failures)
  ])
  const pausedText = [
    `Work paused per change (process members, heartbeat 1 s, lease 10 s; ${PAUSED_ROUNDS} rounds of join, leave, join, crash`,
    "(SIGKILL; the lease runs out); a join takes N to N+1, a leave or crash N+1 to N). Window: from the command until",
    "the group is settled again (modulo: every live member works in one epoch of the live size; slots: every slot",
    "worked by exactly one live member, each live member working floor(S/N) or ceil(S/N) slots). Survivors: members",
    "live before and after the change (not the newcomer, the leaver or the killed one).",
    "- modulo, paused member-s: for each survivor, the time in the window during which it ran no work, summed (the",
    "  survivors' part), plus the departed member's share: from the leaver's stop (or the kill) until the settle,",
    "  counted as one member's.",
    "- slots, slot-s / S: for each slot, the time in the window during which no live member ran it (from its stop by",
    "  the old holder, or from the kill, until its start by the new holder; zero for a slot that did not move), summed,",
    "  divided by S (seconds of the whole group's work); paused member-s = slot-s × N / S (a member's share is S/N",
    "  slots; N the live members after the change); split by whose the slot was when it stopped (a survivor's, or",
    "  the departed member's). Columns: medians of each (the parts' medians need not add up to the total's).",
    "- survivors paused: survivors that stopped any work in the window (modulo: their assignment; slots: a slot)."
  ]
  const startupHead = ["command", "runs", "median ms", "min ms", "max ms", "CPU ms (median)"]
  const startupRows = startup.map((r) => [r.command, String(r.runs), fmt(r.medianMs), fmt(r.minMs), fmt(r.maxMs), fmt(r.cpuMs)])

  const env = [
    `- Date: ${info.startedAt.toISOString()} (${minutes} min)`,
    `- Command: \`${command}\` (${QUICK ? "quick" : "full"} mode)`,
    `- Machine: ${machine()}`,
    `- Load average during the run (1-minute, sampled every 15 s): mean ${fmt(mean(info.loads), 2)}, max ${fmt(Math.max(...info.loads), 2)}, at start ${fmt(info.loads[0]!, 2)} (${os.cpus().length} cores)`,
    `- PostgreSQL ${info.db.version} (${info.db.server}), on this machine`,
    `- modulo-group at ${gitRev()}`,
    ...notes.map((n) => `- ${n}`),
    ...(processRss !== undefined ? [`- A one-member process (bench/member.mjs) uses ${fmt(processRss / 2 ** 20)} MiB RSS.`] : [])
  ]
  const markdown = [
    "# Benchmarks",
    "",
    "<!-- Generated by `npm run bench` (bench/membership.bench.test.ts); a rerun replaces this file. -->",
    "",
    "Convergence after a join, a graceful leave and a crash; steady-state database cost; the largest group that",
    "stays stable; memory per member. Each beside a baseline of the original design (bench/original/Original.ts),",
    "measured in the same run on the same database.",
    "",
    "## Run",
    "",
    ...env,
    "",
    "## Convergence (lease 2 s, heartbeat 200 ms)",
    "",
    "From the start of a join, a leave request or a kill until every live member works in one epoch on",
    "indices exactly 0..N-1 (the original: on modulos 0..N-1 with count N). A group of N members; each round",
    "one member joins (N → N+1), a random member leaves (→ N), one joins, a random member crashes (→ N).",
    "Fibers: all members in one process (bench/member.mjs hosting them) over one pool of 20 connections and",
    "one LISTEN connection; a crashed fiber member's database calls stop returning (its row stays until its",
    "lease expires). Processes: one bench/member.mjs per member, pool of 2 plus the LISTEN connection; a",
    `crash is SIGKILL. The group is formed ${FORM_BATCH} members at a time, converged in`,
    `between, within ${FORM_SECONDS} s, or it gets no trials; no round starts after ${BUDGET_SECONDS} s of trials. ${ROUNDS} rounds`,
    `(the original: ${ORIGINAL_CRASH_ROUNDS} of them with a crash, since each waits out its 10 s liveness window). The original:`,
    "its 0.2 s work interval, one connection per member, as processes. Times in ms, median / p95; \"misses\":",
    "changes that did not converge within 30 s (60 s for the original); violations: G1/G2 checks on every work",
    "start (modulo-group only), on the marks' own times: an overlap of two epochs in the order the bench read",
    "the processes' output is a violation only if the older work ended after the newer epoch's start.",
    "",
    mdTable(convHead, conv),
    "",
    "### Ratios (original ÷ modulo-group, medians)",
    "",
    mdTable(ratioHead, ratioRows),
    "",
    "### Where the time goes",
    "",
    "Each convergence split in three (medians): from the change until the last live member stopped its work",
    "(all have learnt of the change), then until the first member started in the new epoch (the barrier: every",
    "acknowledgement in, and seen), then until the last one started. Then, over each configuration's trials (or",
    "over the forming of a group that did not form): the machine's CPU, the CPU of the PostgreSQL server, and,",
    "for fiber members, the CPU and event-loop delay of the process hosting them and the store calls as the",
    "members timed them (pool wait included).",
    "",
    mdTable(diagHead, diagRows),
    "",
    `## Steady state (heartbeat 1 s, lease 10 s; ${STEADY_SIZE} members, ${STEADY_SECONDS} s)`,
    "",
    "The group formed, then a window with no change. Transactions from pg_stat_database (commits + rollbacks in",
    "the bench's own database, the probes' own subtracted; backends flush these counters up to a second late, so",
    "the figure is off by up to a second's worth at each end of the window) and counted at the driver (exact: a",
    "statement outside BEGIN ... COMMIT is one transaction; the listener's health check included). Statements",
    "counted at the driver, server CPU from /proc for the whole PostgreSQL server. The original at its 0.2 s work",
    "interval, as processes.",
    "",
    mdTable(steadyHead, steadyRows),
    "",
    ...(steadyRatio.length > 0
      ? ["Original ÷ modulo-group:", "", mdTable(["configuration", "transactions (driver)", "statements", "server CPU"], steadyRatio), ""]
      : []),
    `## The largest stable group, memory per member (heartbeat 1 s, lease 10 s, ${STABLE_SECONDS} s windows)`,
    "",
    `Fiber members in one process, notifications on${STABLE_BARRIER_POLL ? `, barrierPoll ${STABLE_BARRIER_POLL} ms` : ""}. The group grows by ${STABLE_BATCH} joins at a`,
    `time, converged in between (at most ${STABLE_FORM_SECONDS} s); it is stable when no member starts or stops work (no`,
    `renegotiation, no self-fencing) for ${STABLE_SECONDS} s after it formed. Rates over the last part of that window`,
    "(after pg_stat_database caught up). Memory: heap and RSS of the members' process once formed, minus before",
    "the first member, per member (after a GC).",
    "",
    mdTable(stableHead, stableRows),
    "",
    ...(overdue.length > 0
      ? [
        "## Stopped work when a member is overdue (heartbeat 1 s, lease 10 s)",
        "",
        "Three process members; one is killed (SIGKILL) and a replacement (started and connected beforehand) joins",
        "2 s later. Stopped work: the time the two survivors do not work, summed, from the kill until the survivors",
        "and the newcomer work in one epoch of size 3; epoch changes: from the kill until then.",
        "",
        mdTable(overdueHead, overdueRows),
        ""
      ]
      : []),
    ...(burst.length > 0
      ? [
        "## A burst of joins while a member is overdue (heartbeat 1 s, lease 10 s)",
        "",
        "Three process members; one is killed (SIGKILL) and 2 s later K replacements (started and connected",
        "beforehand) join at once. Each finds the overdue member and waits in a waiting row until the reap",
        "promotes them. Epoch changes: from the kill until the survivors and the K newcomers work in one epoch;",
        "the time is from the joins until then.",
        "",
        mdTable(burstHead, burstRows),
        ""
      ]
      : []),
    ...(paused.length > 0
      ? ["## Work paused per change (modulo mode and slots mode)", "", ...pausedText, "", mdTable(pausedHead, pausedRows), ""]
      : []),
    "## CLI start-up",
    "",
    "From spawning `node cli/bin/modulo-group.js <args>` until its first line on stdout (`join --json`: its first",
    "event, `joining`, printed once the database is reachable and the schema checked), one start after another",
    `against the bench's database; ${CLI_RUNS} starts of each after one unmeasured start that fills the code cache`,
    ...(CLI_AGAINST === undefined ? [] : [`(interleaved with the starts of the build at ${CLI_AGAINST}, BENCH_CLI_AGAINST)`]),
    "(bench/support/CliStartup.ts). The load average above applies: on a busy machine these include waiting for a core.",
    "",
    mdTable(startupHead, startupRows),
    "",
    "## Targets",
    "",
    "The issue's targets on this machine. Notifications off: at most one heartbeat (200 ms).",
    "",
    mdTable(targetHead, targets),
    ""
  ].join("\n")
  const table = [
    "",
    `== modulo-group benchmarks (${QUICK ? "quick" : "full"}) — PostgreSQL ${info.db.version}, ${info.db.server} ==`,
    ...env,
    "",
    "Convergence, lease 2 s, heartbeat 200 ms (ms, median / p95):",
    textTable(convHead, conv),
    "",
    "Ratios (original ÷ modulo-group):",
    textTable(ratioHead, ratioRows),
    "",
    "Where the time goes:",
    textTable(diagHead, diagRows),
    "",
    "Steady state, heartbeat 1 s:",
    textTable(steadyHead, steadyRows),
    "",
    "Largest stable group, memory per member:",
    textTable(stableHead, stableRows),
    "",
    ...(overdue.length > 0 ? ["Stopped work when a member is overdue (kill one of 3, replacement 2 s later, lease 10 s):", textTable(overdueHead, overdueRows), ""] : []),
    ...(burst.length > 0 ? ["A burst of K joins while a member is overdue (kill one of 3, K replacements 2 s later, lease 10 s):", textTable(burstHead, burstRows), ""] : []),
    ...(paused.length > 0 ? [...pausedText, textTable(pausedHead, pausedRows), ""] : []),
    "CLI start-up (spawn to first stdout line):",
    textTable(startupHead, startupRows),
    "",
    "Targets:",
    textTable(targetHead, targets),
    ""
  ].join("\n")
  return { markdown, table }
}
