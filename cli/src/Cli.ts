/**
 * The commands of `modulo-group`, built with `@effect/cli`.
 *
 * @since 0.1.0
 * @internal
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"
import { ExitCodes, fail, report, withLogging } from "./CliError.js"
import type * as Join from "./commands/join.js"
import type * as DemoMember from "./demo/member.js"
import * as Durations from "./Durations.js"
import * as Help from "./Help.js"

// A command's code is imported when it runs: a command then loads (and, bundled, evaluates) only
// what it needs, e.g. `join` neither the embedded server, nor the dashboard, nor the demo.
const load = {
  db: () => import("./commands/db.js"),
  groups: () => import("./commands/groups.js"),
  join: () => import("./commands/join.js"),
  migrate: () => import("./commands/migrate.js"),
  status: () => import("./commands/status.js"),
  ui: () => import("./commands/ui.js"),
  demo: () => import("./demo/demo.js"),
  demoMember: () => import("./demo/member.js")
}

/** Runs `f` with the module `load` imports. */
const using = <M, A, E, R>(load: () => Promise<M>, f: (m: M) => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.flatMap(Effect.promise(load), f)

// --- shared options: accepted before the command (`modulo-group --verbose join g`) and after it --

const databaseUrl = Options.text("database-url").pipe(
  Options.withPseudoName("url"),
  Options.withDescription("PostgreSQL URL (default: $DATABASE_URL, else the embedded server: see `modulo-group db`)"),
  Options.optional
)
const verbose = Options.boolean("verbose").pipe(
  Options.withDescription("Log everything to stderr, and show full causes and stack traces of errors")
)
const json = Options.boolean("json")

const root = Command.make("modulo-group", { databaseUrl, verbose }).pipe(
  Command.withDescription(
    "Split work between processes that share one PostgreSQL database: every live member of a group holds a unique index k in [0..N)."
  )
)

interface Shared {
  readonly databaseUrl: Option.Option<string>
  readonly verbose: boolean
}

/** Runs a command body with the shared options merged, logs on stderr and errors in one line. */
const handle = <A, E, R>(local: Shared, body: (shared: Shared) => Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const top = yield* root
    const shared: Shared = {
      databaseUrl: Option.orElse(local.databaseUrl, () => top.databaseUrl),
      verbose: local.verbose || top.verbose
    }
    return yield* body(shared).pipe(report(shared.verbose), withLogging(shared.verbose))
  })

// commands/join.ts's `MAX_FIBERS` (the type checks that they agree), without importing that module.
const MAX_FIBERS: typeof Join.MAX_FIBERS = 10_000

const group = Args.text({ name: "group" }).pipe(
  Args.withDescription("The group id (any text up to 200 characters, not starting with --)"),
  // `join --fibers` (the value forgotten) joined a group named "--fibers" (a review): an id that reads
  // as an option is refused here; the library still takes any id.
  Args.mapEffect((text) =>
    text.startsWith("--")
      ? Effect.fail(HelpDoc.p(
        `Invalid group ${JSON.stringify(text)}: it looks like an option missing its value (the command line refuses ` +
          `group ids that start with --)`
      ))
      : Effect.succeed(text)
  )
)

const join = Command.make(
  "join",
  {
    group,
    workInterval: Durations.option("work-interval", "1s", "How often to print a work line while assigned"),
    heartbeat: Durations.option("heartbeat", "1s", "Lease renewal and polling interval"),
    lease: Durations.option(
      "lease",
      "10s",
      "Lease length on the database clock; must exceed heartbeat + fence margin + statement timeout"
    ),
    fenceMargin: Durations.optionalOption(
      "fence-margin",
      "Stop working this long before the lease can expire (default 2s)"
    ),
    statementTimeout: Durations.optionalOption("statement-timeout", "Timeout of every database call (default 2s)"),
    name: Options.text("name").pipe(
      Options.withPseudoName("name"),
      Options.withDescription("Name shown by `status` (default host:pid)"),
      Options.optional
    ),
    json: json.pipe(Options.withDescription("Print JSON Lines (one object per state change and work tick)")),
    listenUrl: Options.text("listen-url").pipe(
      Options.withPseudoName("url"),
      Options.withDescription(
        "PostgreSQL URL of the LISTEN connection alone, when the database URL goes through a pooler in transaction mode (default: $MODULO_GROUP_LISTEN_URL, else the database URL)"
      ),
      Options.optional
    ),
    noNotifications: Options.boolean("no-notifications").pipe(
      Options.withDescription(
        "No LISTEN connection: find changes by polling every heartbeat (default: $MODULO_GROUP_NOTIFICATIONS, else notifications on)"
      )
    ),
    metricsPort: Options.integer("metrics-port").pipe(
      Options.withPseudoName("port"),
      Options.withDescription("Serve the metrics at http://<metrics-host>:<port>/metrics, Prometheus text format (0: a free port, printed on stderr; default: none)"),
      Options.optional
    ),
    metricsHost: Options.text("metrics-host").pipe(
      Options.withPseudoName("host"),
      Options.withDescription("Address the metrics server binds to (default 127.0.0.1)"),
      Options.withDefault("127.0.0.1")
    ),
    instanceId: Options.text("instance-id").pipe(
      Options.withPseudoName("id"),
      Options.withDescription(
        "Static membership: a stable identity in the group (default: $MODULO_GROUP_INSTANCE_ID). A restart with the same id takes its index back without a renegotiation"
      ),
      Options.optional
    ),
    rejoinGrace: Durations.optionalOption(
      "rejoin-grace",
      "With --instance-id: how long a stopped or crashed member's index is held for it (default: $MODULO_GROUP_REJOIN_GRACE, else 30s)"
    ),
    slots: Options.text("slots").pipe(
      Options.withPseudoName("S"),
      Options.withDescription(
        "Slots mode: the group has S slots (1 to 16384, fixed when the group is created); the member prints its slots, not an index (default: $MODULO_GROUP_SLOTS, else modulo mode)"
      ),
      Options.optional
    ),
    fibers: Options.text("fibers").pipe(
      Options.withPseudoName("n"),
      Options.withDescription(
        `Host n members of the group in this process (1 to ${MAX_FIBERS}), each with its own lines and member id (text lines start with the first 8 characters of it), over one pool and one LISTEN connection (default 1)`
      ),
      Options.withDefault("1"),
      Options.mapEffect((text) => {
        const n = /^\d{1,6}$/.test(text) ? Number(text) : NaN
        return n >= 1 && n <= MAX_FIBERS
          ? Effect.succeed(n)
          : Effect.fail(
            ValidationError.invalidValue(
              HelpDoc.p(`Invalid value for --fibers: ${JSON.stringify(text)} must be a whole number from 1 to ${MAX_FIBERS}`)
            )
          )
      })
    ),
    databaseUrl,
    verbose
  },
  (o) =>
    handle(o, (shared) =>
      using(load.join, (Join) => Join.join({
        listenUrl: o.listenUrl,
        notifications: o.noNotifications ? false : undefined,
        metricsPort: Option.getOrUndefined(o.metricsPort),
        metricsHost: o.metricsHost,
        instanceId: o.instanceId,
        rejoinGrace: o.rejoinGrace,
        slots: o.slots,
        fibers: o.fibers,
        group: o.group,
        name: Option.getOrUndefined(o.name),
        workInterval: o.workInterval,
        heartbeat: o.heartbeat,
        lease: o.lease,
        fenceMargin: o.fenceMargin,
        statementTimeout: o.statementTimeout,
        json: o.json,
        databaseUrl: shared.databaseUrl
      })))
).pipe(
  Command.withDescription(
    "Join a group and stay a member until Ctrl-C or SIGTERM, which leave it gracefully. It prints a line per state change and, while assigned, `<group>:[<k>/<N>] working away as usual...` once per work interval."
  )
)

const status = Command.make(
  "status",
  {
    group,
    json: json.pipe(Options.withDescription("Print JSON (one object per refresh with --watch)")),
    watch: Options.boolean("watch").pipe(Options.withDescription("Redraw every second until Ctrl-C")),
    databaseUrl,
    verbose
  },
  (o) =>
    handle(o, (shared) =>
      using(load.status, (Status) => Status.status({ group: o.group, json: o.json, watch: o.watch, databaseUrl: shared.databaseUrl })))
).pipe(
  Command.withDescription(
    "Show a group's epoch, size and members. One row per member: index, name, (instance id,) host, pid, acknowledged epoch, heartbeat age, lease left, state; then any process waiting for an instance id that a live member holds, beside its holder."
  )
)

const groups = Command.make(
  "groups",
  { json: json.pipe(Options.withDescription("Print a JSON array")), databaseUrl, verbose },
  (o) => handle(o, (shared) => using(load.groups, (Groups) => Groups.groups({ json: o.json, databaseUrl: shared.databaseUrl })))
).pipe(Command.withDescription("List the groups with their epoch and size."))

const migrate = Command.make(
  "migrate",
  { databaseUrl, verbose },
  (o) => handle(o, (shared) => using(load.migrate, (Migrate) => Migrate.migrate({ databaseUrl: shared.databaseUrl })))
).pipe(Command.withDescription("Apply the modulo_group schema and say what was done (join does it too)."))

const dbStatus = Command.make(
  "status",
  { json: json.pipe(Options.withDescription("Print JSON")), verbose },
  (o) => handle({ ...o, databaseUrl: Option.none() }, () => using(load.db, (Db) => Db.status({ json: o.json })))
).pipe(Command.withDescription("Show where the embedded PostgreSQL is (directory, port, pid) and whether it runs."))

const dbStop = Command.make(
  "stop",
  {
    purge: Options.boolean("purge").pipe(Options.withDescription("Also delete its data (every group) and its state file")),
    verbose
  },
  (o) => handle({ ...o, databaseUrl: Option.none() }, () => using(load.db, (Db) => Db.stop({ purge: o.purge })))
).pipe(
  Command.withDescription(
    "Stop the embedded PostgreSQL. Its data is kept (unless --purge) and the next command starts it again."
  )
)

const dbUrl = Command.make(
  "url",
  { verbose },
  (o) => handle({ ...o, databaseUrl: Option.none() }, () => using(load.db, (Db) => Db.url))
).pipe(Command.withDescription("Print the embedded PostgreSQL's URL, starting it if needed. E.g. psql \"$(modulo-group db url)\"."))

const db = Command.make("db").pipe(
  Command.withDescription(
    "The embedded PostgreSQL that commands use when neither --database-url nor DATABASE_URL is set: one per user and machine, started by the first command that needs it, kept running until `db stop`."
  ),
  Command.withSubcommands([dbStatus, dbStop, dbUrl])
)

const demo = Command.make(
  "demo",
  {
    members: Options.integer("members").pipe(
      Options.withDescription("How many members start, 3 to 20 (the faults take two away); one more joins later (default 4)"),
      Options.withDefault(4)
    ),
    items: Options.integer("items").pipe(Options.withDescription("How many items the ledger holds (default 10000)"), Options.withDefault(10_000)),
    drainTime: Durations.option(
      "drain-time",
      "25s",
      "About how long draining the ledger should take: sets the batch size; the faults are spread over its first part"
    ),
    batchInterval: Durations.option("batch-interval", "100ms", "How often each member takes a batch of its items"),
    batch: Options.integer("batch").pipe(
      Options.withDescription("Items per member per batch (default: from --drain-time)"),
      Options.optional
    ),
    heartbeat: Durations.option("heartbeat", "200ms", "The members' lease renewal and polling interval"),
    lease: Durations.option("lease", "2s", "The members' lease: a killed or frozen member is replaced after about this long"),
    fenceMargin: Durations.option("fence-margin", "500ms", "A member stops working this long before its lease can expire"),
    statementTimeout: Durations.option("statement-timeout", "1s", "Timeout of the members' database calls"),
    slots: Options.integer("slots").pipe(
      Options.withPseudoName("S"),
      Options.withDescription(
        "Slots mode: the group has S slots (1 to 16384) and each member works the items of its slots (id % S); the summary shows per change how many slots paused and for how long (default: modulo mode)"
      ),
      Options.optional
    ),
    keep: Options.boolean("keep").pipe(
      Options.withDescription("Keep the run's rows in modulo_group_demo and its group (kept anyway when the run fails)")
    ),
    json: json.pipe(Options.withDescription("Print the summary as one JSON object, the last line of stdout (the log goes to stderr)")),
    databaseUrl,
    verbose
  },
  (o) =>
    handle(o, (shared) =>
      using(load.demo, (Demo) => Demo.demo({
        members: o.members,
        items: o.items,
        drainTime: o.drainTime,
        batchInterval: o.batchInterval,
        batch: Option.getOrUndefined(o.batch),
        heartbeat: o.heartbeat,
        lease: o.lease,
        fenceMargin: o.fenceMargin,
        statementTimeout: o.statementTimeout,
        slots: Option.getOrUndefined(o.slots),
        keep: o.keep,
        json: o.json,
        verbose: shared.verbose,
        databaseUrl: shared.databaseUrl
      })))
).pipe(
  Command.withDescription(
    "Show the guarantees live: member processes drain a ledger under faults. They process its items through fenced transactions while a member joins, one leaves (SIGTERM), one crashes (SIGKILL) and one freezes past its lease (SIGSTOP, then SIGCONT); then count the items processed once, twice and never. Exits 1 unless every item was processed exactly once."
  )
)

const ui = Command.make(
  "ui",
  {
    port: Options.integer("port").pipe(
      Options.withPseudoName("port"),
      Options.withDescription("Port to listen on; 0 picks a free one (default 4100)"),
      Options.withDefault(4100)
    ),
    host: Options.text("host").pipe(
      Options.withPseudoName("address"),
      Options.withDescription("Address to bind; anything but loopback exposes the dashboard to the network (default 127.0.0.1)"),
      Options.withDefault("127.0.0.1")
    ),
    databaseUrl,
    verbose
  },
  (o) => handle(o, (shared) => using(load.ui, (Ui) => Ui.ui({ port: o.port, host: o.host, databaseUrl: shared.databaseUrl })))
).pipe(
  Command.withDescription(
    "Serve a read-only web dashboard of the groups. Pages: every group; one group live (updates pushed as they happen); its epoch timeline over the last hour."
  )
)

/**
 * The whole command tree.
 *
 * @since 0.1.0
 * @internal
 */
export const command = root.pipe(Command.withSubcommands([join, status, groups, migrate, db, demo, ui]))

const version = (): string => {
  // This package's package.json, seen from src/ (tests) and from dist/ (the built command).
  for (const rel of ["../package.json"]) {
    try {
      const pkg = JSON.parse(fs.readFileSync(fileURLToPath(new URL(rel, import.meta.url)), "utf8")) as {
        name?: string
        version?: string
      }
      if (pkg.name === "modulo-group-cli" && typeof pkg.version === "string") return pkg.version
    } catch {
      // try the next
    }
  }
  return "0.0.0"
}

const parse = Command.run(command, { name: "modulo-group", version: version() })

/**
 * @effect/cli says what it could not parse (an unknown argument, an option without its value, a
 * missing argument, an invalid value) on `Console.error`, as its text and a blank line: said here as
 * every other error of the tool is, one line that starts with `modulo-group:` (the rest of a
 * multi-line text on the lines after it). Nothing else of the tool writes through `Console`.
 */
const prefixed = (console: Console.Console, argv: ReadonlyArray<string>): Console.Console => ({
  ...console,
  error: (...args: ReadonlyArray<unknown>) =>
    console.error(...args.map((a) => (typeof a === "string" ? `modulo-group: ${clarify(a.trim(), argv.slice(2))}` : a)))
})

/**
 * Where @effect/cli's text misleads (a review): a known option given last without its value, or given
 * twice, is "Received unknown argument"; an unknown subcommand of `db` is told to use the top-level
 * commands.
 */
const clarify = (text: string, args: ReadonlyArray<string>): string => {
  const unknown = /^Received unknown argument: '(-{1,2}[^'\s]+)'$/.exec(text)
  if (unknown !== null) {
    const flag = unknown[1]!
    const end = args.indexOf("--")
    const before = end === -1 ? args : args.slice(0, end)
    const help = Help.helpFor(command, [...before.filter((a) => a !== flag), "--help"], version()) ?? ""
    const known = help.split("\n").some((line) => line.trim().split(/[\s,=]+/).includes(flag))
    if (known && before.filter((a) => a === flag).length > 1) return `${flag} is given more than once`
    if (known && before[before.length - 1] === flag) return `${flag} needs a value`
    return text
  }
  const parent = args[0]
  if (/^Invalid subcommand for modulo-group\b/.test(text) && parent === "db" && args[1] !== undefined) {
    return `Invalid subcommand ${JSON.stringify(args[1])} for modulo-group db - use one of 'status', 'stop', 'url'`
  }
  return text
}

const runCommand = (argv: ReadonlyArray<string>) =>
  Effect.consoleWith((console) => Effect.withConsole(parse(argv), prefixed(console, argv)))

/** `--help` / `-h`: the tool's own rendering of the tree (Help.ts), on stdout. */
const help = (argv: ReadonlyArray<string>) => {
  const text = Help.helpFor(command, argv.slice(2), version())
  return text === undefined ? undefined : Effect.sync(() => {
    process.stdout.write(text)
  })
}

/**
 * Parses `argv` (as `process.argv`) and runs the command. `demo-member`, the member process that
 * `demo` spawns, is dispatched here so that it stays out of the help.
 *
 * @since 0.1.0
 * @internal
 */
export const run = (argv: ReadonlyArray<string>) =>
  argv[2] === memberCommand
    ? using(load.demoMember, (DemoMember) => DemoMember.runMember(argv.slice(3)))
    : help(argv) ?? Effect.zipRight(noWizardWithoutTerminal(argv), runCommand(argv))

/**
 * `--wizard` (@effect/cli's) asks its questions on a terminal; with a standard input that is not one
 * (a pipe, /dev/null, a CI job) it waited for ever for an answer that could not come (a review). A
 * usage error instead.
 */
const noWizardWithoutTerminal = (argv: ReadonlyArray<string>) => {
  const end = argv.indexOf("--")
  const before = end === -1 ? argv.slice(2) : argv.slice(2, end)
  return before.includes("--wizard") && process.stdin.isTTY !== true
    ? report(false)(Effect.fail(fail("--wizard asks its questions on a terminal, and standard input is not one", undefined, ExitCodes.usage)))
    : Effect.void
}

// demo/member.ts's `memberCommand` (the type checks that they agree), without importing that module.
const memberCommand: typeof DemoMember.memberCommand = "demo-member"
