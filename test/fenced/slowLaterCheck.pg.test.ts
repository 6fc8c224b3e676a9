/**
 * G6, a review of migration 0018's first form: a row's commit-time check read the lease first and did
 * its other work after (the slots' join, which the session's planner settings or the row's size make
 * slow), and a check queued after a block's own ran after that block's lease had been read. Either way
 * the COMMIT could land past a lease read as live (the review: 3.0-5.1 s past it with a fenced body's
 * `SET LOCAL enable_indexscan = off` and the like; 8-66 ms with JIT compiling the join at COMMIT;
 * 290 ms with a slot named a million times). Now every check reads the leases last: its own member's,
 * and those of every member the transaction's fences recorded (`modulo_group.fenced`).
 *
 * Here the slow check is a row the app inserts into `fence_checks` by hand after the fenced block (the
 * app's role may insert there): one slot of a slots member B named two million times, about a second
 * of work at COMMIT whatever the plan. The app commits with 300 ms of the fenced member's lease left.
 * - B's own fenced block, then the slow row of B: the slow row's lease read comes after its join.
 * - A's fenced block (modulo mode), then the slow row of B (lease 60 s): the slow row reads A's lease
 *   too, as A's block recorded it.
 */
import { expect, it } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import * as Fenced from "../../src/Fenced.js"
import type { FenceTarget } from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture, slotsGroup, writeObserved } from "./support.js"

const scenario = (which: "own" | "recorded", slow: boolean) =>
  Effect.gen(function*() {
    const a = yield* fixture("slow-later-check")
    const b = yield* slotsGroup(1, "slow-later-check-b")
    const sql = a.sql
    const note = `${which} ${slow}`
    // The member whose write the app fences: B (slots) or A (modulo); its lease is the one judged.
    const fenced: { readonly target: FenceTarget; readonly memberId: string } = which === "own"
      ? { target: b.target, memberId: b.memberId }
      : { target: a.target, memberId: a.memberId }
    const observed = yield* writeObserved(sql, { memberId: fenced.memberId, table: a.table, note, leftMs: 300 })
    yield* sql`UPDATE modulo_group.members SET lease_expires_at = clock_timestamp() + interval '3 seconds'
                WHERE member_id = ${fenced.memberId}`
    const result = yield* Effect.exit(sql.withTransaction(Effect.gen(function*() {
      yield* Fenced.fencedWith(fenced.target, a.insert(note), { timeout: "5 seconds" })
      if (slow) {
        yield* sql`INSERT INTO modulo_group.fence_checks (member_id, group_id, slots, generations)
                   VALUES (${b.memberId}::uuid, ${b.groupId}, array_fill(0, ARRAY[2000000]), array_fill(1::int8, ARRAY[2000000]))`
      }
      yield* observed.beforeCommit
    })))
    const past = yield* observed.pastLeaseMs
    return {
      error: Exit.isFailure(result)
        ? ((Cause.squash(result.cause) as { cause?: { message?: string } }).cause?.message ?? Cause.pretty(result.cause))
        : undefined,
      written: (yield* a.notes).includes(note),
      committedPastLeaseMs: past
    }
  }).pipe(Effect.scoped)

it.live("G6: a check queued after a fenced block's own, slow at COMMIT, does not let the block's write commit past its lease", () =>
  Effect.gen(function*() {
    for (const which of ["own", "recorded"] as const) {
      // Control: without the slow row the write commits, 300 ms before the lease's end.
      const control = yield* scenario(which, false)
      expect(control.error).toBeUndefined()
      expect(control.written).toBe(true)
      expect(control.committedPastLeaseMs ?? -1).toBeLessThan(0)
      // With it: committed within the lease, or not at all (the COMMIT fails naming the lease).
      const slow = yield* scenario(which, true)
      if (slow.written) expect(slow.committedPastLeaseMs ?? -1).toBeLessThan(0)
      else expect(slow.error).toMatch(which === "own" ? /the lease expired \d+ ms before COMMIT/ : /the lease of member \S+ of group \S+, fenced in this transaction, expired \d+ ms before COMMIT/)
    }
  }).pipe(Effect.provide(PgLive)), 120_000)
