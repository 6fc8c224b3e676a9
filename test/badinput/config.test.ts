/**
 * Bad-input catalogue: configuration. Every unusable duration is refused with `InvalidConfig` naming
 * the field, before any database call, through every entry point: `MembershipConfig.make`,
 * `Membership.make`, `PgMembership.layer` and `PgMembership.layerFromEnv` (environment variables).
 */
import { expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Layer } from "effect"
import * as Membership from "../../src/Membership.js"
import * as PgMembership from "../../src/PgMembership.js"
import type { MembershipConfigInput } from "../../src/MembershipConfig.js"
import * as MembershipConfig from "../../src/MembershipConfig.js"
import { MembershipStore } from "../../src/MembershipStore.js"

const ok = { groupId: "g", heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const

/** A store that fails the test if anything touches it. */
const untouchable = new Proxy({}, {
  get: () => {
    throw new Error("the store was used")
  }
}) as never

const durationFields = ["heartbeat", "lease", "fenceMargin", "statementTimeout", "stopTimeout", "startupTimeout", "barrierPoll"] as const

const badDurations: ReadonlyArray<readonly [string, unknown, RegExp]> = [
  ["zero", 0, /greater than zero/],
  ["zero as text", "0 seconds", /greater than zero/],
  ["negative", -1_000, /greater than zero/],
  ["negative as text", "-5 seconds", /greater than zero/],
  ["NaN", Number.NaN, /not a duration/],
  ["NaN as text", "NaN seconds", /not a duration/],
  ["Infinity", Number.POSITIVE_INFINITY, /finite/],
  ["-Infinity", Number.NEGATIVE_INFINITY, /greater than zero/],
  ["unparsable text", "soon", /not a duration/],
  ["a number without a unit as text", "5", /not a duration/],
  ["an object", { seconds: 1 }, /not a duration/],
  // Below a millisecond (a heartbeat of 1 ns made one member 175 transactions a second).
  ["below a millisecond", "1 nanos", /shorter than/],
  // Longer than a timer can wait: such a sleep never fired (and the database refused the lease).
  ["longer than a timer can wait", "25 days", /longer than .*statement_timeout/],
  ["a lease of 10^20 days", "99999999999999999999 days", /longer than/]
]

for (const field of durationFields) {
  for (const [what, value, reason] of badDurations) {
    it.effect(`${field}: ${what} is refused`, () =>
      Effect.gen(function*() {
        const input = { ...ok, [field]: value } as MembershipConfigInput
        const error = yield* Effect.flip(MembershipConfig.make(input))
        expect(error._tag).toBe("InvalidConfig")
        if (error._tag !== "InvalidConfig") return
        expect(error.field).toBe(field)
        expect(error.message).toMatch(reason)
        expect(error.message).toContain(`"${field}"`)
        // Membership.make refuses it too, without touching the store.
        const viaMake = yield* Effect.flip(
          Effect.scoped(Membership.make(input)).pipe(Effect.provideService(MembershipStore, untouchable))
        )
        expect(viaMake._tag).toBe("InvalidConfig")
      }))
  }
}

it.effect("a heartbeat below 10 ms is refused; 10 ms is accepted; the longest duration is accepted", () =>
  Effect.gen(function*() {
    const short = yield* Effect.flip(MembershipConfig.make({ ...ok, heartbeat: "9 millis" }))
    expect(short).toMatchObject({ _tag: "InvalidConfig", field: "heartbeat" })
    expect(short.message).toMatch(/shorter than 10ms/)
    yield* MembershipConfig.make({ ...ok, heartbeat: "10 millis" })
    const longest = yield* MembershipConfig.make({ ...ok, stopTimeout: MembershipConfig.maxDuration })
    expect(Duration.toMillis(longest.stopTimeout)).toBe(2 ** 31 - 1)
  }))

const tooShort: ReadonlyArray<readonly [string, Partial<MembershipConfigInput>]> = [
  ["lease equal to heartbeat", { heartbeat: "2 seconds", lease: "2 seconds" }],
  ["lease below heartbeat", { heartbeat: "5 seconds", lease: "2 seconds" }],
  ["lease equal to heartbeat + margin + statement timeout", { lease: "1700 millis" }],
  ["fence margin longer than the lease", { fenceMargin: "3 seconds" }],
  ["statement timeout longer than the lease", { statementTimeout: "10 seconds" }],
  ["defaults but a 3 s lease", { heartbeat: undefined, fenceMargin: undefined, statementTimeout: undefined, lease: "3 seconds" }]
]

for (const [what, change] of tooShort) {
  it.effect(`${what} is refused, naming every term of the rule`, () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(MembershipConfig.make({ ...ok, ...change }))
      expect(error).toMatchObject({ _tag: "InvalidConfig", field: "lease" })
      expect(error.message).toMatch(/lease \(.+\) must exceed heartbeat \(.+\) \+ fenceMargin \(.+\) \+ statementTimeout \(.+\)/)
    }))
}

it.effect("the smallest valid lease is accepted: one millisecond above the rule", () =>
  Effect.gen(function*() {
    const config = yield* MembershipConfig.make({ ...ok, lease: "1701 millis" })
    expect(config.lease).toBeDefined()
  }))

it.effect("a name too long or with control characters is refused", () =>
  Effect.gen(function*() {
    for (const name of ["n".repeat(201), "line\nbreak", "bell\u0007"]) {
      const error = yield* Effect.flip(MembershipConfig.make({ ...ok, name }))
      expect(error).toMatchObject({ _tag: "InvalidConfig", field: "name" })
    }
  }))

it.effect("PgMembership.layer fails on bad config before it asks for a database connection", () =>
  Effect.gen(function*() {
    // No PgClient is provided at all: the layer must fail on the config, not on the missing client.
    const layer = PgMembership.layer({ ...ok, heartbeat: 0 }) as unknown as Layer.Layer<Membership.Membership, unknown>
    const error = yield* Effect.flip(Effect.scoped(Layer.build(layer)))
    expect(error).toMatchObject({ _tag: "InvalidConfig", field: "heartbeat" })
  }))

const fromEnv = (env: Record<string, string>) =>
  Effect.flip(Effect.scoped(Layer.build(PgMembership.layerFromEnv() as unknown as Layer.Layer<Membership.Membership, unknown>))).pipe(
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)), { pathDelim: "_" }))
  )

it.effect("from the environment: a zero, negative or NaN duration, and a short lease, are refused", () =>
  Effect.gen(function*() {
    const cases: ReadonlyArray<readonly [Record<string, string>, RegExp]> = [
      [{ MODULO_GROUP_GROUP_ID: "g", MODULO_GROUP_HEARTBEAT: "0 seconds" }, /heartbeat.*greater than zero/],
      [{ MODULO_GROUP_GROUP_ID: "g", MODULO_GROUP_LEASE: "-3 seconds" }, /lease.*greater than zero/],
      [{ MODULO_GROUP_GROUP_ID: "g", MODULO_GROUP_FENCE_MARGIN: "NaN seconds" }, /FENCE_MARGIN.*Expected a duration/],
      [{ MODULO_GROUP_GROUP_ID: "g", MODULO_GROUP_LEASE: "1 second" }, /lease \(1s\) must exceed/],
      [{ MODULO_GROUP_GROUP_ID: "" }, /group id "": it is empty/],
      [{}, /GROUP_ID/]
    ]
    for (const [env, reason] of cases) {
      const error = yield* fromEnv(env)
      // A ConfigError names the variable in its string form; the library's errors in their message.
      const text = error instanceof Error && "_tag" in error && error._tag !== "And" && error._tag !== "InvalidData"
        ? error.message
        : String(error)
      expect(text).toMatch(reason)
    }
  }))

it.effect("static membership: instanceId follows the group id rules (NFC), rejoinGrace is a positive duration of at most an hour", () =>
  Effect.gen(function*() {
    const resolved = yield* MembershipConfig.make(ok)
    expect(resolved.instanceId).toBeUndefined()
    expect(resolved.rejoinGrace).toEqual(MembershipConfig.defaults.rejoinGrace)
    const nfd = "w\u0065\u0301" // "wé" in NFD
    expect((yield* MembershipConfig.make({ ...ok, instanceId: nfd })).instanceId).toBe("w\u00e9")
    for (const [instanceId, reason] of [["", /empty/], ["  ", /whitespace/], ["a\u0000b", /control/], ["x".repeat(201), /at most 200/]] as const) {
      const error = yield* Effect.flip(MembershipConfig.make({ ...ok, instanceId }))
      expect(error._tag).toBe("InvalidConfig")
      expect(error.message).toMatch(/"instanceId"/)
      expect(error.message).toMatch(reason)
    }
    for (const [rejoinGrace, reason] of [[0, /greater than zero/], ["2 hours", /longer than 1h/], ["soon", /not a duration/]] as const) {
      const error = yield* Effect.flip(MembershipConfig.make({ ...ok, instanceId: "w1", rejoinGrace: rejoinGrace as Duration.DurationInput }))
      expect(error.message).toMatch(/"rejoinGrace"/)
      expect(error.message).toMatch(reason)
    }
    // From the environment.
    const env = new Map([["MODULO_GROUP_GROUP_ID", "g"], ["MODULO_GROUP_INSTANCE_ID", "pod-3"], ["MODULO_GROUP_REJOIN_GRACE", "45 seconds"]])
    const fromEnv = yield* MembershipConfig.fromEnv({ heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" }).pipe(
      Effect.withConfigProvider(ConfigProvider.fromMap(env, { pathDelim: "_" }))
    )
    expect(fromEnv.instanceId).toBe("pod-3")
    expect(fromEnv.rejoinGrace).toEqual(Duration.seconds(45))
  }))

it.effect("slots: a count that is not an integer from 1 to 16384 is refused, naming the value; 1 and 16384 are accepted", () =>
  Effect.gen(function*() {
    for (const slots of [0, -1, 16_385, 1.5, Number.NaN, Number.POSITIVE_INFINITY, "64" as unknown as number]) {
      const error = yield* Effect.flip(MembershipConfig.make({ ...ok, slots }))
      expect(error).toMatchObject({ _tag: "InvalidConfig", field: "slots" })
      expect(error.message).toMatch(/"slots": the slot count must be an integer from 1 to 16384, got /)
    }
    expect((yield* MembershipConfig.make({ ...ok, slots: 1 })).slots).toBe(1)
    expect((yield* MembershipConfig.make({ ...ok, slots: 16_384 })).slots).toBe(16_384)
    expect((yield* MembershipConfig.make(ok)).slots).toBeUndefined()
    const both = yield* Effect.flip(MembershipConfig.make({ ...ok, slots: 8, instanceId: "pod-0" }))
    expect(both).toMatchObject({ _tag: "InvalidConfig", field: "slots" })
  }))
