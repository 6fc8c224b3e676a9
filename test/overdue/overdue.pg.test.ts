/**
 * A join while a member is overdue (crashed or hung: no renewal for a while, lease not run out yet),
 * on real PostgreSQL in real time: the working members must not stop for a barrier that the overdue
 * member cannot clear. The newcomer waits in a waiting row; the reap of the overdue member gives it
 * its index, in one change.
 */
import { expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { exactCover } from "../support/Recorder.js"
import { waitFor, waitForEffect } from "../support/Wait.js"
import { fast, StoreLive, withOverdueMember } from "./support.js"

it.live("a join while a member is overdue: the working members never stop until its lease runs out, then one change makes {old two + newcomer}", () =>
  Effect.gen(function*() {
    // c hangs: no renewal, no leave; its row stays until its lease (2 s) runs out.
    const { base, before, groupId, hungAt, join, rec, rowOf } = yield* withOverdueMember("overdue", fast("2 seconds"))
    const row = (yield* rowOf("c"))!
    const cExpiresAt = Date.now() + row.leaseLeftMs
    expect(row.leaseLeftMs).toBeGreaterThan(800)

    // A newcomer joins while c is overdue: it waits (a waiting row, no index), the group keeps working.
    const d = yield* join("d")
    yield* waitForEffect(
      Effect.map(base.members(groupId), (rows) => rows.some((r) => r.name === "d" && r.index === null)),
      undefined,
      "d waiting"
    )
    expect((yield* d.m.state)._tag).toBe("Joining")
    expect(Option.getOrThrow(yield* base.group(groupId))).toMatchObject({ epoch: before, size: 3 })

    // Once c's lease has run out, the group is {a, b, d}, one epoch after the one c was in.
    yield* waitFor(
      () => exactCover(rec.working(), 3) && rec.working().every((w) => w.member !== "c" && w.epoch > before),
      undefined,
      "a, b and d working"
    )
    expect(Option.getOrThrow(yield* base.group(groupId))).toMatchObject({ epoch: before + 1, size: 3 })
    expect(new Set(rec.working().map((w) => w.member))).toEqual(new Set(["a", "b", "d"]))

    // a and b stopped once, and only after c's lease had run out (before the change they kept working).
    for (const label of ["a", "b"]) {
      const ends = rec.marks.filter((mk) => mk.member === label && mk.kind === "end" && mk.at >= hungAt)
      expect(ends.map((e) => e.epoch)).toEqual([before])
      expect(ends[0]!.at).toBeGreaterThanOrEqual(cExpiresAt - 50)
      const starts = rec.marks.filter((mk) => mk.member === label && mk.kind === "start" && mk.at >= hungAt)
      expect(starts.map((s) => s.epoch)).toEqual([before + 1])
    }
    expect(rec.violations).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)
