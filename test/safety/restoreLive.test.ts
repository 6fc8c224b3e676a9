/**
 * A restore from a backup whose leases still run, then a join before the members renew (an
 * adversarial review, 2026-12-04, night; on PostgreSQL: `test/safety/postgres.pg.test.ts` "break 7,
 * leases still running"). The rows go back to epoch 2 while a and b work epoch 4; d's join makes
 * epoch 3 again; a's and b's renewals acknowledge 4, which used to count as acknowledging 3: d started
 * epoch 3 beside epoch 4's work, and a and b (a view older than theirs is ignored) worked on. Now an
 * acknowledgement ahead of the group's epoch lowers no barrier and asks for a reap, which moves the
 * group past every acknowledged epoch in a new incarnation. In-memory store, TestClock, default
 * config (heartbeat 1 s, lease 10 s).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { at, now, setup, until } from "./support.js"

describe("a restore with leases still running", () => {
  it.scoped("the joiner starts nobody's epoch beside the work of the members that went on; the group converges in a new incarnation", () =>
    Effect.gen(function*() {
      const groupId = "safety-restore-live"
      const { control, join, rec, store } = yield* setup(groupId)
      const group = Effect.map(Effect.orDie(store.groups), (gs) => gs.find((g) => g.groupId === groupId)!)
      yield* join({ name: "a" })
      yield* join({ name: "b" })
      yield* until(() => rec.working().length === 2 && rec.working().every((w) => w.size === 2))
      const restore = yield* control.snapshot
      const c = yield* join({ name: "c" })
      yield* until(() => rec.working().length === 3 && rec.working().every((w) => w.size === 3))
      yield* c.close
      yield* until(() => rec.working().length === 2 && rec.working().every((w) => w.size === 2))
      const epochBefore = rec.working()[0]!.epoch
      const groupBefore = yield* group
      yield* at((yield* now) + 100)
      // The restore, then d joins at once (before a and b renew).
      yield* restore
      yield* join({ name: "d" })
      yield* until(
        () => rec.working().length === 3 && rec.working().every((w) => w.size === 3 && w.epoch > epochBefore),
        15_000
      )
      // Never two epochs' work at once, never an index twice (checked at every start).
      expect(rec.violations).toEqual([])
      const starts = rec.marks.filter((m) => m.kind === "start")
      // Nobody started an epoch at or below the one a and b worked in after the restore.
      const restoredAt = starts.findIndex((m) => m.member === "d")
      expect(starts.slice(restoredAt).every((m) => m.epoch > epochBefore)).toBe(true)
      const groupAfter = yield* group
      expect(groupAfter.incarnation).toBeGreaterThan(groupBefore.incarnation)
    }))

  it.scoped("a restore that left every member working ahead, then a crash: nobody reaps while the database is behind; a join moves the group on", () =>
    Effect.gen(function*() {
      // A review (attack92): every view after such a restore is of an older epoch, and such a view
      // asks for no reap, so the crashed member's index stays unworked until a join or a leave.
      // Reaping from such views after a lease was tried and broken twice (attack94, attack95: a
      // member whose row the database lost still worked); the members say so instead (Transition).
      const groupId = "safety-restore-ahead"
      const { control, join, rec } = yield* setup(groupId)
      const [, , c] = [yield* join({ name: "a" }), yield* join({ name: "b" }), yield* join({ name: "c" })]
      yield* until(() => rec.working().length === 3 && rec.working().every((w) => w.size === 3))
      const restore = yield* control.snapshot
      const d = yield* join({ name: "d" })
      yield* until(() => rec.working().length === 4 && rec.working().every((w) => w.size === 4))
      yield* d.close
      yield* until(() => rec.working().length === 3 && rec.working().every((w) => w.size === 3 && w.epoch > 4))
      const epochBefore = rec.working()[0]!.epoch
      const startsBefore = rec.marks.filter((m) => m.kind === "start").length
      // The restore (epoch 3: a, b and c each acknowledge an epoch the group has not reached), and c crashes.
      yield* restore
      yield* control.hang(c.id)
      // Three leases on: a and b work on in the epoch they had, nobody started anything.
      yield* at((yield* now) + 30_000)
      expect(rec.marks.filter((m) => m.kind === "start").length).toBe(startsBefore)
      expect(rec.working().filter((w) => w.member !== c.name).every((w) => w.epoch === epochBefore)).toBe(true)
      // A join is a change: past every acknowledged epoch, without c.
      yield* join({ name: "e" })
      yield* until(
        () => rec.working().length === 3 && rec.working().every((w) => w.size === 3 && w.epoch > epochBefore && w.member !== c.name),
        60_000
      )
      expect(rec.violations).toEqual([])
    }))
})
