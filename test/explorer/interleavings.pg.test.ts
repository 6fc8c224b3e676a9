/**
 * The statement-level interleaving explorer (see harness.ts): for every ordered pair (A, B) of store
 * operations (join, leave, reap, three kinds of heartbeat, members, a fenced transaction, a static
 * member's release, and a join with its instance id that takes its row over or is refused) and every
 * statement boundary k of A, B runs while A is paused before its k-th statement. After each
 * schedule: (i) every view returned is one committed state, (ii) G1 holds in every committed state,
 * one assignment per epoch, (iii) the member's decision on each view starts work only where the
 * database assigned it with the barrier down, (iv) every operation finishes within a bound, without
 * error; and a fenced transaction commits only while its target is current (G6).
 */

import { expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive } from "../support/Database.js"
import {
  check,
  countSteps,
  explorerDatabase,
  explorerWriter,
  installLog,
  makeObserver,
  onStatement,
  operations,
  runSchedule,
  type ScheduleResult
} from "./harness.js"

it.live("every statement-level interleaving of two store operations keeps views, G1, G2 and G6", () =>
  Effect.gen(function*() {
    const started = Date.now()
    const db = yield* explorerDatabase
    const observer = yield* makeObserver(db.url)
    yield* Effect.gen(function*() {
      // A long statement timeout: A pauses inside its transaction while B waits on its locks.
      yield* PgMembershipStore.prepare({ migrate: true })
      yield* observer.query(installLog)
      // One writer for both stores: B runs a member's operations beside A's as that member's own
      // process would (its heartbeat beside its rejoin), in the database, not queued in one store.
      const writer = explorerWriter
      const store = yield* PgMembershipStore.make({ onStatement, statementTimeout: "10 seconds", writer })
      // B runs as another process would, on a store of its own: it interleaves with A in the database.
      const storeB = yield* PgMembershipStore.make({ onStatement, statementTimeout: "10 seconds", writer })

      const steps = new Map<string, ReadonlyArray<string>>()
      for (const op of operations) steps.set(op, yield* countSteps(op, store, observer))

      const results: Array<ScheduleResult> = []
      const violations: Array<string> = []
      for (const a of operations) {
        for (const b of operations) {
          for (let k = 0; k <= steps.get(a)!.length; k++) {
            const r = yield* runSchedule({ a, b, k }, store, observer, storeB)
            results.push(r)
            for (const v of check(r)) violations.push(`${a} paused before ${r.pausedAt} (k=${k}), ${b} ${r.b}: ${v}`)
          }
        }
      }
      const blocked = results.filter((r) => r.b === "blocked").length
      const slow = results.filter((r) => r.b === "slow").length
      const slowest = Math.max(...results.map((r) => r.ms))
      console.log(
        `explorer: ${results.length} schedules in ${((Date.now() - started) / 1000).toFixed(1)} s ` +
          `(B blocked on A in ${blocked}, neither done nor blocked in ${slow}; slowest ${slowest} ms); steps: ` +
          [...steps].map(([op, s]) => `${op}=${s.length}`).join(" ")
      )
      if (violations.length > 0) console.log(violations.slice(0, 40).join("\n"))
      expect(violations).toEqual([])
      expect(slow).toBe(0)
      // The explorer explores: B really runs inside A's transactions, and waits on its locks.
      expect(blocked).toBeGreaterThan(20)
    }).pipe(Effect.provide(Notifier.layer.pipe(Layer.provideMerge(db.layer))), Effect.scoped)
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 180_000)


