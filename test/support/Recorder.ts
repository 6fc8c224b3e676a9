/**
 * Records every member's work intervals in one total order and checks G1 and G2 over them.
 * All members run in this process, so the order of appends is the real order of events.
 */
import { Clock, Effect } from "effect"
import type { MembershipService } from "../../src/Membership.js"

export interface Mark {
  readonly seq: number
  readonly at: number
  readonly member: string
  readonly kind: "start" | "end"
  readonly epoch: number
  readonly index: number
  readonly size: number
}

export const makeRecorder = Effect.sync(() => {
  const marks: Array<Mark> = []
  const violations: Array<string> = []
  const open = new Map<string, Mark>()
  let maxStarted = 0

  const push = (mark: Omit<Mark, "seq" | "at">) =>
    Effect.map(Clock.currentTimeMillis, (at) => {
      const m: Mark = { ...mark, seq: marks.length, at }
      marks.push(m)
      if (m.kind === "start") {
        // G2: never start an epoch older than one already started, nor beside older work.
        if (m.epoch < maxStarted) violations.push(`${m.member} started epoch ${m.epoch} after epoch ${maxStarted} had started`)
        for (const o of open.values()) {
          if (o.epoch < m.epoch) violations.push(`${m.member} started epoch ${m.epoch} while ${o.member} still worked in ${o.epoch}`)
          if (o.epoch > m.epoch) violations.push(`${m.member} started epoch ${m.epoch} while ${o.member} worked in ${o.epoch}`)
          // G1: one index per member within an epoch, one size per epoch.
          if (o.epoch === m.epoch && o.index === m.index) violations.push(`index ${m.index} twice in epoch ${m.epoch}`)
          if (o.epoch === m.epoch && o.size !== m.size) violations.push(`two sizes in epoch ${m.epoch}`)
        }
        if (m.index < 0 || m.index >= m.size) violations.push(`index ${m.index} out of [0, ${m.size}) in epoch ${m.epoch}`)
        maxStarted = Math.max(maxStarted, m.epoch)
        open.set(m.member, m)
      } else {
        open.delete(m.member)
      }
    })

  /** Runs a worker on the member that marks the start and the end (finalizer) of each assignment. */
  const track = (member: MembershipService, label = member.memberId) =>
    member.whileAssigned((a) =>
      Effect.acquireRelease(
        push({ member: label, kind: "start", epoch: a.epoch, index: a.index, size: a.size }),
        () => push({ member: label, kind: "end", epoch: a.epoch, index: a.index, size: a.size })
      ).pipe(Effect.zipRight(Effect.never), Effect.scoped)
    )

  /** Members working right now, by label. */
  const working = () => [...open.values()]

  return { marks, violations, track, working }
})

/** G1 once converged: the members work in one epoch with indices exactly 0..N-1. */
export const exactCover = (working: ReadonlyArray<Mark>, n: number): boolean => {
  if (working.length !== n) return false
  const epochs = new Set(working.map((w) => w.epoch))
  const indices = working.map((w) => w.index).sort((a, b) => a - b)
  return epochs.size === 1 && working.every((w) => w.size === n) && indices.every((x, i) => x === i)
}
