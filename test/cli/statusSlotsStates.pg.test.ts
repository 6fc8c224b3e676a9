/**
 * `status` in slots mode (an adversarial review): after a join it called the members that kept
 * working their slots `renegotiating` (docs/cli.md: "it is stopping its old work") and `awaiting` ("it
 * waits at the barrier"), for up to a heartbeat; slots mode has no barrier (docs/slots.md), and every
 * one of them kept working. Now a live member in slots mode is `assigned`.
 *
 * Set-up: S = 4; members A and C; B joins (heartbeat 2 s, notifications off: the rows acknowledge the
 * new epoch only at their next renewal). Right after B's join, while A and C still work slots they
 * held before, `status`'s snapshot is read.
 */
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Option, Scope } from "effect"
import * as Status from "../../cli/src/commands/status.js"
import * as Membership from "../../src/Membership.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"

it.live("slots mode: status never calls a member that works its slots renegotiating or awaiting (no barrier) after a join", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("status-slots")
    const running = new Map<string, Set<number>>() // member label -> slots whose run is running now
    const starts: Array<string> = []
    const member = (label: string) =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
        const m = yield* Membership.make({
          groupId, slots: 4, heartbeat: "2 seconds", lease: "10 seconds", notifications: false, name: label
        }).pipe(Scope.extend(scope))
        running.set(label, new Set())
        yield* m.whileOwning((o) =>
          Effect.acquireRelease(
            Effect.sync(() => { running.get(label)!.add(o.slot); starts.push(`${label}:${o.slot}`) }),
            () => Effect.sync(() => running.get(label)!.delete(o.slot))
          ).pipe(Effect.zipRight(Effect.never), Effect.scoped)
        ).pipe(Scope.extend(scope))
        return m
      })
    const a = yield* member("A")
    yield* a.awaitAssigned
    const c = yield* member("C")
    yield* c.awaitAssigned
    // Settle: every slot worked by A or C, every row acknowledging the epoch.
    for (let i = 0; i < 100; i++) {
      const snap = Option.getOrThrow(yield* Status.snapshot(groupId))
      if (running.get("A")!.size + running.get("C")!.size === 4 && snap.members.every((m) => m.state === "assigned")) break
      yield* Effect.sleep("100 millis")
    }
    const before = { A: new Set(running.get("A")), C: new Set(running.get("C")) }
    yield* member("B")
    yield* Effect.sleep("300 millis")
    const snap = Option.getOrThrow(yield* Status.snapshot(groupId))
    // Members that kept working slots they held before the join (no stop, no restart of those runs).
    const keptWorking = ["A", "C"].filter((l) => [...before[l as "A" | "C"]].some((s) => running.get(l)!.has(s)))
    expect(keptWorking.length).toBeGreaterThan(0)
    const claims = snap.members
      .filter((m) => keptWorking.includes(m.name) && (m.state === "renegotiating" || m.state === "awaiting"))
      .map((m) => `${m.name} shown ${m.state} while working slots ${[...running.get(m.name)!].join(",")}`)
    expect(claims).toEqual([])
  }).pipe(
    Effect.scoped,
    Effect.provide(Layer.unwrapEffect(Effect.sync(() =>
      PgMembershipStore.layer({ statementTimeout: "1 second" }).pipe(Layer.provideMerge(PgLive))
    )))
  ), { timeout: 30_000 })
