/**
 * A member process of the demo, the hidden `modulo-group demo-member <spec>`: one `Membership`,
 * and a `Work.runEvery` loop that drains a batch of its own items per tick through the ledger
 * (`Ledger.drainBatch`, a fenced transaction). It prints JSON Lines for the supervisor to read:
 * its state changes, and every fenced transaction that did not commit.
 *
 * Slots mode (`slots` in the spec): `Membership.whileOwning` keeps the set of slots the member works
 * (a `slot` line when one starts and when one stops), and a loop drains, every interval, a batch of
 * the items of that set (`Ledger.drainSlots`, fenced with those slots at their generations). A
 * slot's stop waits for the batch in flight, so no batch runs on a slot once its stop is printed
 * (and the library releases the slot only after that).
 *
 * @since 0.1.0
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { Membership, MembershipConfig, type MemberState, PgMembership, Work } from "modulo-group"
import { describe, ExitCodes, fail, report, withLogging } from "../CliError.js"
import * as Database from "../Database.js"
import * as Events from "../Events.js"
import * as Ledger from "./ledger.js"

/**
 * The hidden command a member process runs: `modulo-group demo-member <spec as JSON> [--verbose]`.
 *
 * @since 0.1.0
 * @internal
 */
export const memberCommand = "demo-member"

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
  standby: Schema.Boolean,
  /** Slots mode with this many slots; modulo mode when absent. */
  slots: Schema.optional(Schema.Int.pipe(Schema.positive()))
})

/**
 * What the supervisor tells a member process.
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
  | {
    readonly ts: string
    readonly name: string
    readonly event: "slot"
    readonly action: "start" | "stop"
    readonly slot: number
    readonly generation: number
  }

const writeLine = (value: unknown) => {
  process.stdout.write(`${JSON.stringify(value)}\n`)
}

/** A batch's transaction that did not commit: reported as a `stale` or `aborted` line, not fatal. */
const reportFailure = <A, E extends { readonly _tag: string }, R>(
  spec: MemberSpec,
  epoch: number,
  batch: Effect.Effect<A, E, R>
) =>
  batch.pipe(
    Effect.catchAll((error) =>
      Effect.sync(() =>
        writeLine({
          ts: new Date().toISOString(),
          name: spec.name,
          event: error._tag === "StaleAssignment" ? "stale" : "aborted",
          epoch,
          reason: error._tag === "StaleAssignment" && "reason" in error
            ? String(error.reason)
            : `${error._tag}: ${describe(error)}`
        })
      )
    )
  )

/** One tick: a batch through the ledger. */
const drainBatch = (spec: MemberSpec, tick: Work.Tick) =>
  reportFailure(spec, tick.epoch, Ledger.drainBatch(spec.run, spec.name, spec.batch, tick))

/** Slots mode, one tick: a batch of the items of the slots worked now. */
const drainSlots = (spec: MemberSpec, owned: MemberState.OwnedSlots, epoch: number) =>
  reportFailure(spec, epoch, Ledger.drainSlots(spec.run, spec.name, spec.batch, owned, epoch))

/**
 * Slots mode: `whileOwning` keeps `working` (slot -> its `OwnedSlot`) and prints a `slot` line per
 * start and stop; one loop drains a batch over the slots in `working` every interval. The lock makes
 * a stop wait for the batch in flight.
 */
const workSlots = (spec: MemberSpec, m: Membership.MembershipService, epochNow: () => number) =>
  Effect.gen(function*() {
    const working = new Map<number, MemberState.OwnedSlot>()
    const lock = yield* Effect.makeSemaphore(1)
    const slotLine = (action: "start" | "stop", owned: MemberState.OwnedSlot) =>
      writeLine({ ts: new Date().toISOString(), name: spec.name, event: "slot", action, slot: owned.slot, generation: owned.generation })
    yield* m.whileOwning((owned) =>
      Effect.acquireRelease(
        lock.withPermits(1)(Effect.sync(() => {
          working.set(owned.slot, owned)
          slotLine("start", owned)
        })),
        () =>
          lock.withPermits(1)(Effect.sync(() => {
            working.delete(owned.slot)
            slotLine("stop", owned)
          }))
      ).pipe(Effect.zipRight(Effect.never))
    )
    const tick = lock.withPermits(1)(Effect.suspend(() => {
      if (working.size === 0) return Effect.void
      const list = [...working.values()].sort((a, b) => a.slot - b.slot)
      const owned: MemberState.OwnedSlots = {
        slots: list.map((o) => o.slot),
        generations: list.map((o) => o.generation),
        count: list[0]!.count
      }
      return drainSlots(spec, owned, epochNow())
    }))
    yield* tick.pipe(
      Effect.repeat(Schedule.spaced(Duration.millis(spec.intervalMs))),
      Effect.provideService(Membership.Membership, m),
      Effect.forkScoped
    )
  })

/**
 * Reads the supervisor's stdin: `join` lines wake a standby member; the end of the stream (the
 * supervisor is gone, even by SIGKILL) makes the member leave the group, as SIGTERM does.
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
    const input: MembershipConfig.MembershipConfigInput = {
      groupId: Ledger.groupOf(spec.run),
      name: spec.name,
      heartbeat: Duration.millis(spec.heartbeatMs),
      lease: Duration.millis(spec.leaseMs),
      fenceMargin: Duration.millis(spec.fenceMarginMs),
      statementTimeout: Duration.millis(spec.statementTimeoutMs),
      startupTimeout: Duration.seconds(10),
      slots: spec.slots
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
      let epoch = 0
      yield* m.changes.pipe(
        Stream.runForEach((state) =>
          Effect.sync(() => {
            if ("epoch" in state) epoch = state.epoch
            writeLine({ ...Events.stateEvent(m.memberId, group, state, new Date()), name: spec.name })
          })
        ),
        Effect.forkScoped
      )
      if (spec.slots !== undefined) {
        yield* workSlots(spec, m, () => epoch)
        return yield* Effect.never
      }
      const interval = Duration.millis(spec.intervalMs)
      yield* Work.runEvery(interval, (tick) => drainBatch(spec, tick), { modulo: interval }).pipe(
        Effect.provideService(Membership.Membership, m)
      )
      return yield* Effect.never
    })).pipe(
      Effect.provide(
        PgMembership.layerStore({ migrate: true, startupTimeout: Duration.seconds(10), statementTimeout: config.statementTimeout })
      ),
      Effect.provide(Database.layer(database.url))
    )
  }).pipe(Effect.provide(PgMembership.nodeIdentity))

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
