/**
 * Convergence trials, the same for every kind of group (fibers, processes, the original design).
 *
 * A group of N members is formed and converged; then each round: one member joins (N -> N+1,
 * measured from the start of its join), one member chosen at random leaves gracefully (N+1 -> N,
 * measured from the leave request), one more joins, one chosen at random crashes (N+1 -> N, from
 * the kill). "Converged" is the first instant at which the N live members all work, in one epoch,
 * on indices exactly 0..N-1 (for the original design: on modulos 0..N-1 with count N): the time of
 * the work-start mark that completes the cover. Rounds are spaced by a random pause so that
 * changes fall at random phases of the heartbeats (or of the original's loop).
 */
import type { Cover } from "./Cover.js"

/**
 * Where one convergence's time went (ms): from the change until the last live member stopped its
 * work (all have learnt of the change: NaN when none had to stop), then until the first member
 * started in the new epoch (the barrier), then until the last one did (the cover is complete).
 */
export interface Breakdown {
  readonly stop: number
  readonly barrier: number
  readonly start: number
}

export interface Group<M> {
  readonly members: ReadonlyArray<M>
  join(): Promise<{ readonly member: M; readonly t0: number }>
  leave(member: M): number | Promise<number>
  crash(member: M): number
  grow(n: number): Promise<void>
  dispose(): Promise<void>
  /** Gets `n` members ready to join (processes: spawned and connected), outside any measurement. */
  prepare?(n: number): Promise<void>
}

export interface TrialOptions {
  readonly size: number
  /** Members that join at once while forming the group (the group converges between batches). */
  readonly formBatch: number
  readonly rounds: number
  /** Rounds that end with a crash trial (the first ones; a crash waits out a lease). */
  readonly crashRounds: number
  /** Upper bound on one convergence. */
  readonly timeoutMs: number
  /** Upper bound on forming the group. */
  readonly formTimeoutMs: number
  /** Pause between changes: uniform in [0, pauseMs). */
  readonly pauseMs: number
  /** Stop starting rounds after this long (the samples so far are kept). */
  readonly budgetMs: number
  /** Called once the group is formed, before the first round (to open a measurement window). */
  readonly onFormed?: () => Promise<void>
}

export interface TrialResult {
  /** Time to form the group from nothing, `formBatch` members joining at once, converging between batches. */
  readonly formMs: number
  /** Why the group could not be formed (no trials then). */
  readonly formError: string | undefined
  readonly joins: Array<number>
  readonly leaves: Array<number>
  readonly crashes: Array<number>
  readonly joinPhases: Array<Breakdown>
  readonly leavePhases: Array<Breakdown>
  /** Changes that did not converge within the timeout. */
  readonly failures: number
  readonly violations: Array<string>
  /** Marks read out of the order they happened in, which their own times settled (bench/support/Cover.ts). */
  readonly reordered: number
  /** Rounds cut short by the time budget. */
  readonly truncated: boolean
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, Math.random() * ms))
const pick = <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(Math.random() * xs.length)]!

export const runTrials = async <M>(group: Group<M>, cover: Cover, o: TrialOptions): Promise<TrialResult> => {
  const joins: Array<number> = []
  const leaves: Array<number> = []
  const crashes: Array<number> = []
  const joinPhases: Array<Breakdown> = []
  const leavePhases: Array<Breakdown> = []
  let failures = 0
  await group.prepare?.(o.size)
  const f0 = performance.now()
  let formError: string | undefined
  try {
    await form(group, cover, o.size, o.formBatch, o.formTimeoutMs)
  } catch (e) {
    formError = `${(e as Error).message}`
  }
  const formMs = performance.now() - f0
  if (formError !== undefined) {
    return { formMs, formError, joins, leaves, crashes, joinPhases, leavePhases, failures, violations: [...cover.violations], reordered: cover.reordered, truncated: true }
  }
  await o.onFormed?.()
  const started = performance.now()
  let truncated = false

  // One change: register the waiter first, then act; a miss is counted and the group re-settles.
  const measure = async (n: number, act: () => Promise<number> | number, into: Array<number>, phases?: Array<Breakdown>) => {
    const done = cover.next(n, o.timeoutMs)
    const phase = cover.beginPhase()
    const t0 = await act()
    try {
      const t1 = await done
      into.push(t1 - t0)
      const stopped = Number.isNaN(phase.lastStop) ? t0 : phase.lastStop
      phases?.push({ stop: Number.isNaN(phase.lastStop) ? NaN : stopped - t0, barrier: phase.firstStart - stopped, start: t1 - phase.firstStart })
    } catch {
      failures++
      await cover.when(group.members.length, o.formTimeoutMs).catch(() => undefined)
    }
    await pause(o.pauseMs)
  }
  const join = () => measure(o.size + 1, async () => (await group.join()).t0, joins, joinPhases)

  for (let round = 0; round < o.rounds; round++) {
    if (performance.now() - started > o.budgetMs) {
      truncated = true
      break
    }
    await group.prepare?.(2)
    await join()
    await measure(o.size, () => group.leave(pick(group.members)), leaves, leavePhases)
    if (round < o.crashRounds) {
      await group.prepare?.(1)
      await join()
      await measure(o.size, () => group.crash(pick(group.members)), crashes)
    }
  }
  return { formMs, formError, joins, leaves, crashes, joinPhases, leavePhases, failures, violations: [...cover.violations], reordered: cover.reordered, truncated }
}

/** Grows the group to `size`, `batch` joins at a time, each batch converged before the next; bounded by `timeoutMs`. */
export const form = async <M>(group: Group<M>, cover: Cover, size: number, batch: number, timeoutMs: number): Promise<void> => {
  const deadline = performance.now() + timeoutMs
  while (group.members.length < size) {
    await group.grow(Math.min(batch, size - group.members.length))
    const left = deadline - performance.now()
    if (left <= 0) throw new Error(`not formed within ${timeoutMs / 1000} s (${cover.working} of ${group.members.length} working)`)
    await cover.when(group.members.length, left).catch(() => {
      throw new Error(`not formed within ${timeoutMs / 1000} s (${cover.working} of ${group.members.length} members working)`)
    })
  }
}
