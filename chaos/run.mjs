#!/usr/bin/env node
/**
 * `npm run chaos -- --members 8 --duration 120s --seed 42`: a chaos run against real processes.
 *
 * Options (defaults in brackets):
 *   --members N            member processes [8]
 *   --duration D           how long faults are injected after the group formed [120s]
 *   --every-kind           with the rounds schedule, go on past --duration until every kind was
 *                          injected at least once (at most 3 × --duration)
 *   --seed S               seed of the fault schedule [current time]
 *   --heartbeat D          [500ms]     --lease D [3s]     --fence-margin D [500ms]
 *   --statement-timeout D  [1s]        --work-interval D [100ms]
 *   --kinds a,b,...        fault kinds [kill,leave,sigstop,term-backend,term-listener,restart]; also,
 *                          by name only: delete-row (an operator's DELETE of a working member's row,
 *                          and at once another member leaves and joins again)
 *   --schedule S           rounds: one fault at a time, each waits for the group to reconverge;
 *                          churn: bursts in which the member holding index 0 leaves (SIGTERM) and a new
 *                          one joins every 200-600 ms, mixed with the other kinds [rounds]
 *   --notifications on|off off: every member runs with LISTEN/NOTIFY disabled (and the run fails if
 *                          any member holds a LISTEN connection); term-listener is then skipped [on]
 *   --database-url URL     use this database instead of an embedded one (DATABASE_URL is ignored
 *                          unless given here); restarts are then skipped unless
 *   --restart-command CMD  a shell command that restarts that database (e.g. "systemctl restart postgresql")
 *   --report FILE          also write the report as JSON, and the tenure timeline beside it as an
 *                          SVG (FILE without .json, + .svg)
 *   --events FILE          also write every member line and runner action, in time order (JSON Lines)
 *   --quiet                no line per fault
 *   --instance-ids         static membership: every member runs with --instance-id m<slot>; adds the
 *                          faults static-restart and static-kill (a restart with the same instance id)
 *   --rejoin-grace D       with --instance-ids [2s]
 *   --slots S              slots mode: every member runs with --slots S; the monitor then checks per
 *                          slot (no slot in two members' sets at once, every slot owned again by a
 *                          live member within the fault's bound, set sizes within one once converged,
 *                          no work line naming a slot another member holds). Not with --instance-ids
 *                          (static membership is refused in slots mode); no static-* faults.
 * Members start from a copy of the built package taken at the start (a build elsewhere in the tree
 * during the run cannot mix two versions of the library).
 * Exit code 0 when the run passed (no G1/G2/G5 violation, every fault reconverged within its bound,
 * with notifications off no LISTEN connection; with --slots no per-slot violation),
 * 1 when it did not, 2 on bad options.
 */
import { execSync } from "node:child_process"
import * as fs from "node:fs"
import { ALL_KINDS, formatReport, HAND_KINDS, killAll, passed, runChaos, STATIC_KINDS } from "./runner.mjs"
import { startServer } from "./server.mjs"

const usage = (why) => {
  process.stderr.write(`chaos: ${why}\n(see the header of chaos/run.mjs for the options)\n`)
  process.exit(2)
}

const duration = (text, name) => {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(String(text))
  if (!m) usage(`${name}: "${text}" is not a duration (use e.g. 200ms, 2s, 10m)`)
  const n = Number(m[1])
  return Math.round(m[2] === "ms" ? n : m[2] === "s" ? n * 1000 : n * 60_000)
}

const args = process.argv.slice(2)
const flag = (name) => {
  const i = args.indexOf(`--${name}`)
  if (i === -1) return undefined
  const v = args[i + 1]
  if (v === undefined || v.startsWith("--")) usage(`--${name} needs a value`)
  return v
}
const known = new Set(["members", "duration", "seed", "heartbeat", "lease", "fence-margin", "statement-timeout", "work-interval", "kinds", "schedule", "notifications", "database-url", "restart-command", "report", "events", "quiet", "instance-ids", "rejoin-grace", "slots", "every-kind"])
for (const a of args) if (a.startsWith("--") && !known.has(a.slice(2))) usage(`unknown option ${a}`)

const options = {
  members: Number(flag("members") ?? 8),
  durationMs: duration(flag("duration") ?? "120s", "--duration"),
  seed: Number(flag("seed") ?? (Date.now() % 1_000_000)),
  heartbeatMs: duration(flag("heartbeat") ?? "500ms", "--heartbeat"),
  leaseMs: duration(flag("lease") ?? "3s", "--lease"),
  fenceMarginMs: duration(flag("fence-margin") ?? "500ms", "--fence-margin"),
  statementTimeoutMs: duration(flag("statement-timeout") ?? "1s", "--statement-timeout"),
  workIntervalMs: duration(flag("work-interval") ?? "100ms", "--work-interval"),
  instanceIds: args.includes("--instance-ids"),
  everyKind: args.includes("--every-kind"),
  rejoinGraceMs: duration(flag("rejoin-grace") ?? "2s", "--rejoin-grace"),
  kinds: (flag("kinds") ?? (args.includes("--instance-ids") ? [...ALL_KINDS, ...STATIC_KINDS] : ALL_KINDS).join(",")).split(",").filter((k) => k !== ""),
  schedule: flag("schedule") ?? "rounds",
  slots: flag("slots") === undefined ? undefined : Number(flag("slots")),
  notifications: flag("notifications") ?? "on",
  command: `npm run chaos -- ${args.join(" ")}`,
  eventsFile: flag("events"),
  // The tenure timeline as an SVG beside the report (FILE.json -> FILE.svg).
  svgFile: flag("report") === undefined ? undefined : `${flag("report").replace(/\.json$/, "")}.svg`
}
if (!Number.isInteger(options.members) || options.members < 2) usage("--members must be an integer >= 2")
if (!Number.isFinite(options.seed)) usage("--seed must be a number")
if (options.slots !== undefined) {
  if (!/^\d+$/.test(flag("slots")) || options.slots < 1 || options.slots > 16_384) usage(`--slots: "${flag("slots")}" (use a whole number from 1 to 16384)`)
  if (options.instanceIds) usage("--slots and --instance-ids: static membership is not available in slots mode (the library refuses instanceId with slots); use one or the other")
}
if (!["rounds", "churn"].includes(options.schedule)) usage(`--schedule: "${options.schedule}" (use rounds or churn)`)
if (!["on", "off"].includes(options.notifications)) usage(`--notifications: "${options.notifications}" (use on or off)`)
for (const k of options.kinds) {
  if (!ALL_KINDS.includes(k) && !STATIC_KINDS.includes(k) && !HAND_KINDS.includes(k)) {
    usage(`unknown fault kind ${k} (known: ${[...ALL_KINDS, ...STATIC_KINDS, ...HAND_KINDS].join(", ")})`)
  }
  if (HAND_KINDS.includes(k) && options.schedule !== "rounds") usage(`${k} runs with the rounds schedule only`)
  if (STATIC_KINDS.includes(k) && !options.instanceIds) usage(`${k} needs --instance-ids`)
}

const quiet = args.includes("--quiet")
const log = (line) => {
  if (!quiet) process.stdout.write(`${line}\n`)
}

const main = async () => {
  const external = flag("database-url")
  let server
  if (external !== undefined) {
    const command = flag("restart-command")
    server = {
      url: external,
      restart: command === undefined ? undefined : async () => {
        const t0 = Date.now()
        execSync(command, { stdio: "inherit" })
        return { stopMs: 0, startMs: Date.now() - t0 }
      },
      stop: async () => undefined
    }
    if (command === undefined) options.kinds = options.kinds.filter((k) => k !== "restart")
  } else {
    log("chaos: starting an embedded PostgreSQL of its own ...")
    server = await startServer()
  }
  let exitCode = 1
  try {
    const report = await runChaos({ ...options, server, log })
    process.stdout.write(`\n${formatReport(report)}\n`)
    const file = flag("report")
    if (file !== undefined) fs.writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`)
    exitCode = passed(report) ? 0 : 1
    process.stdout.write(exitCode === 0 ? "\nPASSED\n" : "\nFAILED\n")
  } finally {
    await server.stop()
  }
  process.exitCode = exitCode
}

// Interrupted: no member process may outlive the runner (the server is stopped by the exit hooks).
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => {
    killAll()
    process.exit(130)
  })
}

main().catch((error) => {
  process.stderr.write(`chaos: ${error?.stack ?? error}\n`)
  process.exitCode = 1
})
