/**
 * G6, a review of migration 0018's first form, nested in an app's transaction with default planner
 * settings: a slots-mode target naming its one slot a million times (fencedWith accepted duplicates).
 * The COMMIT's check of the block's row read the lease, then joined the million entries: the write
 * committed 290-295 ms past the lease. Now `fencedWith` names each slot once (a slot named again at
 * the same generation is dropped; at another generation, or a number that is no slot, refused before
 * anything is sent), and the check reads the lease last.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture, slotsGroup, writeObserved } from "./support.js"

it.live("G6: a nested slots-mode block naming its slot a million times commits within its lease", () =>
  Effect.gen(function*() {
    const a = yield* fixture("duplicate-slots-dup")
    const b = yield* slotsGroup(1, "duplicate-slots-dup-b")
    const sql = a.sql
    const note = "dup"
    const target = { ...b.target, slots: Array.from({ length: 1_000_000 }, () => b.target.slots![0]!) }
    const observed = yield* writeObserved(sql, { memberId: b.memberId, table: a.table, note, leftMs: 300 })
    yield* sql`UPDATE modulo_group.members SET lease_expires_at = clock_timestamp() + interval '8 seconds' WHERE member_id = ${b.memberId}`
    const result = yield* Effect.either(sql.withTransaction(Effect.gen(function*() {
      yield* Fenced.fencedWith(target, Effect.gen(function*() {
        yield* a.insert(note)
        yield* sql`SET CONSTRAINTS ALL IMMEDIATE`
      }), { timeout: "15 seconds" })
      yield* observed.beforeCommit
    })))
    const past = yield* observed.pastLeaseMs
    const out = {
      ok: Either.isRight(result),
      error: Either.isLeft(result) ? String(result.left).slice(0, 200) : undefined,
      written: (yield* a.notes).includes(note),
      committedPastLeaseMs: past
    }
    if (out.written) expect(out.committedPastLeaseMs ?? -1).toBeLessThan(0)
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 120_000)

it.live("a slot named at two generations, or a number that is no slot, is refused before anything is sent", () =>
  Effect.gen(function*() {
    const b = yield* slotsGroup(4, "duplicate-slots-refused")
    const sql = yield* SqlClient.SqlClient
    const refused = (slots: ReadonlyArray<{ slot: number; generation: number }>) =>
      Effect.flip(Fenced.fencedWith({ ...b.target, slots }, sql`SELECT 1`))
    const twice = yield* refused([{ slot: 1, generation: 1 }, { slot: 2, generation: 1 }, { slot: 1, generation: 2 }])
    expect(twice._tag).toBe("StaleAssignment")
    expect(twice.message).toMatch(/slot 1 is named at generations 1 and 2/)
    for (const slot of [-1, 1.5, 16_384, Number.NaN]) {
      const error = yield* refused([{ slot, generation: 1 }])
      expect(error._tag).toBe("StaleAssignment")
      expect(error.message).toMatch(/is not a slot \(an integer from 0 to 16383\)/)
    }
    const generation = yield* refused([{ slot: 0, generation: -1 }])
    expect(generation.message).toMatch(/slot 0's generation -1 is not a generation/)
    // The same slot at the same generation twice: named once, and the fence goes through.
    expect(yield* Fenced.fencedWith({ ...b.target, slots: [{ slot: 3, generation: 1 }, { slot: 3, generation: 1 }] }, Effect.succeed("ok"))).toBe("ok")
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 30_000)
