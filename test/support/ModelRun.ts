/**
 * Runs one fault schedule against the real interpreter (`Membership.make`) over the in-memory store,
 * on the deterministic runtime of `ModelSim`, and checks G1-G5 from the `ModelLog` and the store.
 *
 * The harness is plain synchronous code: it forks effects onto the simulated scheduler, drains it,
 * and advances the virtual clock one wake-up at a time. Between wake-ups every fiber has run until
 * it suspended, so the log is checked at every instant anything happens.
 */
import type { Scope } from "effect"
import { Cause, Effect, Exit, Fiber, FiberRef, HashSet, Logger, LogLevel, Option, PubSub, Scope as ScopeModule, Stream } from "effect"
import * as InMemoryMembershipStore from "../../src/InMemoryMembershipStore.js"
import * as Membership from "../../src/Membership.js"
import { StoreError } from "../../src/MembershipError.js"
import type { GroupView, MembershipStoreService, Wakeup } from "../../src/MembershipStore.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as State from "../../src/MemberState.js"
import { ModelLog } from "./ModelLog.js"
import type { Schedule, Step } from "./ModelSchedule.js"
import { formatSchedule, formatStep } from "./ModelSchedule.js"
import { memberLabel, SimClock, SimScheduler } from "./ModelSim.js"

/** Short timings keep each schedule cheap; their ratios are those of the defaults. */
export interface ModelConfig {
  readonly heartbeatMs: number
  readonly leaseMs: number
  readonly fenceMarginMs: number
  readonly statementTimeoutMs: number
  readonly stopTimeoutMs: number
  /** A working member does a unit of work (after `guard`) this often. */
  readonly unitMs: number
  /**
   * What the store makes of a mixed view (see the `MixedViews` step). `"whole"`: what the PostgreSQL
   * store does: when its own row is stamped with a newer epoch than the group it read, the view is
   * the row's epoch, size and index, with the barrier up. `"accepted"`: the old, broken store: the
   * mixed view as read (the old epoch and size, the new index, the old barrier). The mutation check
   * sets `MODEL_MIXED_VIEWS=accepted`; the model must catch it.
   */
  readonly mixedViews: "whole" | "accepted"
  /** A stranger's notification flood sends one this often. */
  readonly floodMs: number
  /** Static membership (`Schedule.statics`): how long a left or crashed member's row is held. */
  readonly rejoinGraceMs: number
}

export const defaultConfig: ModelConfig = {
  heartbeatMs: 100,
  leaseMs: 1000,
  fenceMarginMs: 200,
  statementTimeoutMs: 200,
  stopTimeoutMs: 200,
  unitMs: 250,
  mixedViews: process.env["MODEL_MIXED_VIEWS"] === "accepted" ? "accepted" : "whole",
  floodMs: 5,
  rejoinGraceMs: 500
}

/** `Schedule.longHeartbeat`: a heartbeat longer than the fence margin (lease 1 s > 400 + 100 + 200). */
export const longHeartbeatConfig: ModelConfig = { ...defaultConfig, heartbeatMs: 400, fenceMarginMs: 100 }

export interface ModelResult {
  readonly violations: ReadonlyArray<string>
  readonly trace: ReadonlyArray<string>
  readonly firstViolationLine: number | undefined
  readonly stats: {
    readonly virtualMs: number
    readonly wakes: number
    readonly tasks: number
    readonly starts: number
    readonly units: number
    readonly members: number
    /** The bound when the live members had converged by then (and stayed), else undefined. */
    readonly convergedAfterMs: number | undefined
    readonly bound: number
  }
}

const groupId = "model"

interface Member {
  readonly label: string
  readonly slot: number
  readonly service: Membership.MembershipService
  readonly scope: Scope.CloseableScope
  readonly wrap: <A, E>(effect: Effect.Effect<A, E, MembershipStore>) => Effect.Effect<A, E>
  status: "live" | "leaving" | "crashed"
  hung: boolean
  paused: boolean
  readonly rate: number
  /** Its work ignores interruption for `stubbornMs` each time it is stopped. */
  readonly flags: { stubborn: boolean; blocked: () => boolean }
}

/** A committed state of the group as a mixed view would read it. */
interface GroupState {
  readonly epoch: number
  readonly size: number
  /** Every row had acknowledged `epoch`. */
  readonly allAcked: boolean
  readonly expired: boolean
}

/** A small deterministic PRNG (mulberry32). */
const prng = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const messageText = (message: unknown): string =>
  Array.isArray(message) ? message.map((m) => (typeof m === "string" ? m : String(m))).join(" ") : String(message)

/** Runs `schedule`; never throws for a protocol violation (they are in `violations`). */
export const runSchedule = (
  schedule: Schedule,
  options: { readonly config?: ModelConfig; readonly trace?: boolean } = {}
): ModelResult => {
  const config = options.config ?? (schedule.longHeartbeat === true ? longHeartbeatConfig : defaultConfig)
  const sim = new SimScheduler()
  const clock = new SimClock()
  const db = clock.clock()
  const log = new ModelLog(() => clock.now, options.trace ?? true)
  const statics = schedule.statics === true
  if (statics) log.sameInstance = (a, b) => a.split("#")[0] === b.split("#")[0]
  const random = prng(schedule.seed)
  const latency = () => (schedule.latencyMs === 0 ? 0 : Math.floor(random() * (schedule.latencyMs + 1)))

  // --- running effects on the simulated runtime ------------------------------------------------
  const fork = <A, E>(effect: Effect.Effect<A, E>): Fiber.RuntimeFiber<A, E> => {
    const fiber = Effect.runFork(effect, { scheduler: sim })
    sim.drain()
    return fiber
  }
  const run = <A, E>(effect: Effect.Effect<A, E>): A => {
    const exit = fork(effect.pipe(Effect.withClock(db))).unsafePoll()
    if (exit === null) throw new Error("a harness effect did not complete without time passing")
    if (Exit.isFailure(exit)) throw Cause.squash(exit.cause)
    return exit.value
  }
  const advance = (ms: number) => clock.advanceTo(clock.now + ms, () => sim.drain())

  const { control, store: inner } = run(InMemoryMembershipStore.make)

  // --- mixed views: the group's state before the last change, and when that change committed ---
  let mixing = false
  let lastState: GroupState | undefined = undefined
  let beforeChange: { readonly state: GroupState; readonly at: number } | undefined = undefined
  const readState: Effect.Effect<GroupState | undefined> = Effect.all([inner.group(groupId), inner.members(groupId)]).pipe(
    Effect.map(([g, rows]) =>
      Option.isNone(g) ? undefined : {
        epoch: g.value.epoch,
        size: g.value.size,
        allAcked: rows.every((r) => r.ackedEpoch >= g.value.epoch),
        expired: rows.some((r) => r.leaseLeftMs <= 0)
      }
    ),
    Effect.orElseSucceed(() => undefined),
    Effect.withClock(db)
  )
  // After every store call while mixing is on: remember the state before each change.
  const recordState = Effect.suspend(() =>
    !mixing ? Effect.void : Effect.map(readState, (now) => {
      if (now === undefined) return
      if (lastState !== undefined && now.epoch > lastState.epoch) beforeChange = { state: lastState, at: clock.now }
      lastState = now
    })
  )
  /**
   * A heartbeat whose statement started before the last change and waited on its row lock (within a
   * statement timeout of the change): its own row is new, the group's part is from before the change.
   */
  const mixed = (label: string, view: GroupView): GroupView => {
    const before = beforeChange
    if (!mixing || before === undefined || view.epoch <= before.state.epoch) return view
    if (clock.now - before.at > config.statementTimeoutMs) return view
    const old = before.state
    if (config.mixedViews === "accepted") {
      log.note(`store: ${label}'s heartbeat read a mixed view and returned it: epoch ${old.epoch} size ${old.size} with its new index ${view.index}`)
      return { ...view, epoch: old.epoch, size: old.size, allAcked: old.allAcked && view.acked >= old.epoch, expired: old.expired }
    }
    // The row is stamped with a newer epoch than the group read: epoch, size and index from the row
    // (in this store every change stamps every row with the new epoch and size), barrier up.
    log.note(`store: ${label}'s heartbeat read a mixed view: its row's epoch ${view.epoch}, barrier up`)
    return { ...view, allAcked: false, expired: false }
  }

  // --- forged notifications: anyone who can connect can notify the group's channel -------------
  const forged = run(PubSub.sliding<Wakeup>(16))
  let flood: Fiber.RuntimeFiber<never> | undefined = undefined
  let slowJoins = false
  const stopFlood = () => {
    if (flood !== undefined) run(Fiber.interrupt(flood))
    flood = undefined
  }

  // --- the store as the members see it: the database's clock, latency, timeouts ---------------
  const storeFor = (label: string): MembershipStoreService => {
    const call = <A>(operation: string, body: Effect.Effect<A, StoreError>, done: (a: A, now: number) => void) =>
      Effect.suspend(() => {
        const request = latency()
        // A join while `SlowJoins` is on: applied at once, its reply between a heartbeat and the lease
        // deadline later, past the client's timeout (a rider waits for its turn unbounded by the
        // statement timeout); later than that, the reply starts nothing (it is past the deadline).
        const slow = operation === "join" && slowJoins
        const validMs = config.leaseMs - config.fenceMarginMs
        const reply = slow ? config.heartbeatMs + Math.floor(random() * (validMs - config.heartbeatMs)) : latency()
        // What happens on the "server": on the database clock, not paused with the member's process.
        const server = (request > 0 ? Effect.sleep(request) : Effect.void).pipe(
          Effect.zipRight(body),
          Effect.tap((a) => Effect.sync(() => done(a, Math.floor(clock.now)))),
          Effect.zipLeft(recordState),
          Effect.zipLeft(reply > 0 ? Effect.sleep(reply) : Effect.void),
          Effect.withClock(db),
          Effect.locally(memberLabel, undefined)
        )
        if (!schedule.timeouts || slow) return Effect.zipLeft(server, Effect.yieldNow())
        // Like the PostgreSQL store: the client gives up after the statement timeout, while the
        // statement itself may still commit later.
        return Effect.forkDaemon(server).pipe(
          Effect.flatMap((f) =>
            Fiber.join(f).pipe(
              Effect.timeoutFail({
                duration: config.statementTimeoutMs,
                onTimeout: () => new StoreError({ operation, reason: `timed out after ${config.statementTimeoutMs} ms` })
              })
            )
          )
        )
      })
    return {
      join: (g, member, leaseMs, statics) =>
        Effect.suspend(() => {
          log.labels.set(member.memberId, label)
          return call("join", inner.join(g, member, leaseMs, statics), (view, now) => {
            log.leased(member.memberId, now + leaseMs)
            log.seat(label, view.epoch, view.index, view.size, "join reply")
            log.note(
              `store: ${label} ${view.takenOver === true ? "took over its instance's row" : "joined"}: ` +
                `epoch ${view.epoch} index ${view.index}/${view.size}`
            )
          })
        }),
      heartbeat: (g, memberId, ack, leaseMs, announce) =>
        call("heartbeat", Effect.map(inner.heartbeat(g, memberId, ack, leaseMs, announce), Option.map((v) => mixed(label, v))), (view, now) => {
          if (Option.isSome(view)) {
            log.leased(memberId, now + leaseMs)
            log.seat(label, view.value.epoch, view.value.index, view.value.size, "heartbeat reply")
          } else {
            log.unleased(memberId)
            log.note(`store: ${label}'s heartbeat found no live row`)
          }
        }),
      reap: (g) =>
        call("reap", inner.reap(g), (n) => {
          if (n > 0) log.note(`store: ${label} reaped ${n} expired member(s)`)
        }),
      leave: (g, memberId) =>
        call("leave", inner.leave(g, memberId), (had) => {
          log.unleased(memberId)
          if (had) log.note(`store: ${label} left`)
        }),
      release: (g, memberId) =>
        call("release", inner.release(g, memberId), (had) => {
          log.unleased(memberId)
          if (had) log.note(`store: ${label} released`)
        }),
      // Waiter rows are for `status` only: no protocol state, nothing to log.
      wait: (g, member, instanceId, leaseMs) => Effect.withClock(inner.wait(g, member, instanceId, leaseMs), db),
      stopWaiting: (g, memberId) => Effect.withClock(inner.stopWaiting(g, memberId), db),
      waiters: (g) => Effect.withClock(inner.waiters(g), db),
      // Slots mode is not modelled here (test/slots/ has its own model).
      releaseSlots: (g, memberId, stopped) => Effect.withClock(inner.releaseSlots(g, memberId, stopped), db),
      retakeSlot: (g, memberId, slot, generation) => Effect.withClock(inner.retakeSlot(g, memberId, slot, generation), db),
      slotRows: (g) => Effect.withClock(inner.slotRows(g), db),
      wakeups: (g) => Effect.map(inner.wakeups(g), (s) => Stream.merge(s, Stream.fromPubSub(forged))),
      group: (g) => Effect.withClock(inner.group(g), db),
      members: (g) => Effect.withClock(inner.members(g), db),
      groups: Effect.withClock(inner.groups, db)
    }
  }

  // --- members ------------------------------------------------------------------------------
  const members: Array<Member> = []
  const bySlot = new Map<number, Member>()
  const generations = new Map<number, number>()

  // State changes reach the trace through the interpreter's own debug log ("state: ..."): a
  // subscriber fiber per member would cost more than the rest of the member.
  const loggerFor = (label: string) =>
    Logger.make(({ logLevel, message }) => {
      const text = messageText(message)
      if (LogLevel.lessThan(logLevel, LogLevel.Warning)) {
        if (text.startsWith("state: ")) log.note(`${label}: ${text.slice(7)}`)
        return
      }
      log.note(`${label} logs ${logLevel.label}: ${text}`)
      if (/ died/.test(text)) log.violation("defect", `${label}: ${text}`)
      // The store's views are consistent here: a refusal means one was not (G1 as the member saw it).
      if (/refusing the view/.test(text)) log.violation("G1", `${label} was sent a view that contradicts its slot: ${text}`)
    })

  const join = (step: Extract<Step, { _tag: "Join" }>) => {
    const current = bySlot.get(step.slot)
    if (current !== undefined && current.status === "live") return false
    const generation = (generations.get(step.slot) ?? 0) + 1
    generations.set(step.slot, generation)
    const label = `m${step.slot}${generation > 1 ? `#${generation}` : ""}`
    const memberClock = clock.clock({ offset: step.offset, rate: step.rate })
    const store = storeFor(label)
    const logger = loggerFor(label)
    const flags = { stubborn: false, blocked: () => false }
    const wrap = <A, E>(effect: Effect.Effect<A, E, MembershipStore>): Effect.Effect<A, E> =>
      effect.pipe(
        Effect.provideService(MembershipStore, store),
        Effect.withClock(memberClock),
        Effect.locally(memberLabel, label),
        Effect.locallyWith(FiberRef.currentLoggers, () => HashSet.make(logger)),
        Effect.locally(FiberRef.currentMinimumLogLevel, LogLevel.Debug)
      )
    const started = run(wrap(Effect.gen(function*() {
      const scope = yield* ScopeModule.make()
      const service = yield* Membership.make({
        groupId,
        name: label,
        heartbeat: config.heartbeatMs,
        lease: config.leaseMs,
        fenceMargin: config.fenceMarginMs,
        statementTimeout: config.statementTimeoutMs,
        stopTimeout: config.stopTimeoutMs,
        ...(statics ? { instanceId: `m${step.slot}`, rejoinGrace: config.rejoinGraceMs } : {})
      }).pipe(ScopeModule.extend(scope))
      log.labels.set(service.memberId, label)
      yield* service.whileAssigned((a) =>
        Effect.acquireRelease(
          Effect.sync(() => log.start(label, service.memberId, a.epoch, a.index, a.size)),
          // Work that will not stop: the release (uninterruptible) takes 3 x stopTimeout.
          () =>
            Effect.suspend(() =>
              flags.stubborn
                ? Effect.sync(() => {
                  log.note(`${label}'s work ignores the interruption for ${stubbornMs} ms`)
                  if (flags.blocked()) log.taint(label, "its work will not stop and it cannot renew")
                }).pipe(
                  Effect.zipRight(Effect.sleep(stubbornMs)),
                  Effect.zipRight(Effect.sync(() => log.end(label)))
                )
                : Effect.sync(() => log.end(label))
            )
        ).pipe(
          Effect.zipRight(
            Effect.forever(
              Effect.zipRight(
                Effect.flatMap(Effect.either(service.guard), (g) =>
                  Effect.sync(() => {
                    if (g._tag === "Right") log.unit(label, a.epoch, g.right.epoch)
                  })),
                Effect.sleep(config.unitMs)
              )
            )
          ),
          Effect.scoped
        )
      ).pipe(ScopeModule.extend(scope))
      return { service, scope }
    })))
    const member: Member = { label, slot: step.slot, ...started, wrap, status: "live", hung: false, paused: false, rate: step.rate, flags }
    flags.blocked = () => member.hung || member.paused || outage
    members.push(member)
    bySlot.set(step.slot, member)
    return true
  }

  const applyStep = (step: Step): boolean => {
    const m = "slot" in step ? bySlot.get(step.slot) : undefined
    switch (step._tag) {
      case "Join":
        return join(step)
      case "Leave":
        if (m === undefined || m.status !== "live") return false
        m.status = "leaving"
        closes.push({
          member: m,
          since: clock.now,
          paused: m.paused,
          reported: false,
          fiber: fork(m.wrap(ScopeModule.close(m.scope, Exit.void)))
        })
        return true
      case "Crash":
        if (m === undefined || m.status !== "live") return false
        m.status = "crashed"
        cannotRenew(m, "crashed")
        if (!m.hung) run(control.hang(m.service.memberId))
        m.hung = true
        return true
      case "Hang":
        if (m === undefined || m.hung) return false
        run(control.hang(m.service.memberId))
        m.hung = true
        cannotRenew(m, "its store calls hang")
        return true
      case "Resume":
        if (m === undefined || !m.hung || m.status === "crashed") return false
        run(control.resume(m.service.memberId))
        m.hung = false
        return true
      case "Pause":
        if (m === undefined || m.paused) return false
        sim.pause(m.label)
        log.paused(m.label)
        cannotRenew(m, "paused")
        m.paused = true
        for (const c of closes) if (c.member === m) c.paused = true
        return true
      case "Continue":
        if (m === undefined || !m.paused) return false
        sim.resume(m.label)
        sim.drain()
        m.paused = false
        return true
      case "Outage":
        run(control.setOutage(step.on))
        outage = step.on
        if (step.on) for (const x of members) cannotRenew(x, "store outage")
        return true
      case "MixedViews":
        mixing = step.on
        lastState = undefined
        beforeChange = undefined
        if (step.on) lastState = run(readState)
        return true
      case "Forge": {
        // Payloads that claim the current epoch, its barrier, the next and the previous ones, as a
        // PostgreSQL store hands them over (a notification arrived: its listener is up, so members
        // then rely on notifications and poll the barrier slowly, even while the model drops the
        // real ones). The member reads a payload only to skip a wake-up or an announcement: none
        // of them may decide anything.
        const e = run(readState)?.epoch ?? 0
        const payloads = [undefined, `${e}`, `${e}:ready`, `${e + 1}`, `${e + 1}:ready`, `${Math.max(0, e - 1)}:ready`, "reap"]
        run(PubSub.publishAll(forged, Array.from({ length: step.count }, (_, i): Wakeup => ({
          payload: payloads[i % payloads.length],
          listening: true
        }))))
        return true
      }
      case "Flood":
        if (step.on === (flood !== undefined)) return false
        if (step.on) {
          flood = fork(
            Effect.forever(Effect.zipRight(Effect.sleep(config.floodMs), PubSub.publish(forged, {}))).pipe(Effect.withClock(db))
          )
        } else stopFlood()
        return true
      case "Stubborn":
        if (m === undefined || m.status !== "live" || m.flags.stubborn) return false
        m.flags.stubborn = true
        if (m.hung || outage) cannotRenew(m, "its store calls fail")
        return true
      case "LoseNotifications":
        run(control.setDropNotifications(step.on))
        return true
      case "SlowJoins":
        slowJoins = step.on
        return true
      case "Advance":
        advance(step.ms)
        return true
    }
  }

  // Work that will not stop, of a member that cannot renew: its lease may lapse with the work still
  // running, which no protocol can prevent. Its open work is exempt from the interval checks.
  const stubbornMs = 3 * config.stopTimeoutMs
  function cannotRenew(m: Member, why: string) {
    if (m.flags.stubborn) log.taint(m.label, `its work will not stop and ${why}`)
  }

  // G5: closing a member's scope returns within stop timeout + statement timeout, whatever the store
  // does (a paused process is exempt: it cannot run its shutdown), plus the time its work refuses to
  // stop (the member leaves only once its work has stopped).
  const closes: Array<{ member: Member; since: number; paused: boolean; reported: boolean; fiber: Fiber.RuntimeFiber<void> }> = []
  const leaveLimit = config.stopTimeoutMs + config.statementTimeoutMs
  const checkCloses = () => {
    for (const c of closes) {
      if (c.reported || c.paused || c.fiber.unsafePoll() !== null) continue
      const limit = leaveLimit + (c.member.flags.stubborn ? stubbornMs : 0)
      if (clock.now - c.since > limit) {
        c.reported = true
        log.violation("G5", `${c.member.label}'s scope, closed at ${c.since} ms, has not closed ${limit} ms later (its leave hangs)`)
      }
    }
  }

  // G1 on the store itself: the indices of the current epoch are exactly 0..N-1.
  let outage = false
  const checkStore = () => {
    if (outage) return
    const group = run(inner.group(groupId))
    if (Option.isNone(group)) return
    const rows = run(Effect.withClock(inner.members(groupId), db))
    const indices = rows.map((r) => r.index).sort((a, b) => (a ?? -1) - (b ?? -1))
    if (group.value.size !== rows.length || !indices.every((x, i) => x === i)) {
      log.violation("G1", `the store's epoch ${group.value.epoch} has size ${group.value.size} and indices [${indices.join(", ")}]`)
    }
  }

  // G4: the live members work under one epoch, with indices exactly 0..N-1, as the store says.
  const convergence = (): string | undefined => {
    const live = members.filter((m) => m.status === "live")
    const n = live.length
    const states = live.map((m) => [m.label, run(m.service.state)] as const)
    const notAssigned = states.filter(([, s]) => s._tag !== "Assigned")
    if (notAssigned.length > 0) return notAssigned.map(([l, s]) => `${l} is ${State.format(s)}`).join("; ")
    const slots = states.map(([, s]) => s as Extract<State.MemberState, { _tag: "Assigned" }>)
    const epochs = new Set(slots.map((s) => s.epoch))
    if (epochs.size > 1) return `live members are in epochs ${[...epochs].join(", ")}`
    const indices = slots.map((s) => s.index).sort((a, b) => a - b)
    if (!slots.every((s) => s.size === n) || !indices.every((x, i) => x === i)) {
      return `indices [${indices.join(", ")}] of sizes [${slots.map((s) => s.size).join(", ")}] for ${n} live members`
    }
    const working = log.working()
    const liveLabels = new Set(live.map((m) => m.label))
    const strays = working.filter((w) => !liveLabels.has(w.member) || (n > 0 && w.epoch !== slots[0]!.epoch))
    if (strays.length > 0 || working.length !== n) {
      return `working: ${working.map((w) => `${w.member}@${w.epoch}`).join(", ") || "nobody"}`
    }
    if (n === 0) return undefined
    const group = run(inner.group(groupId))
    const rows = run(Effect.withClock(inner.members(groupId), db))
    const epoch = slots[0]!.epoch
    if (Option.isNone(group) || group.value.epoch !== epoch || group.value.size !== n) {
      return `the store's group is ${Option.match(group, { onNone: () => "missing", onSome: (g) => `epoch ${g.epoch} size ${g.size}` })}, members say epoch ${epoch} size ${n}`
    }
    const ids = new Set(live.map((m) => m.service.memberId))
    if (rows.length !== n || !rows.every((r) => ids.has(r.memberId))) {
      return `the store has rows of ${rows.map((r) => log.labels.get(r.memberId) ?? "?").join(", ")}`
    }
    return undefined
  }

  // --- the run --------------------------------------------------------------------------------
  log.note(formatSchedule(schedule).split("\n")[0]!)
  const minRate = Math.min(1, ...schedule.steps.map((s) => (s._tag === "Join" ? s.rate : 1)))
  // lease + one heartbeat (G4), stretched by the slowest member clock, plus the round trips of a
  // reap and a barrier (two latencies each way per call) and two barrier polls.
  // Work that will not stop lengthens the barrier by the time it refuses to stop.
  const stubbornInSchedule = schedule.steps.some((s) => s._tag === "Stubborn")
  const bound = Math.ceil(
    config.leaseMs + config.heartbeatMs / minRate + 4 * 2 * schedule.latencyMs + 20 + (stubbornInSchedule ? 3 * config.stopTimeoutMs : 0) +
      // A static member that left or crashed is renegotiated away only after its grace.
      (statics ? config.rejoinGraceMs : 0) +
      // A join sent while replies were slow may answer up to a lease later.
      (schedule.steps.some((s) => s._tag === "SlowJoins" && s.on) ? config.leaseMs : 0)
  )
  let convergedAfterMs: number | undefined = undefined
  try {
    schedule.steps.forEach((step, i) => {
      log.note(`--- step ${i + 1}: ${formatStep(step)}`)
      if (!applyStep(step)) log.note(`    (step ${i + 1} has no effect)`)
      checkStore()
      checkCloses()
    })
    // Heal every fault but crashes; then the live members must converge within the bound, for good.
    run(control.setOutage(false))
    outage = false
    run(control.setDropNotifications(false))
    mixing = false
    slowJoins = false
    stopFlood()
    for (const m of members) {
      if (m.hung && m.status !== "crashed") {
        run(control.resume(m.service.memberId))
        m.hung = false
      }
      if (m.paused) {
        sim.resume(m.label)
        m.paused = false
      }
    }
    sim.drain()
    const healedAt = clock.now
    log.note(`--- faults healed; the live members must converge within ${bound} ms`)
    advance(bound)
    checkStore()
    let why = convergence()
    if (why === undefined) {
      const epoch = run(inner.group(groupId)).pipe(Option.map((g) => g.epoch), Option.getOrElse(() => 0))
      advance(2 * config.heartbeatMs)
      why = convergence()
      const after = run(inner.group(groupId)).pipe(Option.map((g) => g.epoch), Option.getOrElse(() => 0))
      if (why === undefined && after !== epoch) why = `the epoch moved from ${epoch} to ${after} after convergence`
      if (why !== undefined) log.violation("G4", `converged by ${bound} ms after the faults healed, but did not stay: ${why}`)
      else convergedAfterMs = bound
    } else {
      // How late, if ever? Helps to tell a slow bound from a stuck group.
      let late: number | undefined = undefined
      for (let t = 0; t < 20_000 && late === undefined; t += 100) {
        advance(100)
        if (convergence() === undefined) late = clock.now - healedAt
      }
      log.violation(
        "G4",
        `not converged ${bound} ms after the faults healed: ${why}; ${late === undefined ? "still not after 20 s more" : `converged after ${late} ms`}`
      )
    }
  } catch (e) {
    log.violation("harness", e instanceof Error ? `${e.message}\n${e.stack ?? ""}` : String(e))
  }
  const result: ModelResult = {
    violations: [...log.violations],
    trace: [...log.trace],
    firstViolationLine: log.firstViolationLine,
    stats: {
      virtualMs: clock.now,
      wakes: clock.wakes,
      tasks: sim.tasksRun,
      starts: log.starts,
      units: log.units,
      members: members.length,
      convergedAfterMs,
      bound
    }
  }
  // Every member ends with the schedule: their fibers are scoped, and a scope never closed kept them
  // (suspended on this run's clock) in Effect's global fiber roots for the rest of the process (about
  // 0.5 GB after 600 schedules; 10,000 ran out of memory). Hung calls are let go, paused processes
  // continue, every scope closes, and the clock runs until the leaves are over. Not judged.
  try {
    for (const m of members) {
      if (m.hung || m.status === "crashed") run(control.resume(m.service.memberId))
      if (m.paused) sim.resume(m.label)
    }
    for (const m of members) run(Effect.forkDaemon(m.wrap(ScopeModule.close(m.scope, Exit.void))))
    advance(config.leaseMs + 4 * (config.stopTimeoutMs + config.statementTimeoutMs) + 3 * config.stopTimeoutMs)
  } catch {
    // A harness error here changes nothing of the verdict above.
  }
  return result
}

/** A failure report: the script, the violations, and the trace up to a little past the first violation. */
export const report = (schedule: Schedule, result: ModelResult, traceLines = 150): string => {
  const end = Math.min(result.trace.length, (result.firstViolationLine ?? result.trace.length) + 15)
  const start = Math.max(0, end - traceLines)
  return [
    formatSchedule(schedule),
    "",
    "violations:",
    ...result.violations.slice(0, 10).map((v) => `  - ${v}`),
    "",
    `trace${start > 0 ? ` (lines ${start + 1}-${end})` : ""}; times are the store's clock:`,
    ...result.trace.slice(start, end)
  ].join("\n")
}
