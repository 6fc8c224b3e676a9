/**
 * The app's registered work: started under a slot on `StartWork`, interrupted on a stop or a fence.
 * The fibers live in a `FiberSet` in the work scope (closed after the final leave).
 *
 * Slots mode adds per-slot work (`whileOwning`): started per slot on `StartSlot`, interrupted per
 * slot on `StopSlots` (and, with everything else, on a stop or a fence), in the same `FiberSet`, so
 * `awaitStopped` waits for it too; and the set form (`whileOwningAll`), which runs under the whole
 * set of slots being worked and is restarted whenever that set changes.
 */
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as FiberSet from "effect/FiberSet"
import { globalValue } from "effect/GlobalValue"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import type { Assignment, AssignmentOwner, OwnedSlot, OwnedSlots, Slot } from "../../MemberState.js"
import { toAssignment } from "../../MemberState.js"

/**
 * The assignment of the `whileAssigned` run (and so of the `Work.runEvery` / `runAsLeader` runs built
 * on it) that the current fiber belongs to: set on the run's fiber, inherited by every fiber it forks
 * (also `forkDaemon`, which outlives the run). `Fenced.fenced` without `assignment` fences to it, not
 * to whatever assignment is current when it is called: the body's SQL was written for the run's
 * slice. None outside any run, and in slots mode (a member-level run is not restarted by a change
 * there, and its index has no barrier). With the group and member id of the membership the run is
 * of: a plain `fenced` of any other membership inside the run is refused (`Fenced.fenced`: which slice
 * the body writes is then unknown; `assignment` says it).
 */
export interface RunAssignment {
  readonly groupId: string
  readonly memberId: string
  readonly assignment: Assignment
}
// One for the process, also when an app loads two copies of the library (the `Membership` tag, a
// string key, is shared between them; a FiberRef of each copy was not, and the other copy's `fenced`
// saw no run: a review). Versioned: a copy with another shape of `RunAssignment` gets its own.
export const currentRunAssignment: FiberRef.FiberRef<Option.Option<RunAssignment>> = globalValue(
  Symbol.for("modulo-group/currentRunAssignment/1"),
  () =>
    FiberRef.unsafeMake<Option.Option<RunAssignment>>(Option.none(), {
      // A fiber keeps its own run's assignment (or none) when it joins another fiber: by default the
      // joined fiber's value wins, and a daemon of an old run that joined a fiber of the next run took
      // that run's assignment and committed its old slice under it (a review); a fiber of no run that
      // joined a run's fiber was refused for good once that run was stale (the next review).
      join: (own) => own
    })
)

/**
 * The membership of the slots-mode work run (`whileOwning`, `whileOwningAll`) the current fiber
 * belongs to, inherited by every fiber it forks (`forkDaemon` too), kept on a join as
 * `currentRunAssignment` is. `Fenced.fenced` refuses a call in such a run under any other
 * `Membership` (a modulo one passed the slots-mode refusal and fenced the run's slot writes to
 * another group's member).
 */
export interface SlotsRun {
  readonly groupId: string
  readonly memberId: string
}
export const currentSlotsRun: FiberRef.FiberRef<Option.Option<SlotsRun>> = globalValue(
  Symbol.for("modulo-group/currentSlotsRun/1"),
  () => FiberRef.unsafeMake<Option.Option<SlotsRun>>(Option.none(), { join: (own) => own })
)

/** One registration of `whileAssigned`. */
export interface WorkSpec {
  readonly run: (assignment: Assignment) => Effect.Effect<void>
}

/** One registration of `whileOwning`: a fiber per slot. */
export interface SlotSpec {
  readonly run: (owned: OwnedSlot) => Effect.Effect<void>
}

/** One registration of `whileOwningAll`: one fiber under the whole set. */
export interface SlotSetSpec {
  readonly run: (owned: OwnedSlots) => Effect.Effect<void>
}

export interface WorkRunner {
  /**
   * Starts every registered work under `slot`, if `live` (checked under the lock that `interrupt`
   * takes: a fence that interrupted before the start is not undone by it, see driver.ts). Whether
   * it started.
   */
  readonly start: (slot: Slot, live?: Effect.Effect<boolean>) => Effect.Effect<boolean>
  /** Interrupts the work without waiting for it. Nothing starts on its own until the next `start`. */
  readonly interrupt: Effect.Effect<void>
  /** Waits until no work fiber runs. */
  readonly awaitStopped: Effect.Effect<void>
  /** Whether no work fiber runs now. */
  readonly stoppedNow: Effect.Effect<boolean>
  /**
   * Registers `spec` for as long as the caller's scope lives; starts it at once when work runs now
   * and `live` says the assignment still holds.
   */
  readonly register: (spec: WorkSpec, live: Effect.Effect<boolean>) => Effect.Effect<void, never, Scope.Scope>
  /** Slots mode: starts every registered slot work under `owned` (and restarts the set forms), if `live` (as `start`); whether it did. */
  readonly startSlot: (owned: OwnedSlot, live?: Effect.Effect<boolean>) => Effect.Effect<boolean>
  /**
   * Slots mode: interrupts the work of `slots`, all at once (their per-slot fibers, and the set forms,
   * which are restarted once under the slots left, and only while work may start); returns, per
   * slot, an effect that waits until that slot's work has stopped: every fiber the slot has, also
   * after an `interrupt` (a fence's: it clears the slots started, not their fibers, so work that will
   * not stop is still waited for). By the slot's number: a stop that runs after the slot was started
   * again would stop the new work too, which the driver never asks for (a slot being stopped is not
   * started again before its stop is reported); a second review showed that checking the run here
   * (its generation, then its start) skipped the fibers of work a fence had interrupted, and reported
   * them stopped while they ran.
   */
  readonly stopSlots: (slots: ReadonlyArray<number>) => Effect.Effect<ReadonlyMap<number, Effect.Effect<void>>>
  /** Slots mode: the slots started and not stopped since, ascending. */
  readonly slots: Effect.Effect<ReadonlyArray<OwnedSlot>>
  /** Registers per-slot work (see `register`); `live`: whether slot work may start now. */
  readonly registerSlot: (spec: SlotSpec, live: Effect.Effect<boolean>) => Effect.Effect<void, never, Scope.Scope>
  /** Registers set-form slot work (see `register`). */
  readonly registerSlotSet: (spec: SlotSetSpec, live: Effect.Effect<boolean>) => Effect.Effect<void, never, Scope.Scope>
  /**
   * Runs `effect` (the driver's instructions of one step: a view's stops, releases, retakes and
   * starts) with the set forms' restarts held until it ends: they are made once, under the set the
   * step leaves.
   */
  readonly batch: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

export const makeWorkRunner = (
  workScope: Scope.Scope,
  /** The member whose runs these are, and its group (`currentRunAssignment`). */
  member: AssignmentOwner,
  /** Slots mode: the gauge of the slots being worked, moved by each change of `active`. */
  slotsWorking?: Metric.Metric.Gauge<number>,
  /** How soon a start refused by `live` while work runs is looked at again (see `refused`). */
  retryMs = 50
): Effect.Effect<WorkRunner> =>
  Effect.gen(function*() {
    const fibers = yield* Scope.extend(FiberSet.make<void>(), workScope)
    // Each registered spec with its `live` (whether its work may start now), for a start held back.
    const specs = new Map<WorkSpec, Effect.Effect<boolean>>()
    // The work fiber of each spec, while it runs. A spec never has two.
    const running = new Map<WorkSpec, Fiber.RuntimeFiber<void>>()
    // The slot work runs under, set by `start` and cleared by every interrupt (both under the lock):
    // a spec registered later starts on its own only while this is set, so it starts exactly once
    // per `start` whatever the interleaving.
    let activeSlot: Slot | undefined = undefined
    // Slots mode: the slots being worked (set by `startSlot`, removed by `stopSlot`, cleared by every
    // interrupt), the per-slot fibers of each, and the set forms' fibers.
    const active = new Map<number, OwnedSlot>()
    const slotSpecs = new Map<SlotSpec, Effect.Effect<boolean>>()
    // The set forms, each with its `live` (whether work may start now: a restart checks it).
    const setSpecs = new Map<SlotSetSpec, Effect.Effect<boolean>>()
    const perSlot = new Map<number, Map<SlotSpec, Fiber.RuntimeFiber<void>>>()
    const perSet = new Map<SlotSetSpec, Fiber.RuntimeFiber<void>>()
    // The slots each set-form run was started under, while it runs: the stop of any of them waits
    // for it, whether it is being restarted now, was interrupted by an earlier restart, or by a fence.
    const setCovers = new Map<Fiber.RuntimeFiber<void>, ReadonlySet<number>>()
    // What was started since the work was last interrupted (modulo: under the `start`; per slot:
    // since the slot was started; set forms: since the set last changed), run or done: a run that
    // has completed is not started again until then (a retry of a refused start, or the starts held
    // back behind a closed registration's run, ran a completed one-shot run twice: a review).
    const startedSpecs = new Set<WorkSpec>()
    const startedSlot = new Map<number, Set<SlotSpec>>()
    const startedSets = new Set<SlotSetSpec>()
    // Runs of registrations whose scope has closed, interrupted and not stopped yet (work that ignores
    // its interruption: `Work`'s registrations stop waiting for it after `stopTimeout`). While any
    // runs, no work starts: a registration made again (an app rebuilding its `layerAsLeader`) started
    // its run beside the one still stopping, a leader duty twice at once on one member in one epoch
    // (an adversarial review). Held-back starts are made when the last of them has stopped.
    const orphans = new Set<Fiber.RuntimeFiber<void>>()
    let heldBack = false
    // Starting work (after checking the state) and interrupting it exclude each other, so a spec
    // registered during a renegotiation cannot slip past the stop that precedes the acknowledgement.
    const lock = yield* Effect.makeSemaphore(1)
    const moved = (delta: number) =>
      slotsWorking === undefined || delta === 0 ? Effect.void : Metric.incrementBy(slotsWorking, delta)

    // Interruptible explicitly: work may be started from inside an uninterruptible acquire, and a
    // fork inherits that; such work could never be stopped.
    const fork = (effect: Effect.Effect<void>) => FiberSet.run(fibers, Effect.interruptible(effect))

    /** Whether work must not start now (a closed registration's run has not stopped); says so once per wait. */
    const holdBack: Effect.Effect<boolean> = Effect.suspend(() => {
      if (orphans.size === 0) return Effect.succeed(false)
      if (heldBack) return Effect.succeed(true)
      heldBack = true
      const waiting = [...orphans]
      return Effect.logError(
        "modulo-group: work is held back until the work of a closed registration has stopped " +
          "(it ignores its interruption); it starts then"
      ).pipe(
        Effect.zipRight(Effect.forkIn(
          Effect.zipRight(Effect.forEach(waiting, Fiber.await, { discard: true }), Effect.suspend(() => startHeldBack())),
          workScope
        )),
        Effect.as(true)
      )
    })

    /** Moves a closed registration's run (if it has one that runs) to `orphans`, interrupted; whether it did. */
    const orphan = (fiber: Fiber.RuntimeFiber<void> | undefined): Effect.Effect<boolean> =>
      Effect.suspend(() => {
        if (fiber === undefined || fiber.unsafePoll() !== null) return Effect.succeed(false)
        orphans.add(fiber)
        fiber.addObserver(() => orphans.delete(fiber))
        return Effect.as(Fiber.interruptFork(fiber), true)
      })

    /**
     * A registration's release: its runs interrupted, not waited for (`Work`'s registrations wait for
     * theirs, up to `stopTimeout`; a member's own close waits for all its work before it leaves); they
     * are `orphans` until they have stopped, and hold back every start meanwhile.
     */
    const release = (runs: ReadonlyArray<Fiber.RuntimeFiber<void> | undefined>) =>
      Effect.forEach(runs, orphan, { discard: true })

    const startOne = (spec: WorkSpec, slot: Slot) =>
      Effect.gen(function*() {
        if (running.has(spec) || startedSpecs.has(spec)) return
        if (yield* holdBack) return
        startedSpecs.add(spec)
        const assignment: Assignment = { ...toAssignment(slot), owner: member }
        // The gauge is given in slots mode only (Membership.make): modulo mode sets the run's assignment.
        const run = slotsWorking === undefined
          // Suspended: the app's callback itself runs on the run's fiber (a `fenced` it builds eagerly
          // notes this run; built on the starting fiber it noted none: a review).
          ? Effect.locally(Effect.suspend(() => spec.run(assignment)), currentRunAssignment, Option.some({ ...member, assignment }))
          : spec.run(assignment)
        const fiber = yield* fork(run)
        running.set(spec, fiber)
        fiber.addObserver(() => {
          if (running.get(spec) === fiber) running.delete(spec)
        })
        // Its registration closed meanwhile (a release does not take the lock): stopped as its release would.
        if (!specs.has(spec)) yield* orphan(fiber)
      })

    // A slots-mode run (either form) carries its membership (`currentSlotsRun`); suspended, so that the
    // app's callback itself runs on the run's fiber, as a modulo run's does.
    const slotsRun = Option.some({ groupId: member.groupId, memberId: member.memberId })
    const inSlotsRun = (run: () => Effect.Effect<void>) => Effect.locally(Effect.suspend(run), currentSlotsRun, slotsRun)

    const startSlotOne = (spec: SlotSpec, owned: OwnedSlot) =>
      Effect.gen(function*() {
        const mine = perSlot.get(owned.slot) ?? new Map<SlotSpec, Fiber.RuntimeFiber<void>>()
        perSlot.set(owned.slot, mine)
        const started = startedSlot.get(owned.slot) ?? new Set<SlotSpec>()
        startedSlot.set(owned.slot, started)
        if (mine.has(spec) || started.has(spec)) return
        if (yield* holdBack) return
        started.add(spec)
        const fiber = yield* fork(inSlotsRun(() => spec.run({ ...owned, owner: member })))
        mine.set(spec, fiber)
        fiber.addObserver(() => {
          if (mine.get(spec) === fiber) mine.delete(spec)
        })
        if (!slotSpecs.has(spec)) yield* orphan(fiber)
      })

    const ownedNow = (): OwnedSlots => {
      const list = [...active.values()].sort((a, b) => a.slot - b.slot)
      return {
        slots: list.map((o) => o.slot),
        generations: list.map((o) => o.generation),
        count: list[0]?.count ?? 0,
        owner: member
      }
    }

    const startSetOne = (spec: SlotSetSpec) =>
      Effect.gen(function*() {
        if (active.size === 0 || perSet.has(spec) || startedSets.has(spec)) return
        // An earlier run still stopping: started with the others once it has (`startSets`).
        if (stoppingSets.size > 0) return yield* startSets
        // Inside a driver's step: at its end, under the set it leaves (every path comes here: a
        // pending start, a retry, a registration; a review found them let in between).
        if (batching > 0) {
          setsHeld = true
          return
        }
        if (yield* holdBack) return
        startedSets.add(spec)
        const owned = ownedNow()
        const fiber = yield* fork(inSlotsRun(() => spec.run(owned)))
        perSet.set(spec, fiber)
        setCovers.set(fiber, new Set(owned.slots))
        fiber.addObserver(() => {
          if (perSet.get(spec) === fiber) perSet.delete(spec)
          setCovers.delete(fiber)
        })
        if (!setSpecs.has(spec)) yield* orphan(fiber)
      })

    // Set forms interrupted by a restart and not stopped yet. No set form starts while any runs (the
    // old run may cover a slot being given up); the restart is made once they have all stopped. They
    // are waited for outside the lock: a restart that waited under it for a set form that ignores its
    // interruption held up the fence's `interrupt` too, and the member's other slot work ran on past
    // its lease deadline, beside the slots' next owner (G2; test/slots/membership.test.ts).
    const stoppingSets = new Set<Fiber.RuntimeFiber<void>>()
    // Per-slot runs a stop interrupted that may not have ended yet, by slot: every later stop of the
    // slot waits for them too, as does a slot named twice in one stop (a review: the second entry
    // found the slot's runs taken by the first, and its wait, which replaced the first's, waited for
    // none; the driver names a slot once, so this was latent).
    const stoppingSlot = new Map<number, Set<Fiber.RuntimeFiber<void>>>()
    let setsPending = false
    // Inside a driver's step (`batch`): the set forms' starts wait for its end (a review: a view's
    // release, a store call between its stops and its starts, let them in under the set in between).
    let batching = 0
    let setsHeld = false

    // The set forms started under the slots being worked now, each only while its work may start
    // (never after the lease deadline: a stop at the deadline must not start them again under the
    // slots left): in a fiber of their own, once the stopping ones have stopped, and after the
    // current step has had its turn, so that one view's stops and starts restart them once (a
    // review: a view that stopped one slot and started another, or started several, ran them once
    // per slot, the first time under a slot being given up).
    const startSets: Effect.Effect<void> = Effect.suspend(() => {
      if (batching > 0) {
        setsHeld = true
        return Effect.void
      }
      if (setsPending) return Effect.void
      setsPending = true
      const waiting = [...stoppingSets]
      return Effect.asVoid(Effect.forkIn(
        Effect.zipRight(
          Effect.zipRight(Effect.forEach(waiting, Fiber.await, { discard: true }), Effect.yieldNow()),
          lock.withPermits(1)(Effect.suspend(() => {
            setsPending = false
            return stoppingSets.size > 0 ? startSets : startSetForms
          }))
        ),
        workScope
      ))
    })

    // Every registered set form that has not been started under the set being worked now, if it may
    // start (under the lock).
    const startSetForms: Effect.Effect<void> = Effect.suspend(() =>
      Effect.forEach([...setSpecs], ([spec, live]) =>
        active.size === 0 || perSet.has(spec) || startedSets.has(spec)
          ? Effect.void
          : Effect.flatMap(live, (ok) => ok ? startSetOne(spec) : refused), { discard: true })
    )

    // The set forms: interrupted (they may cover a slot being given up), then started again under
    // the slots being worked now once they have stopped (`stoppingSets`, which the stops of the
    // slots they cover wait for).
    const restartSets: Effect.Effect<void> = Effect.gen(function*() {
      const old = [...perSet.values()]
      perSet.clear()
      startedSets.clear()
      for (const fiber of old) {
        if (fiber.unsafePoll() !== null) continue
        stoppingSets.add(fiber)
        fiber.addObserver(() => stoppingSets.delete(fiber))
      }
      yield* Effect.forEach(old, (f) => Fiber.interruptFork(f), { discard: true })
      yield* startSets
    })

    // One assignment (`start`'s slot): what was started under it is not started again.
    const sameSlot = (a: Slot, b: Slot) =>
      a.epoch === b.epoch && a.index === b.index && a.size === b.size && a.incarnation === b.incarnation

    // Whether work runs now (a `start`'s slot, or slots being worked): registered work that is not
    // running should be.
    const working = () => activeSlot !== undefined || active.size > 0

    // A start refused by `live` while work runs (a registration, a set form's restart, a held-back
    // start made at the lease deadline's instant): looked at again every `retryMs` until the work is
    // interrupted (the fence, a stop: the next `start` starts every registered work) or `live` holds
    // again: a renewal sent in time can move the deadline just before the fence looks, and then no
    // fence comes, the member stays assigned, and nothing else would start that work (a review).
    let retrying = false
    const refused: Effect.Effect<void> = Effect.suspend(() => {
      if (retrying || !working()) return Effect.void
      retrying = true
      return Effect.asVoid(Effect.forkIn(
        Effect.zipRight(
          Effect.sleep(retryMs),
          lock.withPermits(1)(Effect.suspend(() => {
            retrying = false
            return startMissing
          }))
        ),
        workScope
      ))
    })

    // Every registered work that should run and does not (under the lock): each under the slot
    // (modulo mode) or the slots (slots mode) being worked now, if it may start (as `register` would;
    // a start already made is not made again). Unless closed registrations' runs still stop.
    const startMissing: Effect.Effect<void> = Effect.gen(function*() {
      if (orphans.size > 0) return void (yield* holdBack)
      const slot = activeSlot
      if (slot !== undefined) {
        for (const [spec, live] of specs) {
          if (running.has(spec) || startedSpecs.has(spec)) continue
          if (yield* live) yield* startOne(spec, slot)
          else yield* refused
        }
      }
      for (const [spec, live] of slotSpecs) {
        const missing = [...active.values()].filter((o) =>
          perSlot.get(o.slot)?.has(spec) !== true && startedSlot.get(o.slot)?.has(spec) !== true
        )
        if (missing.length === 0) continue
        if (yield* live) {
          for (const owned of missing) yield* startSlotOne(spec, owned)
        } else yield* refused
      }
      yield* startSetForms
    })

    // The starts held back while closed registrations' runs stopped, once none runs.
    function startHeldBack(): Effect.Effect<void> {
      return lock.withPermits(1)(Effect.suspend(() => {
        heldBack = false
        return startMissing
      }))
    }

    return {
      batch: (effect) =>
        Effect.uninterruptibleMask((restore) => {
          batching++
          return Effect.ensuring(
            restore(effect),
            Effect.suspend(() => {
              batching--
              if (batching > 0 || !setsHeld) return Effect.void
              setsHeld = false
              return startSets
            })
          )
        }),
      start: (slot, live = Effect.succeed(true)) =>
        lock.withPermits(1)(Effect.flatMap(live, (ok) => {
          if (!ok) return Effect.succeed(false)
          // Another assignment than the work runs under: everything starts under it (what was
          // started under the earlier one is not counted).
          if (activeSlot === undefined || !sameSlot(activeSlot, slot)) startedSpecs.clear()
          activeSlot = slot
          return Effect.as(Effect.forEach([...specs.keys()], (spec) => startOne(spec, slot), { discard: true }), true)
        })),
      interrupt: lock.withPermits(1)(Effect.suspend(() => {
        activeSlot = undefined
        const cleared = active.size
        active.clear()
        startedSpecs.clear()
        startedSlot.clear()
        startedSets.clear()
        return Effect.zipRight(moved(-cleared), Effect.forEach([...fibers], (f) => Fiber.interruptFork(f), { discard: true }))
      })),
      awaitStopped: FiberSet.awaitEmpty(fibers),
      stoppedNow: Effect.map(FiberSet.size(fibers), (n) => n === 0),
      register: (spec, live) =>
        Effect.acquireRelease(
          lock.withPermits(1)(Effect.gen(function*() {
            specs.set(spec, live)
            // Only while a `start`'s work is live (and its deadline ahead): otherwise the next
            // `start` starts it.
            if (activeSlot === undefined) return
            if (yield* live) yield* startOne(spec, activeSlot)
            else yield* refused
          })),
          // Its run, if any, is interrupted (before, it ran on until the epoch ended) and counted
          // until it has stopped.
          () =>
            Effect.suspend(() => {
              specs.delete(spec)
              startedSpecs.delete(spec)
              return release([running.get(spec)])
            })
        ).pipe(Effect.asVoid),
      startSlot: (owned, live = Effect.succeed(true)) =>
        lock.withPermits(1)(Effect.gen(function*() {
          if (!(yield* live)) return false
          const before = active.get(owned.slot)
          if (before === undefined) yield* moved(1)
          active.set(owned.slot, owned)
          yield* Effect.forEach([...slotSpecs.keys()], (spec) => startSlotOne(spec, owned), { discard: true })
          // The set forms only when the set changed (a slot, or its generation).
          if (before?.generation !== owned.generation && (setSpecs.size > 0 || perSet.size > 0)) yield* restartSets
          return true
        })),
      stopSlots: (slots) =>
        lock.withPermits(1)(Effect.gen(function*() {
          // Every slot's fibers are interrupted before any is waited for: stopping many slots (all
          // of them at the deadline) costs one round, not one per slot.
          const given: Array<readonly [number, ReadonlyArray<Fiber.RuntimeFiber<void>>]> = []
          let changed = false
          for (const slot of slots) {
            if (active.delete(slot)) {
              changed = true
              yield* moved(-1)
            }
            const fibersOfSlot = [...(perSlot.get(slot)?.values() ?? [])]
            perSlot.delete(slot)
            startedSlot.delete(slot)
            yield* Effect.forEach(fibersOfSlot, (f) => Fiber.interruptFork(f), { discard: true })
            const stopping = stoppingSlot.get(slot) ?? new Set<Fiber.RuntimeFiber<void>>()
            for (const f of stopping) if (f.unsafePoll() !== null) stopping.delete(f)
            for (const f of fibersOfSlot) stopping.add(f)
            if (stopping.size > 0) stoppingSlot.set(slot, stopping)
            else stoppingSlot.delete(slot)
            given.push([slot, [...stopping]])
          }
          // The set forms cover these slots: interrupted, and restarted without them once stopped
          // (only when the set changed: a stop of slots not worked, after a fence, leaves them be).
          if (changed && (setSpecs.size > 0 || perSet.size > 0)) yield* restartSets
          // Each slot's stop waits for every set-form run that covers it and has not stopped: the
          // ones just interrupted, and any an earlier restart or a fence interrupted (a review: a
          // run still stopping from an earlier restart was not waited for, and the slot was started
          // elsewhere while it ran). Not here, under the lock.
          const setRuns = [...stoppingSets, ...perSet.values()]
          const stopped = new Map<number, Effect.Effect<void>>()
          for (const [slot, fibersOfSlot] of given) {
            const covering = setRuns.filter((f) => setCovers.get(f)?.has(slot) === true)
            stopped.set(slot, Effect.forEach([...fibersOfSlot, ...covering], Fiber.await, { discard: true }))
          }
          return stopped
        })),
      slots: Effect.sync(() => [...active.values()].sort((a, b) => a.slot - b.slot)),
      registerSlot: (spec, live) =>
        Effect.acquireRelease(
          lock.withPermits(1)(Effect.gen(function*() {
            slotSpecs.set(spec, live)
            if (active.size === 0) return
            if (yield* live) {
              yield* Effect.forEach([...active.values()], (owned) => startSlotOne(spec, owned), { discard: true })
            } else yield* refused
          })),
          () =>
            Effect.suspend(() => {
              slotSpecs.delete(spec)
              for (const started of startedSlot.values()) started.delete(spec)
              return release([...perSlot.values()].map((mine) => mine.get(spec)))
            })
        ).pipe(Effect.asVoid),
      registerSlotSet: (spec, live) =>
        Effect.acquireRelease(
          lock.withPermits(1)(Effect.gen(function*() {
            setSpecs.set(spec, live)
            if (active.size === 0) return
            if (yield* live) yield* startSetOne(spec)
            else yield* refused
          })),
          () =>
            Effect.suspend(() => {
              setSpecs.delete(spec)
              startedSets.delete(spec)
              return release([perSet.get(spec)])
            })
        ).pipe(Effect.asVoid)
    }
  })
