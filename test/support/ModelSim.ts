/**
 * A deterministic, synchronous runtime for the model test: a scheduler that runs fiber tasks only
 * when the harness drains it, and a virtual clock that wakes sleepers one at a time in time order.
 *
 * Why not `TestClock`? Its `adjust` waits for every woken sleeper with three real `setTimeout(0)`
 * ticks (`awaitSuspended`), so each wake-up costs about 3 ms of wall time: four members over three
 * virtual seconds took 1.2 s, and 1,000 schedules would take many minutes. This runtime wakes a
 * sleeper and runs every fiber until all are suspended again, synchronously, in microseconds. It is
 * the same idea as the TestClock (virtual time, no real sleeps), and more: the interleaving of
 * fibers is a pure function of the schedule, so a failing schedule replays and shrinks exactly.
 *
 * It also models what an in-process TestClock cannot:
 * - each member has its own clock (offset and rate: skew and drift) while the store keeps the
 *   "database clock" (the global one);
 * - a member's process can be paused (SIGSTOP) and continued: tasks of its fibers are parked.
 */
import type { Fiber } from "effect"
import { Clock, Duration, Effect, FiberRef, Scheduler } from "effect"

/** Which member a fiber belongs to (inherited by forked fibers); `undefined`: the harness or the "database". */
export const memberLabel: FiberRef.FiberRef<string | undefined> = FiberRef.unsafeMake<string | undefined>(undefined)

type Task = () => void

/** Runs tasks FIFO when `drain` is called; parks the tasks of paused members. */
export class SimScheduler implements Scheduler.Scheduler {
  private queue: Array<Task> = []
  private head = 0
  private draining = false
  private readonly paused = new Set<string>()
  private readonly parked = new Map<string, Array<Task>>()
  /** Tasks run so far (a cost measure). */
  tasksRun = 0
  /** A drain running more tasks than this is a livelock (some fiber never suspends). */
  maxTasksPerDrain = 2_000_000

  shouldYield(fiber: Fiber.RuntimeFiber<unknown, unknown>): number | false {
    return Scheduler.defaultShouldYield(fiber)
  }

  scheduleTask(task: Task, _priority: number, fiber?: Fiber.RuntimeFiber<unknown, unknown>): void {
    if (this.paused.size > 0 && fiber !== undefined) {
      const label = fiber.getFiberRef(memberLabel)
      if (label !== undefined && this.paused.has(label)) {
        this.parked.get(label)!.push(task)
        return
      }
    }
    this.queue.push(task)
  }

  /** Runs every runnable task until all fibers are suspended (or parked). */
  drain(): void {
    if (this.draining) throw new Error("SimScheduler.drain is not reentrant")
    this.draining = true
    let n = 0
    try {
      while (this.head < this.queue.length) {
        const task = this.queue[this.head]!
        this.head++
        if (this.head > 1024 && this.head * 2 > this.queue.length) {
          this.queue = this.queue.slice(this.head)
          this.head = 0
        }
        task()
        if (++n > this.maxTasksPerDrain) throw new Error(`livelock: more than ${this.maxTasksPerDrain} tasks without suspending`)
      }
    } finally {
      this.tasksRun += n
      this.draining = false
    }
  }

  pause(label: string): void {
    if (!this.paused.has(label)) {
      this.paused.add(label)
      this.parked.set(label, [])
    }
  }

  /** Lets a paused member run again: its parked tasks run first, in the order they were parked. */
  resume(label: string): void {
    const tasks = this.parked.get(label)
    this.paused.delete(label)
    this.parked.delete(label)
    if (tasks !== undefined) for (const t of tasks) this.queue.push(t)
  }

  isPaused(label: string): boolean {
    return this.paused.has(label)
  }
}

interface Sleeper {
  readonly at: number
  readonly seq: number
  cancelled: boolean
  readonly wake: () => void
}

/** A member's view of time: `local = offset + global * rate`. */
export interface ClockView {
  readonly offset: number
  readonly rate: number
}

/** Virtual global time in milliseconds (the "database clock"), with sleepers woken in order. */
export class SimClock {
  now = 0
  private seq = 0
  private sleepers: Array<Sleeper> = []
  /** Sleeps woken so far (a cost measure). */
  wakes = 0

  /** An Effect `Clock` reading this time through `view` (identity by default). */
  clock(view: ClockView = { offset: 0, rate: 1 }): Clock.Clock {
    const sim = this
    const local = () => view.offset + sim.now * view.rate
    return {
      [Clock.ClockTypeId]: Clock.ClockTypeId,
      unsafeCurrentTimeMillis: () => Math.floor(local()),
      currentTimeMillis: Effect.sync(() => Math.floor(local())),
      unsafeCurrentTimeNanos: () => BigInt(Math.floor(local() * 1e6)),
      currentTimeNanos: Effect.sync(() => BigInt(Math.floor(local() * 1e6))),
      sleep: (duration: Duration.Duration) =>
        Effect.async<void>((resume) => {
          const ms = Duration.toMillis(duration)
          if (!Number.isFinite(ms)) return
          // Wake when the local clock has advanced by `ms`.
          const at = sim.now + Math.max(0, ms) / view.rate
          const sleeper = sim.add(at, () => resume(Effect.void))
          return Effect.sync(() => {
            sleeper.cancelled = true
          })
        })
    } as Clock.Clock
  }

  private add(at: number, wake: () => void): Sleeper {
    const s: Sleeper = { at, seq: this.seq++, cancelled: false, wake }
    // Keep sorted by (at, seq): insertion from the end, sleepers are mostly appended in order.
    let i = this.sleepers.length
    while (i > 0) {
      const p = this.sleepers[i - 1]!
      if (p.at < at || (p.at === at && p.seq < s.seq)) break
      i--
    }
    this.sleepers.splice(i, 0, s)
    return s
  }

  /** The next wake-up time at or before `until`, if any (cancelled sleepers are dropped). */
  private peek(until: number): Sleeper | undefined {
    while (this.sleepers.length > 0 && this.sleepers[0]!.cancelled) this.sleepers.shift()
    const s = this.sleepers[0]
    return s !== undefined && s.at <= until ? s : undefined
  }

  /**
   * Advances to `until`, waking sleepers one at a time; after each wake-up `settle` runs (drain the
   * scheduler, check invariants).
   */
  advanceTo(until: number, settle: () => void): void {
    for (;;) {
      const s = this.peek(until)
      if (s === undefined) break
      this.sleepers.shift()
      this.now = Math.max(this.now, s.at)
      this.wakes++
      s.wake()
      settle()
    }
    this.now = Math.max(this.now, until)
  }

  /** Pending sleepers (for the livelock guard of a finished run). */
  get pending(): number {
    return this.sleepers.filter((s) => !s.cancelled).length
  }
}
