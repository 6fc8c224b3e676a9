/**
 * The interleaving explorer in slots mode (see slotsHarness.ts): for every ordered pair (A, B) of
 * slot-mode store operations (join, leave, reap, a rejoin with the same member id, a release, a
 * retake, two renewals, three fenced transactions with `{ slots }`) and every statement boundary k of
 * A, and for a few longer B sequences (a release, then the new owner's renewal and fenced
 * transaction; a rejoin, then a late release or fenced transaction of the earlier row), B runs while
 * A is paused before its k-th statement. The checks (`checkSlots`) run on every committed state and
 * every pair of consecutive ones. Then three mutants of the slot statements must each be caught.
 */

import { expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { ownDatabase, PgLive } from "../support/Database.js"
import { explorerWriter, makeObserver, onStatement } from "./harness.js"
import {
  checkSlots,
  countSlotSteps,
  installSlotLog,
  type Mutant,
  mutantHits,
  mutants,
  runSlotSchedule,
  type SlotOperation,
  slotOperations,
  type SlotSchedule,
  type SlotScheduleResult
} from "./slotsHarness.js"

const changes: ReadonlyArray<SlotOperation> = ["join-d", "leave-a", "reap", "rejoin-a"]
const mutantTargets: Record<Mutant, (ops: ReadonlySet<SlotOperation>) => boolean> = {
  // a change against a release or a retake
  "change-reads-unlocked": (ops) => changes.some((c) => ops.has(c)) && (ops.has("release-a") || ops.has("retake-a")),
  // a rejoin against the earlier row's release or fenced transactions
  "rejoin-keeps-generations": (ops) =>
    ops.has("rejoin-a") && (ops.has("release-a") || ops.has("fenced-a0") || ops.has("fenced-a2")),
  // a release against anything that moves its slot's generation
  "release-ignores-generation": (ops) =>
    ops.has("release-a") && (changes.some((c) => ops.has(c)) || ops.has("retake-a"))
}

const slotDatabase = ownDatabase("slotexplorer", { maxConnections: 8, applicationName: "mg-explorer" })

/** B sequences beyond pairs: a handoff end to end, a rejoin against its earlier row's stragglers. */
const sequences: ReadonlyArray<readonly [SlotOperation, ReadonlyArray<SlotOperation>]> = [
  ["fenced-a2", ["release-a", "hb-c", "fenced-c2"]],
  ["release-a", ["hb-c", "fenced-c2"]],
  ["release-a", ["hb-a", "hb-a"]],
  ["hb-c", ["release-a", "fenced-c2"]],
  ["fenced-c2", ["release-a", "hb-c"]],
  ["fenced-a2", ["leave-a", "hb-c", "fenced-c2"]],
  ["join-d", ["release-a", "hb-c", "fenced-c2"]],
  ["leave-a", ["release-a", "hb-c", "fenced-c2"]],
  ["reap", ["release-a", "hb-c"]],
  ["rejoin-a", ["release-a", "fenced-a0", "fenced-a2"]],
  ["release-a", ["rejoin-a", "fenced-a0"]],
  ["fenced-a0", ["rejoin-a", "hb-a"]],
  ["retake-a", ["release-a", "hb-a", "join-d"]],
  ["rejoin-a", ["retake-a", "hb-a"]]
]

it.live("slots mode: every statement-level interleaving keeps one holder per slot, fenced commits only by the holder, and mutants are caught", () =>
  Effect.gen(function*() {
    const db = yield* slotDatabase
    const observer = yield* makeObserver(db.url)
    yield* Effect.gen(function*() {
      yield* PgMembershipStore.prepare({ migrate: true })
      yield* observer.query(installSlotLog)
      // One writer for both stores: B runs a member's operations beside A's as that member's own
      // process would (its heartbeat beside its rejoin), in the database, not queued in one store.
      const writer = explorerWriter
      const store = yield* PgMembershipStore.make({ onStatement, statementTimeout: "10 seconds", writer })
      const storeB = yield* PgMembershipStore.make({ onStatement, statementTimeout: "10 seconds", writer })

      const steps = new Map<SlotOperation, ReadonlyArray<string>>()
      for (const op of slotOperations) steps.set(op, yield* countSlotSteps(op, store, observer))
      const schedules: Array<SlotSchedule> = []
      // For a quick look while working on it: SLOT_EXPLORER_A=leave-a,rejoin-a (A operations only).
      const onlyA = process.env.SLOT_EXPLORER_A?.split(",")
      for (const a of slotOperations.filter((op) => onlyA === undefined || onlyA.includes(op))) {
        for (const b of slotOperations) {
          for (let k = 0; k <= steps.get(a)!.length; k++) schedules.push({ a, b: [b], k })
        }
      }
      for (const [a, b] of sequences.filter(([op]) => onlyA === undefined || onlyA.includes(op))) {
        for (let k = 0; k <= steps.get(a)!.length; k++) schedules.push({ a, b, k })
      }

      const explore = (mutant: Mutant | undefined, among: ReadonlyArray<SlotSchedule> = schedules) =>
        Effect.gen(function*() {
          const started = Date.now()
          const results: Array<SlotScheduleResult> = []
          const violations: Array<string> = []
          for (const schedule of among) {
            const r = yield* runSlotSchedule(schedule, store, observer, storeB, mutant)
            results.push(r)
            for (const v of checkSlots(r)) {
              violations.push(`${schedule.a} paused before ${r.pausedAt} (k=${schedule.k}), ${schedule.b.join("+")} ${r.b}: ${v}`)
            }
          }
          const blocked = results.filter((r) => r.b === "blocked").length
          const slow = results.filter((r) => r.b === "slow").length
          const slowest = Math.max(...results.map((r) => r.ms))
          const failing = new Set(violations.map((v) => v.split(":")[0])).size
          // What kind: (4) a holder's slot taken, (2) work under a lost slot, (5) a fenced commit, ...
          const kinds = new Map<string, number>()
          for (const v of violations) {
            const kind = /taken from/.test(v) ? "slot taken from a live holder" :
              /works slot/.test(v) ? "work on a slot held elsewhere" :
              /committed in/.test(v) ? "fenced commit by a non-holder" :
              /worked by/.test(v) ? "two rows work one slot" :
              /went back/.test(v) ? "generation went back" :
              /failed/.test(v) ? "operation failed" : "other"
            kinds.set(kind, (kinds.get(kind) ?? 0) + 1)
          }
          console.log(
            `slots explorer${mutant === undefined ? "" : ` [mutant ${mutant}]`}: ${results.length} schedules in ${
              ((Date.now() - started) / 1000).toFixed(1)
            } s (B blocked on A in ${blocked}, neither done nor blocked in ${slow}; slowest ${slowest} ms); ` +
              `${violations.length} violation(s) in ${failing} schedule(s)` +
              (kinds.size === 0 ? "" : ` (${[...kinds].map(([k, n]) => `${k}: ${n}`).join(", ")})`)
          )
          return { results, violations, blocked, slow }
        })

      console.log(`slots explorer steps: ${[...steps].map(([op, s]) => `${op}=${s.length}`).join(" ")}`)
      const real = yield* explore(undefined)
      if (real.violations.length > 0) console.log(real.violations.slice(0, 40).join("\n"))
      expect(real.violations).toEqual([])
      expect(real.slow).toBe(0)
      expect(real.blocked).toBeGreaterThan(20)

      const timing = new Map<string, Array<number>>()
      for (const r of real.results) {
        const key = `${r.schedule.a}/${r.schedule.b.join("+")}`
        timing.set(key, [...(timing.get(key) ?? []), r.ms])
      }
      console.log([...timing].map(([k, ms]) => [k, ms.reduce((x, y) => x + y, 0) / ms.length] as const)
        .sort((x, y) => y[1] - x[1]).slice(0, 12).map(([k, ms]) => `${k} ${ms.toFixed(0)} ms`).join("; "))
      const onlyMutants = process.env.SLOT_EXPLORER_MUTANTS?.split(",")
      for (const mutant of (Object.keys(mutants) as Array<Mutant>).filter((m) => onlyMutants === undefined || onlyMutants.includes(m))) {
        // The schedules where the mutated statement meets what it guards against (all of them with
        // SLOT_EXPLORER_MUTANTS_FULL=1).
        const among = process.env.SLOT_EXPLORER_MUTANTS_FULL === "1"
          ? schedules
          : schedules.filter((x) => mutantTargets[mutant](new Set([x.a, ...x.b])))
        const m = yield* explore(mutant, among)
        const caughtBy = new Map<string, number>()
        for (const r of m.results) {
          if (checkSlots(r).length === 0) continue
          const key = `${r.schedule.a} vs ${r.schedule.b.join("+")}`
          caughtBy.set(key, (caughtBy.get(key) ?? 0) + 1)
        }
        console.log(`  caught in: ${[...caughtBy].map(([k, n]) => `${k} (${n})`).join(", ")}`)
        console.log(m.violations.slice(0, 2).join("\n"))
        expect(mutantHits[mutant] ?? 0).toBeGreaterThan(0)
        expect(m.violations.length).toBeGreaterThan(0)
      }
    }).pipe(Effect.provide(Notifier.layer.pipe(Layer.provideMerge(db.layer))), Effect.scoped)
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 600_000)
