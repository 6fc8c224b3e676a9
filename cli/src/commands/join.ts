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
import { Duration, Effect, Either, Option, Schedule, Stream } from "effect"
import { Membership, MembershipConfig, MembershipError, MemberState as State, PgMembership } from "modulo-group"
import * as os from "node:os"
import { ExitCodes, fail } from "../CliError.js"
import * as Database from "../Database.js"
import * as Durations from "../Durations.js"
import * as Events from "../Events.js"

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

// `MODULO_GROUP_NOTIFICATIONS` (true/false, on/off, 1/0); bad input is a usage error.
const notificationsFromEnv = Effect.suspend(() => {
  const text = nonEmpty(process.env["MODULO_GROUP_NOTIFICATIONS"])?.toLowerCase()
  if (text === undefined) return Effect.succeed<boolean | undefined>(undefined)
  if (["true", "on", "1", "yes"].includes(text)) return Effect.succeed<boolean | undefined>(true)
  if (["false", "off", "0", "no"].includes(text)) return Effect.succeed<boolean | undefined>(false)
  return Effect.fail(
    new MembershipError.InvalidConfig({ field: "MODULO_GROUP_NOTIFICATIONS", reason: "expected true or false" })
  )
})

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

const writeLine = (line: string) => {
  process.stdout.write(`${line}\n`)
}

const validPort = (port: number) => Number.isSafeInteger(port) && port >= 0 && port <= 65_535

/**
 * @since 0.1.0
 * @internal
 */
export const join = (options: JoinOptions) =>
  Effect.gen(function*() {
    const fibers = options.fibers ?? 1
    if (!Number.isSafeInteger(fibers) || fibers < 1 || fibers > MAX_FIBERS) {
      return yield* fail(`--fibers must be a whole number from 1 to ${MAX_FIBERS} (got ${fibers})`, undefined, ExitCodes.usage)
    }
    if (options.metricsPort !== undefined && !validPort(options.metricsPort)) {
      return yield* fail(`--metrics-port must be between 0 and 65535, got ${options.metricsPort}`, undefined, ExitCodes.usage)
    }
    if (options.name === "") {
      return yield* fail("--name must not be empty (without it the name is host:pid)", undefined, ExitCodes.usage)
    }
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
    if (fibers > 1 && input.instanceId !== undefined) {
      return yield* fail(
        "--fibers hosts several members, and an instance id (--instance-id, MODULO_GROUP_INSTANCE_ID) names one: use one or the other",
        undefined,
        ExitCodes.usage
      )
    }
    // Bad input fails before any database work.
    const config = yield* MembershipConfig.make(input)
    const database = yield* Database.resolve(options.databaseUrl)
    // One statement connection (MODULO_GROUP_MAX_CONNECTIONS for more), which the notifications use
    // too: one connection per process (two with --listen-url). See docs/operations.md, "Connections".
    const pool = yield* Database.memberPool(database.url, { maxConnections: yield* maxConnectionsFromEnv })
    // Each member its own name: `<name>#<n>`, n from 1 (the name defaults to host:pid).
    const name = options.name ?? `${os.hostname()}:${process.pid}`
    const members = fibers === 1
      ? member(input, options, false)
      : Effect.forEach(
        Array.from({ length: fibers }, (_, i) => i + 1),
        // All at once: joins of one process that wait for their turn ride along the change of the
        // join ahead of them (docs/protocol.md, "Changes of one process go together").
        (n) => member({ ...input, name: `${name}#${n}` }, options, true),
        { concurrency: "unbounded", discard: true }
      )
    yield* Effect.scoped(Effect.gen(function*() {
      if (options.metricsPort !== undefined) {
        const MetricsServer = yield* Effect.promise(() => import("../metrics/Server.js"))
        const server = yield* MetricsServer.serve({ host: options.metricsHost ?? "127.0.0.1", port: options.metricsPort })
        process.stderr.write(`modulo-group: serving metrics at ${server.url}\n`)
      }
      return yield* members
    })).pipe(
      Effect.provide(
        PgMembership.layerStore({
          migrate: true,
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
const member = (input: MembershipConfigInput, options: JoinOptions, tagged: boolean) =>
  Effect.scoped(Effect.gen(function*() {
    const group = options.group
    const instance = input.instanceId ?? null
    let memberId = ""
    const text = (line: string) => (tagged ? `${memberId.slice(0, 8)} ${line}` : line)
    let lastKey: string | undefined = undefined
    let closing = false

    const printState = (state: MemberState, force = false) => {
      if (closing && !force) return
      const key = State.format(state)
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

    // Until Ctrl-C / SIGTERM: then `leaving` at once; closing the scope leaves the group.
    return yield* Effect.never.pipe(
      Effect.onInterrupt(() =>
        Effect.sync(() => {
          printState(State.MemberState.Leaving({ stopping: true, stuck: false }))
          closing = true
        })
      )
    )
  }))
