/**
 * `modulo-group join`: one member (or, with `--fibers N`, N members in this process) that prints its
 * state changes and, while assigned, a line per work interval.
 *
 * Output order is the point: a reader of the lines (or of several processes' JSON Lines) must be
 * able to tell who held what, and when. So
 * - one printer fiber writes the state changes, in order, from `changes`;
 * - the work, run by `whileAssigned`, waits until the printer has written the `assigned` line
 *   before its first tick, and, when interrupted, waits until the printer has written the state
 *   that ended the assignment (`renegotiating`, `lost`): `whileAssigned` runs that finalizer
 *   before the member acknowledges the next epoch, so the line is out before the ack;
 * - a fence (the lease deadline passed) interrupts the work before the state changes, so the
 *   finalizer writes `fenced` itself; the printer skips the same line when the state catches up;
 * - on SIGINT/SIGTERM, `leaving` is written at once and nothing else until `left`.
 *
 * With `--fibers N`, each member does all of the above on its own (its own lines, its own member id;
 * text lines start with a tag of it, the first 8 characters of its id), over this process's one
 * store: one pool, one LISTEN connection, the schema checked once.
 *
 * @since 0.1.0
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as HashMap from "effect/HashMap"
import * as HashSet from "effect/HashSet"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import { Membership, MembershipConfig, MembershipError, MemberState as State, PgMembership } from "modulo-group"
import * as os from "node:os"
import type pg from "pg"
import { describe, Exit as CliExit, ExitCodes, fail } from "../CliError.js"
import * as Database from "../Database.js"
import * as Durations from "../Durations.js"
import * as Events from "../Events.js"
import { checkHost, checkPort } from "./shared.js"

type MembershipConfigInput = MembershipConfig.MembershipConfigInput
type Assignment = State.Assignment
type MemberState = State.MemberState

/**
 * @since 0.1.0
 * @internal
 */
export interface JoinOptions {
  readonly group: string
  readonly name: string | undefined
  readonly workInterval: Duration.Duration
  readonly heartbeat: Duration.Duration
  readonly lease: Duration.Duration
  readonly fenceMargin: Duration.Duration | undefined
  readonly statementTimeout: Duration.Duration | undefined
  readonly json: boolean
  readonly databaseUrl: Option.Option<string>
  /** The LISTEN connection's own URL (`--listen-url`, else `MODULO_GROUP_LISTEN_URL`). */
  readonly listenUrl?: Option.Option<string> | undefined
  /** `--no-notifications`: false; otherwise `MODULO_GROUP_NOTIFICATIONS`, else on. */
  readonly notifications?: boolean | undefined
  /** Serve the metrics at `http://<metricsHost>:<metricsPort>/metrics` (port 0: a free one). */
  readonly metricsPort?: number | undefined
  readonly metricsHost?: string | undefined
  /** Static membership: `--instance-id`, else `MODULO_GROUP_INSTANCE_ID`. */
  readonly instanceId?: Option.Option<string> | undefined
  /** Static membership: `--rejoin-grace`, else `MODULO_GROUP_REJOIN_GRACE`, else the library's default. */
  readonly rejoinGrace?: Duration.Duration | undefined
  /** Slots mode: `--slots`, else `MODULO_GROUP_SLOTS` (text, validated here). */
  readonly slots?: Option.Option<string> | undefined
  /** `--fibers`: how many members this process hosts (1 to `MAX_FIBERS`; default 1). */
  readonly fibers?: number | undefined
}

/**
 * The most members one `join --fibers` hosts.
 *
 * @since 0.1.0
 * @internal
 */
export const MAX_FIBERS = 10_000

/** How long `join` waits for an unreachable database before giving up. */
const STARTUP_TIMEOUT = Duration.seconds(5)

const nonEmpty = (s: string | undefined) => (s === undefined || s === "" ? undefined : s)

// `MODULO_GROUP_REJOIN_GRACE` in the CLI's duration syntax (`30s`, `1m`); bad input is a usage error.
const rejoinGraceFromEnv = Effect.suspend(() => {
  const text = nonEmpty(process.env["MODULO_GROUP_REJOIN_GRACE"])
  if (text === undefined) return Effect.succeed(undefined)
  return Either.match(Durations.parse(text), {
    onLeft: (reason) =>
      Effect.fail(new MembershipError.InvalidConfig({ field: "MODULO_GROUP_REJOIN_GRACE", reason })),
    onRight: (d) => Effect.succeed<Duration.Duration | undefined>(d)
  })
})

// The library's `layerFromEnv` variables that `join` does not read, each with what `join` uses
// instead (a flag, or a value of its own) and whether a variable's text says that same value (then
// nothing is said: a review, attack110, could not silence the notice by passing the same flags).
const sameDuration = (used: Duration.DurationInput) => (text: string) =>
  Either.match(Durations.parse(text), { onLeft: () => false, onRight: (d) => Duration.equals(d, Duration.decode(used)) })
const sameBoolean = (used: boolean) => (text: string) => booleanText(text) === used
const unreadVariables = (options: JoinOptions): ReadonlyArray<{ readonly name: string; readonly instead: string; readonly same: (text: string) => boolean }> => {
  const defaults = MembershipConfig.defaults
  return [
    { name: "MODULO_GROUP_GROUP_ID", instead: "the group argument", same: (t) => t === options.group },
    { name: "MODULO_GROUP_NAME", instead: "--name", same: (t) => t === options.name },
    { name: "MODULO_GROUP_HEARTBEAT", instead: "--heartbeat", same: sameDuration(options.heartbeat) },
    { name: "MODULO_GROUP_LEASE", instead: "--lease", same: sameDuration(options.lease) },
    { name: "MODULO_GROUP_FENCE_MARGIN", instead: "--fence-margin", same: sameDuration(options.fenceMargin ?? defaults.fenceMargin) },
    { name: "MODULO_GROUP_STATEMENT_TIMEOUT", instead: "--statement-timeout", same: sameDuration(options.statementTimeout ?? defaults.statementTimeout) },
    { name: "MODULO_GROUP_STOP_TIMEOUT", instead: `no flag: ${Duration.format(defaults.stopTimeout)}`, same: sameDuration(defaults.stopTimeout) },
    { name: "MODULO_GROUP_STARTUP_TIMEOUT", instead: `no flag: ${Duration.format(STARTUP_TIMEOUT)}`, same: sameDuration(STARTUP_TIMEOUT) },
    { name: "MODULO_GROUP_BARRIER_POLL", instead: `no flag: ${Duration.format(defaults.barrierPoll)}`, same: sameDuration(defaults.barrierPoll) },
    { name: "MODULO_GROUP_RENEWAL_WINDOW", instead: "no flag: the library's default", same: () => false },
    { name: "MODULO_GROUP_LOG_STATE_CHANGES", instead: "no flag: off", same: sameBoolean(defaults.logStateChanges) }
  ]
}

/** A boolean variable's text (true/false, on/off, 1/0, yes/no; any case), or undefined. */
const booleanText = (text: string): boolean | undefined => {
  const t = text.trim().toLowerCase()
  return ["true", "on", "1", "yes"].includes(t) ? true : ["false", "off", "0", "no"].includes(t) ? false : undefined
}

/** A boolean variable (`booleanText`), undefined when unset; bad input is a usage error. */
const booleanFromEnv = (name: string) =>
  Effect.suspend(() => {
    const text = nonEmpty(process.env[name])
    if (text === undefined) return Effect.succeed<boolean | undefined>(undefined)
    const value = booleanText(text)
    return value === undefined
      ? Effect.fail(new MembershipError.InvalidConfig({ field: name, reason: "expected true or false" }))
      : Effect.succeed<boolean | undefined>(value)
  })

// `MODULO_GROUP_NOTIFICATIONS` (true/false, on/off, 1/0).
const notificationsFromEnv = booleanFromEnv("MODULO_GROUP_NOTIFICATIONS")

// `MODULO_GROUP_MIGRATE` (true/false, on/off, 1/0; default true): false checks the schema instead of
// migrating it (a review, attack110: a fleet holding its schema back with it had it upgraded by any
// `join`, and its apps on the older library then refused the newer schema).
const migrateFromEnv = Effect.map(booleanFromEnv("MODULO_GROUP_MIGRATE"), (migrate) => migrate ?? true)

// `MODULO_GROUP_MAX_CONNECTIONS`: statement connections of the process (default 1); bad input is a usage error.
const maxConnectionsFromEnv = Effect.suspend(() => {
  const text = nonEmpty(process.env["MODULO_GROUP_MAX_CONNECTIONS"])
  if (text === undefined) return Effect.succeed(undefined)
  const n = Number(text)
  return Number.isInteger(n) && n >= 1 && n <= 100
    ? Effect.succeed<number | undefined>(n)
    : Effect.fail(
      new MembershipError.InvalidConfig({ field: "MODULO_GROUP_MAX_CONNECTIONS", reason: "expected a whole number from 1 to 100" })
    )
})

// `--slots`, else `MODULO_GROUP_SLOTS`: a whole number (the library checks the range); bad input is a usage error.
const slotsOption = (given: Option.Option<string> | undefined) =>
  Effect.suspend(() => {
    const text = Option.getOrUndefined(given ?? Option.none()) ?? nonEmpty(process.env["MODULO_GROUP_SLOTS"])
    if (text === undefined) return Effect.succeed<number | undefined>(undefined)
    return /^\d{1,6}$/.test(text)
      ? Effect.succeed<number | undefined>(Number(text))
      : Effect.fail(new MembershipError.InvalidConfig({ field: "slots", reason: `expected a whole number from 1 to 16384, got ${JSON.stringify(text)}` }))
  })

// What a member writes (docs/operations.md, "Least privileges"): `SELECT ... FOR UPDATE` needs
// UPDATE too. The other documented grants are for fenced transactions (fence_checks, which `join`
// runs none of) and for what members do without when it is missing (instance_waiters).
const memberPrivileges: ReadonlyArray<readonly [string, ReadonlyArray<string>]> = [
  ["modulo_group.groups", ["SELECT", "INSERT", "UPDATE"]],
  ["modulo_group.members", ["SELECT", "INSERT", "UPDATE", "DELETE"]]
]
const slotsPrivileges: ReadonlyArray<readonly [string, ReadonlyArray<string>]> = [
  ["modulo_group.slots", ["SELECT", "INSERT", "UPDATE"]]
]

/**
 * Whether this database lets a member write what it must: not a hot standby, transactions not
 * read-only by default (`default_transaction_read_only`, set in the URL's `options`, for the role or
 * the database), and the role's table privileges. A member that could not write would retry its
 * join for ever; this fails at start, in one line, exit 1.
 */
const preflight = (pool: pg.Pool, url: string, slots: boolean) =>
  Effect.gen(function*() {
    const wanted = [...memberPrivileges, ...(slots ? slotsPrivileges : [])].flatMap(([table, privileges]) =>
      privileges.map((privilege) => [table, privilege] as const)
    )
    const result = yield* Effect.tryPromise(() =>
      pool.query<{ recovery: boolean; read_only: string; role: string; missing: Array<string> }>(
        `SELECT pg_is_in_recovery() AS recovery, current_setting('transaction_read_only') AS read_only,
                current_user AS role,
                ARRAY(SELECT t || ' ' || p FROM unnest($1::text[], $2::text[]) AS w(t, p)
                       WHERE NOT has_table_privilege(t, p)) AS missing`,
        [wanted.map(([t]) => t), wanted.map(([, p]) => p)]
      )
    ).pipe(
      Effect.timeoutFail({ duration: STARTUP_TIMEOUT, onTimeout: () => new Error(`no answer within ${Duration.format(STARTUP_TIMEOUT)}`) }),
      Effect.mapError((e) => fail(`cannot check the database at ${Database.redact(url)}: ${describe(e)}`, e))
    )
    const row = result.rows[0]!
    const where = `the database at ${Database.redact(url)}`
    if (row.recovery) {
      return yield* fail(`${where} is a hot standby (in recovery): a member writes its row, so point it at the primary`)
    }
    if (row.read_only === "on") {
      return yield* fail(
        `${where} is read-only for this connection (transaction_read_only is on: default_transaction_read_only, set in the URL's options, for the role or for the database): a member writes its row`
      )
    }
    if (row.missing.length > 0) {
      // "INSERT, UPDATE on modulo_group.groups; DELETE on modulo_group.members"
      const byTable = new Map<string, Array<string>>()
      for (const entry of row.missing) {
        const [table, privilege] = entry.split(" ") as [string, string]
        byTable.set(table, [...(byTable.get(table) ?? []), privilege])
      }
      const missing = [...byTable].map(([table, privileges]) => `${privileges.join(", ")} on ${table}`).join("; ")
      return yield* fail(
        `role ${JSON.stringify(row.role)} lacks privileges a member needs: ${missing} (see docs/operations.md, "Least privileges")`
      )
    }
  })

const writeLine = (line: string) => {
  process.stdout.write(`${line}\n`)
}

/**
 * @since 0.1.0
 * @internal
 */
export const join = (options: JoinOptions) =>
  Effect.uninterruptibleMask((restore) =>
    Effect.gen(function*() {
      const watch: Watch = { leaveGaveUp: false, refused: yield* Deferred.make<never, CliExit>() }
      const outcome = yield* Effect.exit(restore(joinAndStay(options, watch)))
      if (watch.leaveGaveUp && !(Exit.isFailure(outcome) && Option.isSome(Cause.failureOption(outcome.cause)))) {
        // The final leave gave up (the library said `leave gave up; the lease will expire instead`):
        // the member's row stays until its lease runs out, so this is no clean stop. A defect, not a
        // failure: an interrupted fiber's exit keeps defects but drops failures (as `migrate`).
        return yield* Effect.die(new CliExit({ code: ExitCodes.failure }))
      }
      return yield* outcome
    })
  )

/**
 * What `join` learns from the library's log lines that are events (`Membership.LogEvent`, read from
 * their annotation, not their wording): whether a final leave gave up, and a join refusal that no
 * retry can overcome (slots mode against a group of the other mode or another slot count), which ends
 * the process with exit 1.
 */
interface Watch {
  leaveGaveUp: boolean
  readonly refused: Deferred.Deferred<never, CliExit>
}

const watcher = (watch: Watch) =>
  Logger.make(({ annotations }) => {
    const event = HashMap.get(annotations, Membership.LogEvent.annotation)
    if (Option.isNone(event)) return
    if (event.value === Membership.LogEvent.leaveGaveUp) watch.leaveGaveUp = true
    else if (event.value === Membership.LogEvent.joinRefused) {
      Deferred.unsafeDone(watch.refused, Exit.fail(new CliExit({ code: ExitCodes.failure })))
    }
  })

const joinAndStay = (options: JoinOptions, watch: Watch) =>
  Effect.gen(function*() {
    const fibers = options.fibers ?? 1
    if (!Number.isSafeInteger(fibers) || fibers < 1 || fibers > MAX_FIBERS) {
      return yield* fail(`--fibers must be a whole number from 1 to ${MAX_FIBERS} (got ${fibers})`, undefined, ExitCodes.usage)
    }
    if (options.metricsPort !== undefined) yield* checkPort("--metrics-port", options.metricsPort)
    if (options.metricsHost !== undefined) yield* checkHost("--metrics-host", options.metricsHost)
    if (options.name === "") {
      return yield* fail("--name must not be empty (without it the name is host:pid)", undefined, ExitCodes.usage)
    }
    const migrate = yield* migrateFromEnv
    const input: MembershipConfigInput = {
      groupId: options.group,
      name: options.name,
      heartbeat: options.heartbeat,
      lease: options.lease,
      fenceMargin: options.fenceMargin,
      statementTimeout: options.statementTimeout,
      startupTimeout: STARTUP_TIMEOUT,
      listenUrl: Option.getOrUndefined(options.listenUrl ?? Option.none()) ?? nonEmpty(process.env["MODULO_GROUP_LISTEN_URL"]),
      notifications: options.notifications ?? (yield* notificationsFromEnv),
      instanceId: Option.getOrUndefined(options.instanceId ?? Option.none()) ?? nonEmpty(process.env["MODULO_GROUP_INSTANCE_ID"]),
      rejoinGrace: options.rejoinGrace ?? (yield* rejoinGraceFromEnv),
      slots: yield* slotsOption(options.slots)
    }
    if (options.rejoinGrace !== undefined && input.instanceId === undefined) {
      return yield* fail(
        "--rejoin-grace applies to static members only: give --instance-id (or MODULO_GROUP_INSTANCE_ID) too",
        undefined,
        ExitCodes.usage
      )
    }
    // The variable may be set for a whole fleet of which only some members are static: said, not refused.
    if (options.rejoinGrace === undefined && input.instanceId === undefined && input.rejoinGrace !== undefined) {
      process.stderr.write(
        "modulo-group: MODULO_GROUP_REJOIN_GRACE applies to static members only, and this one has no instance id (--instance-id, MODULO_GROUP_INSTANCE_ID): ignored\n"
      )
    }
    // `layerFromEnv`'s variables that `join` does not read (its flags have defaults of their own): a
    // fleet that sets them for its apps and its `join` processes would run one group under two
    // configurations, unsaid (a docs audit). Said once; the flags decide.
    const unread = unreadVariables(options).filter((v) => {
      const text = process.env[v.name]?.trim()
      return text !== undefined && text !== "" && !v.same(text)
    })
    if (unread.length > 0) {
      process.stderr.write(
        `modulo-group: join does not read ${unread.map((v) => `${v.name} (${v.instead})`).join(", ")}, variables of ` +
          "the library's layerFromEnv: ignored\n"
      )
    }
    if (fibers > 1 && input.instanceId !== undefined) {
      return yield* fail(
        "--fibers hosts several members, and an instance id (--instance-id, MODULO_GROUP_INSTANCE_ID) names one: use one or the other",
        undefined,
        ExitCodes.usage
      )
    }
    // Bad input fails before any database work; with --fibers, the longest of the members' names
    // (`<name>#<fibers>`, below) too (a review: a name that fitted alone failed only after 9 joins).
    const config = yield* MembershipConfig.make(input)
    if (fibers > 1) {
      const longest = `${options.name ?? `${os.hostname()}:${process.pid}`}#${fibers}`
      yield* MembershipConfig.make({ ...input, name: longest }).pipe(
        Effect.mapError(() =>
          fail(
            `--name: with --fibers ${fibers} each member is named <name>#<n>, ${Array.from(longest).length} characters for the last; ` +
              "names are at most 200 characters: shorten --name",
            undefined,
            ExitCodes.usage
          )
        )
      )
    }
    const database = yield* Database.resolve(options.databaseUrl)
    // One statement connection (MODULO_GROUP_MAX_CONNECTIONS for more), which the notifications use
    // too: one connection per process (two with --listen-url). See docs/operations.md, "Connections".
    // A statement unanswered well past the statement timeout is on a dead connection, which the pool
    // then closes (once `watchStatements` has run: the store's start may wait longer, for the migration lock).
    const { pool, watch: watchStatements } = yield* Database.memberPool(database.url, {
      maxConnections: yield* maxConnectionsFromEnv,
      statementTimeout: config.statementTimeout
    })
    // Each member its own name: `<name>#<n>`, n from 1 (the name defaults to host:pid).
    const name = options.name ?? `${os.hostname()}:${process.pid}`
    // The lines name the group and the instance as the library stores them (NFC), as `status` does.
    const shown = { group: config.groupId, instance: config.instanceId ?? null }
    const members = fibers === 1
      ? member(input, options, shown, watch, false)
      : Effect.forEach(
        Array.from({ length: fibers }, (_, i) => i + 1),
        // All at once: joins of one process that wait for their turn ride along the change of the
        // join ahead of them (docs/protocol.md, "Changes of one process go together").
        (n) => member({ ...input, name: `${name}#${n}` }, options, shown, watch, true),
        { concurrency: "unbounded", discard: true }
      )
    yield* Effect.scoped(Effect.gen(function*() {
      // After the store's start checks (schema applied and checked): a database this member could
      // never write fails here, at once, instead of a join retried for ever.
      yield* preflight(pool, database.url, input.slots !== undefined)
      // From here on every statement on the pool is the store's (or its notifier's), each bounded on
      // the server by the statement timeout: one unanswered far longer closes its connection.
      yield* watchStatements
      if (options.metricsPort !== undefined) {
        const MetricsServer = yield* Effect.promise(() => import("../metrics/Server.js"))
        const server = yield* MetricsServer.serve({ host: options.metricsHost ?? "127.0.0.1", port: options.metricsPort })
        process.stderr.write(`modulo-group: serving metrics at ${server.url}\n`)
      }
      return yield* members
    })).pipe(
      Effect.locallyWith(FiberRef.currentLoggers, HashSet.add(watcher(watch))),
      Effect.provide(
        PgMembership.layerStore({
          migrate,
          startupTimeout: STARTUP_TIMEOUT,
          statementTimeout: config.statementTimeout,
          listenUrl: config.listenUrl,
          // Notifications off: nothing should LISTEN; if anything did, it would do so on a connection of
          // its own (application_name modulo-group/listen), which the chaos runner looks for.
          listenPool: config.notifications ? pool : undefined
        })
      ),
      Effect.provide(Database.layerFromPool(pool))
    )
  }).pipe(Effect.scoped, Effect.provide(PgMembership.nodeIdentity))

/**
 * One member and its lines; `tagged`: text lines start with a tag of the member (`--fibers`).
 */
const member = (
  input: MembershipConfigInput,
  options: JoinOptions,
  shown: { readonly group: string; readonly instance: string | null },
  watch: Watch,
  tagged: boolean
) =>
  Effect.scoped(Effect.gen(function*() {
    const { group, instance } = shown
    let memberId = ""
    const text = (line: string) => (tagged ? `${memberId.slice(0, 8)} ${line}` : line)
    let lastKey: string | undefined = undefined
    let closing = false

    const printState = (state: MemberState, force = false) => {
      if (closing && !force) return
      // One line per distinct output: a JSON record has no `stopping` or `stuck`, so two states
      // that differ only there (the work's own `fenced` and then the state's) are one record.
      const key = options.json ? JSON.stringify(Events.stateEvent("", "", state, new Date(0))) : State.format(state)
      if (key === lastKey) return
      lastKey = key
      writeLine(
        options.json
          ? JSON.stringify(Events.stateEvent(memberId, group, state, new Date(), instance, slotsMode ? [...working].sort((a, b) => a - b) : undefined))
          : text(slotsMode ? Events.slotsStateText(group, state) : Events.stateText(group, state))
      )
    }
    // Slots mode: the slots this member works now (its `whileOwning` runs), and a line for the set.
    const slotsMode = input.slots !== undefined
    const working = new Set<number>()
    const printSlots = (size: number) => {
      if (closing) return
      const slots = [...working].sort((a, b) => a - b)
      writeLine(
        options.json
          ? JSON.stringify(Events.slotsWorkEvent(memberId, group, slots, size, lastEpoch, new Date(), instance))
          : text(Events.slotsWorkText(group, slots, input.slots ?? 0, size))
      )
    }
    let lastEpoch: number | null = null
    let lastSize = 0
    const printWork = (a: Assignment) => {
      if (closing) return
      writeLine(
        options.json ? JSON.stringify(Events.workEvent(memberId, group, a, new Date(), instance)) : text(Events.workText(group, a))
      )
    }

    // Registered before the member, so it runs after the member has left (finalizers run in reverse).
    let service: Membership.MembershipService | undefined = undefined
    yield* Effect.addFinalizer(() =>
      service === undefined
        ? Effect.void
        : Effect.map(service.state, (s) => {
          if (s._tag === "Left") printState(s, true)
        })
    )

    const m = yield* Membership.make(input)
    service = m
    memberId = m.memberId

    // The printer: every state, in order. `seen` lets the work wait until a state is printed.
    const seen = new WeakSet<MemberState>()
    const onSeen = new Set<() => void>()
    yield* m.changes.pipe(
      Stream.runForEach((state) =>
        Effect.sync(() => {
          printState(state)
          seen.add(state)
          for (const notify of [...onSeen]) notify()
        })
      ),
      Effect.forkScoped
    )
    // Waits (at most a second) until the printer has handled the current state. A plain callback
    // and timer, not an Effect timeout: this also runs in finalizers, which are uninterruptible.
    const printed = Effect.flatMap(m.state, (current) =>
      Effect.async<void>((resume) => {
        if (seen.has(current)) return resume(Effect.void)
        let done = false
        const finish = () => {
          if (done) return
          done = true
          clearTimeout(timer)
          onSeen.delete(check)
          resume(Effect.void)
        }
        const check = () => {
          if (seen.has(current)) finish()
        }
        const timer = setTimeout(finish, 1_000)
        onSeen.add(check)
        return Effect.sync(() => {
          done = true
          clearTimeout(timer)
          onSeen.delete(check)
        })
      }))

    const tick = (a: Assignment) =>
      Effect.flatMap(m.assignment, (now) =>
        Effect.sync(() => {
          // Never a tick under a stale assignment (G3): the lease deadline is checked first.
          if (Option.isSome(now) && now.value.epoch === a.epoch) printWork(a)
        }))

    const ended = (a: Assignment) =>
      Effect.gen(function*() {
        if (closing) return
        yield* printed
        const state = yield* m.state
        if (state._tag === "Assigned" && state.epoch === a.epoch) {
          // The fence timer stops work before the state becomes Fenced: say so now.
          printState(State.MemberState.Fenced({
            epoch: a.epoch,
            index: a.index,
            size: a.size,
            incarnation: a.incarnation,
            stopping: true,
            stuck: false
          }))
        }
      })

    if (slotsMode) {
      // The state (epoch, members) the lines name.
      const remember = Effect.map(m.state, (st) => {
        if (st._tag === "Assigned") {
          lastEpoch = st.epoch
          lastSize = st.size
        }
      })
      // Per slot: the larger set is printed once the slot may be worked (its run started), the
      // smaller one when its run is interrupted, which is before the slot is released to its new
      // owner: for every slot, the giving line precedes the taking line.
      // Slots started together are printed in one line, after they have all started.
      let startPrint: ReturnType<typeof setImmediate> | undefined = undefined
      yield* m.whileOwning((owned) =>
        Effect.acquireRelease(
          Effect.zipRight(remember, Effect.sync(() => {
            working.add(owned.slot)
            if (startPrint === undefined) {
              startPrint = setImmediate(() => {
                startPrint = undefined
                printSlots(lastSize)
              })
            }
          })),
          // Printed at once, one line per slot given up: this runs before that slot's release.
          () =>
            Effect.zipRight(remember, Effect.sync(() => {
              working.delete(owned.slot)
              printSlots(lastSize)
            }))
        ).pipe(Effect.zipRight(Effect.never))
      )
      // Once per work interval, the set it works (while it works any). Never a tick past the lease
      // deadline (G3): `owned` is empty from the deadline on, even before the slots' stops have run.
      yield* m.whileAssigned(() =>
        printed.pipe(
          Effect.zipRight(Effect.repeat(
            Effect.zipRight(remember, Effect.flatMap(m.owned, (owned) =>
              Effect.sync(() => {
                if (owned.slots.length > 0 && working.size > 0) printSlots(lastSize)
              }))),
            Schedule.spaced(options.workInterval)
          ))
        )
      )
    } else {
      yield* m.whileAssigned((a) =>
        printed.pipe(
          Effect.zipRight(Effect.repeat(tick(a), Schedule.spaced(options.workInterval))),
          Effect.onInterrupt(() => ended(a))
        )
      )
    }

    // Until Ctrl-C / SIGTERM: then `leaving` at once; closing the scope leaves the group. Or until
    // a refusal no retry overcomes: then exit 1 (the library has said why). Not a race around the
    // members: a race does not wait for its loser's finalizers, and the pool would close under the
    // leave.
    return yield* Deferred.await(watch.refused).pipe(
      Effect.onInterrupt(() =>
        Effect.sync(() => {
          printState(State.MemberState.Leaving({ stopping: true, stuck: false }))
          closing = true
        })
      )
    )
  }))
