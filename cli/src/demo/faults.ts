/**
 * The demo's fault plan: a member joins, one leaves (SIGTERM), one crashes (SIGKILL), one freezes
 * past its lease (SIGSTOP) and comes back (SIGCONT), one after the other, spread over the first
 * part of the planned drain; after each, the demo waits for the live members to converge and
 * records how long that took.
 *
 * @since 0.1.0
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { formatMillis } from "../Durations.js"
import type { Change, Output } from "./render.js"
import type { Proc, Supervisor } from "./supervisor.js"
import { placement, signal } from "./supervisor.js"

/**
 * The kinds of fault, in the order the demo injects them.
 *
 * @since 0.1.0
 * @internal
 */
export const faultKinds = ["join", "sigterm", "sigkill", "sigstop", "sigcont"] as const

/**
 * @since 0.1.0
 * @internal
 */
export type FaultKind = (typeof faultKinds)[number]

/**
 * @since 0.1.0
 * @internal
 */
export interface FaultPlan {
  readonly supervisor: Supervisor
  readonly output: Output
  /** The member started in standby, which the `join` fault lets in. */
  readonly joiner: Proc
  /** The epoch the group converged to at the start. */
  readonly initialEpoch: number
  /** When the items started to be released (ms since the Unix epoch). */
  readonly workStart: number
  readonly drainMs: number
  readonly leaseMs: number
  readonly heartbeatMs: number
  /** Reads the ledger's progress into `output`. */
  readonly poll: Effect.Effect<void>
  /** ms since the demo started. */
  readonly since: (t?: number) => number
  /** Slots mode: the slot count (the members' places are shown as slot counts). */
  readonly slots: number | undefined
}

/**
 * Injects the faults in order, each once the previous change settled, and reports how the group
 * took them. Stops, kills and freezes only while another member is left to do the work.
 *
 * @since 0.1.0
 * @internal
 */
export const run = (plan: FaultPlan) =>
  Effect.gen(function*() {
    const { joiner, leaseMs, heartbeatMs, output, supervisor } = plan
    const { live } = supervisor
    const say = output.say
    const changes: Array<Change> = []
    let epoch = plan.initialEpoch
    // Who gets stopped, killed and frozen: the live members in order, m1 last.
    const victims = () => live().filter((p) => p.name !== "m1").concat(live().filter((p) => p.name === "m1"))
    let frozen: Proc | undefined = undefined
    let frozenAt = 0
    for (const [i, kind] of faultKinds.entries()) {
      // Spread over the first part of the planned drain, each after the previous change settled.
      let due = plan.workStart + (plan.drainMs * (i + 1)) / 7
      if (kind === "sigcont") due = Math.max(due, frozenAt + leaseMs + heartbeatMs)
      const wait = Math.max(due - Date.now(), 300)
      yield* Effect.sleep(Duration.millis(wait))
      if (kind === "join") {
        const readyBy = Date.now() + 30_000
        while (!joiner.ready && joiner.exit === undefined && Date.now() < readyBy) yield* Effect.sleep(Duration.millis(20))
      }
      // Each fault lands on a settled group (every live member in one epoch and, in slots mode, every
      // slot worked, evenly). A member that fenced itself on a late renewal, or a slot still moving,
      // would otherwise begin its pause before the fault, where the fault's report cannot see it
      // (a CI run under load found 8 of 64 slots not worked when the join came).
      if ((yield* supervisor.awaitConvergence(epoch - 1, 10_000)) === undefined) {
        say(`fault ${i + 1}/5 (${kind}): the group has not settled within 10s; injecting it anyway`)
      }
      yield* plan.poll
      const at = Date.now()
      const doneBefore = output.progress().done
      const target: Proc | undefined = kind === "join"
        ? joiner
        : kind === "sigcont"
        ? frozen
        : live().length > 1
        ? victims()[0]
        : undefined
      if (target === undefined) {
        say(`fault ${i + 1}/5 (${kind}) skipped: no member to spare`)
        continue
      }
      switch (kind) {
        case "join":
          if (target.exit === undefined) target.status = "running"
          target.child.stdin!.write("join\n")
          say(`fault 1/5: ${target.name} joins the group`)
          break
        case "sigterm":
          target.status = "stopping"
          signal(target, "SIGTERM")
          say(`fault 2/5: SIGTERM ${target.name}: it stops its work and leaves the group`)
          break
        case "sigkill":
          target.status = "killed"
          signal(target, "SIGKILL")
          say(`fault 3/5: SIGKILL ${target.name}: a crash; the others wait for its lease (${formatMillis(leaseMs)}) to run out`)
          break
        case "sigstop":
          target.status = "frozen"
          signal(target, "SIGSTOP")
          frozen = target
          frozenAt = at
          say(`fault 4/5: SIGSTOP ${target.name}: frozen, maybe inside a transaction; the others reap it when its lease runs out`)
          break
        case "sigcont":
          if (target.exit === undefined) target.status = "running"
          signal(target, "SIGCONT")
          say(
            `fault 5/5: SIGCONT ${target.name} after ${formatMillis(at - frozenAt)} frozen: it finds its lease gone and rejoins`
          )
          break
      }
      const size = live().length
      const c = yield* supervisor.awaitConvergence(epoch, kind === "join" ? 45_000 : 4 * leaseMs + 15_000)
      if (c === undefined) {
        say(`no convergence at ${size} members after ${kind} ${target.name}; carrying on`)
      } else {
        epoch = c.epoch
        say(
          `converged: epoch ${c.epoch}, ${size} members ${
            live().map((p) => placement(p, plan.slots)).join(" ")
          } (${formatMillis(c.at - at)} after the change)`
        )
      }
      changes.push({
        kind,
        member: target.name,
        atMs: plan.since(at),
        doneBefore,
        size,
        epoch: c?.epoch ?? null,
        convergedMs: c === undefined ? null : Math.max(0, c.at - at)
      })
    }
    return changes
  })
