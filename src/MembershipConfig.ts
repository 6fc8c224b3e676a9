/**
 * Configuration of one member: which group it joins and how it keeps its lease. A service
 * (`MembershipConfig`) built by `layer(input)` or `layerFromEnv()`; the defaults are `defaults`.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { InvalidConfig, InvalidGroupId } from "./MembershipError.js"

/**
 * What an app passes in. Every field but `groupId` has a default.
 *
 * @since 0.1.0
 * @category models
 */
export interface MembershipConfigInput {
  /** The group to join. 1-200 characters, no control characters. */
  readonly groupId: string
  /** Shown by `status`; defaults to `host:pid` (from `MemberIdentity`). */
  readonly name?: string | undefined
  /** How often the lease is renewed and the group polled. Default 1 second. */
  readonly heartbeat?: Duration.DurationInput | undefined
  /** How long a lease lives on the database clock without renewal. Default 10 seconds. */
  readonly lease?: Duration.DurationInput | undefined
  /** How long before its lease can expire a member stops working on its own. Default 2 seconds. */
  readonly fenceMargin?: Duration.DurationInput | undefined
  /**
   * Timeout of every database call (a change whose `COMMIT` was sent when it passed is waited for once
   * more as long: it may have committed; after such a wait ran out unanswered, the store's later
   * changes wait twice as long, up to 4 times, docs/operations.md). Default 2 seconds.
   */
  readonly statementTimeout?: Duration.DurationInput | undefined
  /**
   * How long work may take to stop (at a renegotiation, a fence or a leave). Past it the member logs
   * an error every heartbeat and holds the barrier: it keeps its lease and neither acknowledges nor
   * leaves until the work stops. Default 5 seconds.
   */
  readonly stopTimeout?: Duration.DurationInput | undefined
  /** Use LISTEN/NOTIFY as a wake-up. Polling alone is correct, only slower. Default true. */
  readonly notifications?: boolean | undefined
  /** Apply pending schema migrations when the layer starts (`PgMembership`). Default true. */
  readonly migrate?: boolean | undefined
  /**
   * How long the layer retries a database that is not ready (schema check or migration) before failing.
   * Default 10 seconds. A `PgClient` layer that cannot connect at all fails on its own first.
   */
  readonly startupTimeout?: Duration.DurationInput | undefined
  /** First delay of the fast poll while waiting at the barrier; doubles, capped at a tenth of the heartbeat (or at itself, if larger). Default 10 ms. */
  readonly barrierPoll?: Duration.DurationInput | undefined
  /**
   * How much of each heartbeat a plain periodic renewal (the member working, nothing to acknowledge)
   * may float so that the renewals of the members of one process share one statement: the member
   * asks `renewalWindow` before its heartbeat is due, and the store sends it with the next batch, at
   * the latest when the heartbeat is due. No renewal is later than without it; some are earlier.
   * 0 turns it off. Default: half the heartbeat, at most half of lease - heartbeat - fenceMargin -
   * statementTimeout. Must be below the heartbeat, and lease must exceed heartbeat + fenceMargin +
   * statementTimeout + renewalWindow. See docs/operations.md,
   * "Heartbeats share statements".
   */
  readonly renewalWindow?: Duration.DurationInput | undefined
  /**
   * A `postgres://` URL for the LISTEN connection only (`PgMembership`), when the app's `PgClient`
   * goes through a connection pooler in transaction mode (where LISTEN cannot work): a direct
   * connection to PostgreSQL or a session-mode pool. Default: none, the `PgClient`'s settings.
   */
  readonly listenUrl?: string | Redacted.Redacted<string> | undefined
  /** Log every state change at INFO (`state: assigned epoch 7 [k/N]`, ...) instead of DEBUG. Default false. */
  readonly logStateChanges?: boolean | undefined
  /**
   * Static membership (opt-in): a stable identity of this member within its group, unique among its
   * live members (a StatefulSet pod name, a systemd instance, a host name). A graceful leave then
   * releases the member's row instead of deleting it, and a crashed member's row is held after its
   * lease ran out: a restart with the same id within `rejoinGrace` takes the same index in the same
   * epoch, and the other members do not renegotiate. 1-200 characters, no control characters (NFC).
   * Default: none (every restart is a leave and a join, as always). See docs/static-membership.md.
   */
  readonly instanceId?: string | undefined
  /**
   * With `instanceId`: how long a released or expired row is held for its instance before the group
   * renegotiates without it. Its slice is not served meanwhile. Default 30 seconds (a process
   * restart under systemd or Kubernetes); at most 1 hour.
   */
  readonly rejoinGrace?: Duration.DurationInput | undefined
  /**
   * Slots mode (docs/slots.md): the group's slot count S, an integer from 1 to 16,384. An item
   * belongs to slot `id mod S`; the slots are spread over the live members (sizes differ by at most
   * one), and a join, leave or crash moves only the slots that must move: members whose slots do not
   * move never stop. Fixed when the group is created: a member asking for another count (or for
   * modulo mode in a slots-mode group, or the reverse) is refused (`SlotsMismatch`, logged) and keeps
   * retrying. Work: `Membership.whileOwning`. Not with `instanceId`. Default: none (modulo mode).
   */
  readonly slots?: number | undefined
}

/**
 * Validated configuration, durations resolved.
 *
 * @since 0.1.0
 * @category models
 */
export interface ResolvedConfig {
  readonly groupId: string
  readonly name: string
  readonly heartbeat: Duration.Duration
  readonly lease: Duration.Duration
  readonly fenceMargin: Duration.Duration
  readonly statementTimeout: Duration.Duration
  readonly stopTimeout: Duration.Duration
  readonly notifications: boolean
  readonly migrate: boolean
  readonly startupTimeout: Duration.Duration
  readonly barrierPoll: Duration.Duration
  /**
   * See `MembershipConfigInput.renewalWindow`: as given, or undefined for the default (derived from
   * the other timings, so that a config built on this one with another heartbeat derives its own);
   * `renewalWindowMs` resolves it.
   */
  readonly renewalWindow: Duration.Duration | undefined
  readonly listenUrl: Redacted.Redacted<string> | undefined
  readonly logStateChanges: boolean
  /** Static membership: the instance id (NFC), if any. */
  readonly instanceId: string | undefined
  /** Static membership: how long the row is held for its instance (used only with `instanceId`). */
  readonly rejoinGrace: Duration.Duration
  /** Slots mode: the slot count (undefined: modulo mode). */
  readonly slots: number | undefined
}

/**
 * The validated configuration of the app's member (`Membership.layer` joins the group it names).
 *
 * @since 0.1.0
 * @category tags
 */
export class MembershipConfig extends Context.Tag("modulo-group/MembershipConfig")<MembershipConfig, ResolvedConfig>() {}

/**
 * Who this process is, for the member rows (`status` shows them) and the default name. The default
 * needs no platform API (host "unknown", pid 0, ids from `globalThis.crypto.randomUUID`); the
 * Postgres wiring (`PgMembership`) provides the Node host name and pid.
 *
 * @since 0.1.0
 * @category tags
 */
export class MemberIdentity extends Context.Reference<MemberIdentity>()("modulo-group/MemberIdentity", {
  defaultValue: (): MemberIdentityService => ({
    host: "unknown",
    pid: 0,
    newMemberId: Effect.sync(() => globalThis.crypto.randomUUID())
  })
}) {}

/**
 * @since 0.1.0
 * @category models
 */
export interface MemberIdentityService {
  readonly host: string
  readonly pid: number
  /**
   * A fresh member id (one per member; kept across its rejoins), a uuid. Ids must be unique: a second
   * live member of this process with the same id is refused (`InvalidConfig` from `Membership.make`),
   * and a member whose id a live member of another process holds does not join (its join fails,
   * naming that member, until it leaves or its lease runs out).
   */
  readonly newMemberId: Effect.Effect<string>
}

/**
 * Every default, in one place.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  heartbeat: Duration.seconds(1),
  lease: Duration.seconds(10),
  fenceMargin: Duration.seconds(2),
  statementTimeout: Duration.seconds(2),
  stopTimeout: Duration.seconds(5),
  notifications: true,
  migrate: true,
  startupTimeout: Duration.seconds(10),
  barrierPoll: Duration.millis(10),
  logStateChanges: false,
  rejoinGrace: Duration.seconds(30)
} as const

/**
 * The renewal window in milliseconds: as given, else half the heartbeat, at most half of
 * lease - heartbeat - fenceMargin - statementTimeout (whole milliseconds).
 *
 * @since 0.1.0
 * @category validation
 */
export const renewalWindowMs = (
  config: Pick<ResolvedConfig, "heartbeat" | "lease" | "fenceMargin" | "statementTimeout" | "renewalWindow">
): number => {
  if (config.renewalWindow !== undefined) return Duration.toMillis(config.renewalWindow)
  const ms = Duration.toMillis
  const slack = ms(config.lease) - ms(config.heartbeat) - ms(config.fenceMargin) - ms(config.statementTimeout)
  return Math.max(0, Math.floor(Math.min(ms(config.heartbeat) / 2, slack / 2)))
}

/**
 * Longest accepted `rejoinGrace`: a held row's slice is not served, so the grace is bounded.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxRejoinGrace = Duration.hours(1)

/**
 * Longest accepted group id, in characters (the schema checks the same bound).
 *
 * @since 0.1.0
 * @category constants
 */
export const maxGroupIdLength = 200

// C0 controls, DEL and C1 controls: NUL cannot be stored in a text column, the rest garble logs and terminals.
const controlChars = /[\u0000-\u001f\u007f-\u009f]/
const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/
/**
 * A text's length in characters (Unicode code points), as PostgreSQL's `length()` counts it in the
 * schema's checks; JavaScript's `length` counts UTF-16 code units, two per emoji (an outsider's review:
 * 150 emoji were refused as "300 characters long", while the schema takes them).
 */
const characters = (text: string): number => {
  let n = 0
  for (const _ of text) n++
  return n
}

/**
 * Checks a group id and returns it in Unicode NFC (the form every store call uses); group ids reach
 * SQL only as parameters, so quotes and unicode are fine.
 *
 * @since 0.1.0
 * @category validation
 */
export const validateGroupId = (groupId: string): Effect.Effect<string, InvalidGroupId> => {
  const fail = (reason: string) => Effect.fail(new InvalidGroupId({ groupId, reason }))
  if (typeof groupId !== "string") return fail("it must be a string")
  if (groupId.length === 0) return fail("it is empty")
  if (groupId.trim().length === 0) return fail("it is only whitespace")
  if (characters(groupId) > maxGroupIdLength) {
    return fail(`it is ${characters(groupId)} characters long; at most ${maxGroupIdLength} are allowed`)
  }
  if (controlChars.test(groupId)) return fail("it contains control characters")
  if (loneSurrogate.test(groupId)) return fail("it is not valid unicode (lone surrogate)")
  // One group, one id: the same text in another Unicode normal form (NFD from a macOS file name, say)
  // must not become a second group with a second full set of indices.
  const normalized = groupId.normalize("NFC")
  if (characters(normalized) > maxGroupIdLength) {
    return fail(`it is ${characters(normalized)} characters long in NFC; at most ${maxGroupIdLength} are allowed`)
  }
  return Effect.succeed(normalized)
}

/**
 * The longest duration a member can use: a timer (Effect's clock, Node's setTimeout) never fires
 * past 2^31 - 1 ms (about 24.8 days: such a sleep was silently never woken), and PostgreSQL's
 * statement_timeout and lock_timeout take no more.
 */
export const maxDuration: Duration.Duration = Duration.millis(2 ** 31 - 1)

/** The shortest heartbeat: below it one member alone keeps a database core busy. */
export const minHeartbeat: Duration.Duration = Duration.millis(10)

/**
 * `input` as a duration of at least `min` and at most `maxDuration`, else `InvalidConfig` naming
 * `field` (`fallback` when undefined). For the library's other duration options too (`Fenced`).
 *
 * @internal
 */
export const decodeDuration = (
  field: string,
  input: Duration.DurationInput | undefined,
  fallback: Duration.Duration,
  min: Duration.Duration = Duration.millis(1),
  max: Duration.Duration = maxDuration
) =>
  Effect.suspend(() => {
    if (input === undefined) return Effect.succeed(fallback)
    const decoded = Option.fromNullable(safeDecode(input))
    return Option.match(decoded, {
      onNone: () => Effect.fail(new InvalidConfig({ field, reason: `${String(input)} is not a duration` })),
      onSome: (d) =>
        !Duration.isFinite(d)
          ? Effect.fail(new InvalidConfig({ field, reason: "it must be finite" }))
          : Duration.toMillis(d) <= 0
          ? Effect.fail(new InvalidConfig({ field, reason: "it must be greater than zero" }))
          : Duration.lessThan(d, min)
          ? Effect.fail(new InvalidConfig({ field, reason: `${Duration.format(d)} is shorter than ${Duration.format(min)}` }))
          : Duration.greaterThan(d, max)
          ? Effect.fail(
            new InvalidConfig({
              field,
              reason: `${Duration.format(d)} is longer than ${Duration.format(max)} (the longest a timer and ` +
                "PostgreSQL's statement_timeout can wait" + (max === maxDuration ? ")" : ", less the server's backstop slack)")
            })
          )
          : Effect.succeed(d)
    })
  })

const safeDecode = (input: Duration.DurationInput): Duration.Duration | undefined => {
  try {
    const d = Duration.decode(input)
    // Duration.decode maps NaN to zero; reject it explicitly.
    if (typeof input === "number" && !Number.isFinite(input) && !Number.isNaN(input)) return d
    if (typeof input === "number" && Number.isNaN(input)) return undefined
    return d
  } catch {
    return undefined
  }
}

const ms = Duration.toMillis

/**
 * Checks an instance id (the rules of group ids) and returns it in Unicode NFC: one instance, one id,
 * whatever normal form the environment hands over.
 *
 * @since 0.1.0
 * @category validation
 */
export const validateInstanceId = (instanceId: string | undefined): Effect.Effect<string | undefined, InvalidConfig> =>
  instanceId === undefined
    ? Effect.succeed(undefined)
    : validateGroupId(instanceId).pipe(
      Effect.mapError((e) => new InvalidConfig({ field: "instanceId", reason: e.reason }))
    )

// A postgres:// URL, kept redacted; messages never show it (it may carry a password).
const validateListenUrl = (
  input: string | Redacted.Redacted<string> | undefined
): Effect.Effect<Redacted.Redacted<string> | undefined, InvalidConfig> =>
  Effect.suspend(() => {
    if (input === undefined) return Effect.succeed(undefined)
    const text = Redacted.isRedacted(input) ? Redacted.value(input) : input
    const bad = (reason: string) => Effect.fail(new InvalidConfig({ field: "listenUrl", reason }))
    if (typeof text !== "string") return bad("it must be a string")
    let url: URL
    try {
      url = new URL(text)
    } catch {
      return bad("it is not a URL (expected postgres://user:password@host:port/database)")
    }
    if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
      return bad("it must start with postgres:// or postgresql://")
    }
    return Effect.succeed(Redacted.isRedacted(input) ? input : Redacted.make(text))
  })

/**
 * Validates input and fills in defaults.
 *
 * @since 0.1.0
 * @category validation
 */
export const make = (input: MembershipConfigInput): Effect.Effect<ResolvedConfig, InvalidConfig | InvalidGroupId> =>
  Effect.gen(function*() {
    const groupId = yield* validateGroupId(input.groupId)
    const heartbeat = yield* decodeDuration("heartbeat", input.heartbeat, defaults.heartbeat, minHeartbeat)
    const lease = yield* decodeDuration("lease", input.lease, defaults.lease)
    const fenceMargin = yield* decodeDuration("fenceMargin", input.fenceMargin, defaults.fenceMargin)
    const statementTimeout = yield* decodeDuration("statementTimeout", input.statementTimeout, defaults.statementTimeout)
    const stopTimeout = yield* decodeDuration("stopTimeout", input.stopTimeout, defaults.stopTimeout)
    const startupTimeout = yield* decodeDuration("startupTimeout", input.startupTimeout, defaults.startupTimeout)
    const barrierPoll = yield* decodeDuration("barrierPoll", input.barrierPoll, defaults.barrierPoll)
    // One renewal may be late by a statement timeout without the member fencing itself
    // (checked first: with no slack left, the renewal window's own check would hide this rule).
    if (ms(lease) <= ms(heartbeat) + ms(fenceMargin) + ms(statementTimeout)) {
      return yield* new InvalidConfig({
        field: "lease",
        reason: `lease (${Duration.format(lease)}) must exceed heartbeat (${Duration.format(heartbeat)}) + fenceMargin (${
          Duration.format(fenceMargin)
        }) + statementTimeout (${Duration.format(statementTimeout)})`
      })
    }
    // A floating renewal's deadline counts from when it was asked for, up to the window before it was
    // sent: the window comes out of the slack above. Zero is allowed (off).
    const slack = ms(lease) - ms(heartbeat) - ms(fenceMargin) - ms(statementTimeout)
    const window = input.renewalWindow === undefined
      ? Duration.millis(renewalWindowMs({ heartbeat, lease, fenceMargin, statementTimeout, renewalWindow: undefined }))
      : safeDecode(input.renewalWindow)
    const raw = input.renewalWindow
    const negative = (typeof raw === "number" && raw < 0) || (typeof raw === "string" && raw.trim().startsWith("-"))
    if (window === undefined || negative || !Duration.isFinite(window) || ms(window) < 0) {
      return yield* new InvalidConfig({ field: "renewalWindow", reason: `${String(input.renewalWindow)} is not a finite duration` })
    }
    const renewalWindow = input.renewalWindow === undefined ? undefined : window
    if (ms(window) >= ms(heartbeat)) {
      return yield* new InvalidConfig({
        field: "renewalWindow",
        reason: `renewalWindow (${Duration.format(window)}) must be below heartbeat (${Duration.format(heartbeat)})`
      })
    }
    if (ms(window) >= slack) {
      return yield* new InvalidConfig({
        field: "renewalWindow",
        reason: `lease (${Duration.format(lease)}) must exceed heartbeat + fenceMargin + statementTimeout + renewalWindow (${
          Duration.format(window)
        })`
      })
    }
    const listenUrl = yield* validateListenUrl(input.listenUrl)
    const instanceId = yield* validateInstanceId(input.instanceId)
    const rejoinGrace = yield* decodeDuration("rejoinGrace", input.rejoinGrace, defaults.rejoinGrace)
    if (ms(rejoinGrace) > ms(maxRejoinGrace)) {
      return yield* new InvalidConfig({
        field: "rejoinGrace",
        reason: `${Duration.format(rejoinGrace)} is longer than ${Duration.format(maxRejoinGrace)}: a held row's slice is not served`
      })
    }
    const slots = input.slots
    if (slots !== undefined) {
      if (typeof slots !== "number" || !Number.isSafeInteger(slots) || slots < 1 || slots > 16_384) {
        return yield* new InvalidConfig({
          field: "slots",
          reason: `the slot count must be an integer from 1 to 16384, got ${JSON.stringify(slots) ?? String(slots)}`
        })
      }
      if (instanceId !== undefined) {
        return yield* new InvalidConfig({
          field: "slots",
          reason: "slots mode does not support static membership (instanceId) yet"
        })
      }
    }
    const identity = yield* MemberIdentity
    const name = input.name ?? `${identity.host}:${identity.pid}`
    if (characters(name) > 200 || controlChars.test(name)) {
      return yield* new InvalidConfig({ field: "name", reason: "at most 200 characters, no control characters" })
    }
    return {
      groupId,
      name,
      heartbeat,
      lease,
      fenceMargin,
      statementTimeout,
      stopTimeout,
      startupTimeout,
      barrierPoll,
      renewalWindow,
      notifications: input.notifications ?? defaults.notifications,
      migrate: input.migrate ?? defaults.migrate,
      listenUrl,
      logStateChanges: input.logStateChanges ?? defaults.logStateChanges,
      instanceId,
      rejoinGrace,
      slots
    }
  })

const envConfig = (groupId: Config.Config<string>): Config.Config<MembershipConfigInput> =>
  Config.nested(
    Config.all({
      groupId: groupId.pipe(Config.withDescription("The group to join")),
      name: Config.string("NAME").pipe(Config.withDescription("Name shown by status"), Config.option, Config.map(Option.getOrUndefined)),
      heartbeat: Config.duration("HEARTBEAT").pipe(Config.withDefault(defaults.heartbeat), Config.withDescription("Lease renewal interval")),
      lease: Config.duration("LEASE").pipe(Config.withDefault(defaults.lease), Config.withDescription("Lease length on the database clock")),
      fenceMargin: Config.duration("FENCE_MARGIN").pipe(Config.withDefault(defaults.fenceMargin), Config.withDescription("Self-fence this long before the lease can expire")),
      statementTimeout: Config.duration("STATEMENT_TIMEOUT").pipe(Config.withDefault(defaults.statementTimeout), Config.withDescription("Timeout of every database call")),
      stopTimeout: Config.duration("STOP_TIMEOUT").pipe(Config.withDefault(defaults.stopTimeout), Config.withDescription("Bound on stopping work at a renegotiation")),
      notifications: Config.boolean("NOTIFICATIONS").pipe(Config.withDefault(defaults.notifications), Config.withDescription("Use LISTEN/NOTIFY as a wake-up")),
      migrate: Config.boolean("MIGRATE").pipe(Config.withDefault(defaults.migrate), Config.withDescription("Apply pending migrations at start")),
      startupTimeout: Config.duration("STARTUP_TIMEOUT").pipe(Config.withDefault(defaults.startupTimeout), Config.withDescription("How long to wait for the database at start")),
      barrierPoll: Config.duration("BARRIER_POLL").pipe(Config.withDefault(defaults.barrierPoll), Config.withDescription("First delay of the fast poll at the barrier")),
      renewalWindow: Config.duration("RENEWAL_WINDOW").pipe(Config.withDescription("How much of a heartbeat a periodic renewal may float to share a statement (default: half the heartbeat; 0: off)"), Config.option, Config.map(Option.getOrUndefined)),
      listenUrl: Config.redacted("LISTEN_URL").pipe(Config.withDescription("URL of the LISTEN connection (a direct one behind a transaction-mode pooler)"), Config.option, Config.map(Option.getOrUndefined)),
      logStateChanges: Config.boolean("LOG_STATE_CHANGES").pipe(Config.withDefault(defaults.logStateChanges), Config.withDescription("Log every state change at INFO")),
      instanceId: Config.string("INSTANCE_ID").pipe(Config.withDescription("Static membership: this member's stable identity in its group"), Config.option, Config.map(Option.getOrUndefined)),
      rejoinGrace: Config.duration("REJOIN_GRACE").pipe(Config.withDefault(defaults.rejoinGrace), Config.withDescription("Static membership: how long a released or expired row is held for its instance")),
      slots: Config.integer("SLOTS").pipe(Config.withDescription("Slots mode: the group's slot count (1..16384)"), Config.option, Config.map(Option.getOrUndefined))
    }),
    "MODULO_GROUP"
  )

/**
 * Reads the input from the environment: `MODULO_GROUP_GROUP_ID`, `MODULO_GROUP_HEARTBEAT` ("1 second"),
 * `MODULO_GROUP_LEASE`, `MODULO_GROUP_FENCE_MARGIN`, `MODULO_GROUP_STATEMENT_TIMEOUT`,
 * `MODULO_GROUP_STOP_TIMEOUT`, `MODULO_GROUP_NOTIFICATIONS`, `MODULO_GROUP_MIGRATE`, `MODULO_GROUP_NAME`,
 * `MODULO_GROUP_STARTUP_TIMEOUT`, `MODULO_GROUP_BARRIER_POLL`, `MODULO_GROUP_RENEWAL_WINDOW`, `MODULO_GROUP_LISTEN_URL`,
 * `MODULO_GROUP_LOG_STATE_CHANGES`, `MODULO_GROUP_INSTANCE_ID`, `MODULO_GROUP_REJOIN_GRACE`,
 * `MODULO_GROUP_SLOTS`.
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<MembershipConfigInput> = envConfig(Config.string("GROUP_ID"))

/**
 * Reads the input from the environment (`config`), then applies `overrides` (fields left
 * `undefined` keep the environment's value; a `groupId` here makes `MODULO_GROUP_GROUP_ID` optional).
 * A variable that cannot be read fails with `InvalidConfig`.
 *
 * @since 0.1.0
 * @category config
 */
export const fromEnv = (
  overrides: Partial<MembershipConfigInput> = {}
): Effect.Effect<ResolvedConfig, InvalidConfig | InvalidGroupId> =>
  Effect.gen(function*() {
    const source = overrides.groupId === undefined
      ? config
      : envConfig(Config.string("GROUP_ID").pipe(Config.withDefault(overrides.groupId)))
    const env = yield* Effect.mapError(
      source,
      (error) => new InvalidConfig({ field: "environment", reason: String(error) })
    )
    const defined = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined))
    return yield* make({ ...env, ...defined })
  })

/**
 * The config service from `input`, validated.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (input: MembershipConfigInput): Layer.Layer<MembershipConfig, InvalidConfig | InvalidGroupId> =>
  Layer.effect(MembershipConfig, make(input))

/**
 * The config service from the environment (`MODULO_GROUP_*`, see `config`), with `overrides`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFromEnv = (
  overrides: Partial<MembershipConfigInput> = {}
): Layer.Layer<MembershipConfig, InvalidConfig | InvalidGroupId> => Layer.effect(MembershipConfig, fromEnv(overrides))
