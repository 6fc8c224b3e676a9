/**
 * A review of migration 0012 (2c51c89), what it did not cover: the fence (and the commit-time check) knows a member only by its id.
 * Two processes with one member id (an identity derived from the host, the case the fix names) and
 * one static instance id (the pod's name): the first freezes past its lease, the second's join takes
 * the row over (allowed: "its lease has run out"). A static takeover keeps the index AND the epoch
 * (no change) and, in slots mode, the slots' generations (`takeOver` does not `reissueHeldSlots`). The
 * first process, resuming with the assignment it had, runs a fenced transaction: group epoch, index,
 * member id, lease (renewed by the second's takeover), slot holder and generation all still match, so
 * its write of a superseded assignment COMMITTED while the second worked the same index (G3). With
 * distinct member ids the takeover renames the row and the same fenced transaction fails. Now a row of
 * the joiner's own member id that another store wrote is not taken over: the join is a change (a new
 * epoch, new slot generations), and the late fence fails.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Either, Layer } from "effect"
import * as Fenced from "../../src/Fenced.js"
import type { MemberInfo } from "../../src/MembershipStore.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"

const lease = 1_500
const info = (memberId: string, name: string, pid: number): MemberInfo => ({ memberId, name, host: "web-0", pid })

const scenario = (slots: number | undefined, sameId = true) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const table = `takeover_fence_${Math.random().toString(36).slice(2, 10)}`
    yield* sql.unsafe(`CREATE TABLE ${table} (who text)`)
    const groupId = randomGroupId(slots === undefined ? "static-fence" : "static-fence-slots")
    const id = crypto.randomUUID()
    const statics = { instanceId: "web-0", rejoinGraceMs: 60_000 }
    const opts = slots === undefined ? {} : { slots }
    const first = yield* PgMembershipStore.make()
    const second = yield* PgMembershipStore.make()
    const a = yield* first.join(groupId, info(id, "first", 1), lease, statics, opts)
    // The first process's target, as its work got it before it froze.
    const target: Fenced.FenceTarget = {
      groupId,
      memberId: id,
      epoch: a.epoch,
      index: a.index,
      size: a.size,
      ...(slots === undefined ? {} : {
        slots: a.slots!.held.map((h) => ({ slot: h.slot, generation: h.generation }))
      })
    }
    // Before the freeze the fence passes (sanity).
    yield* Fenced.fencedWith(target, sql`SELECT 1`)
    // It freezes past its lease (on the database clock); its pod restarts: same host-derived id.
    yield* Effect.sleep(lease + 300)
    const b = yield* second.join(groupId, info(sameId ? id : crypto.randomUUID(), "second", 2), 60_000, statics, opts)
    // The first process resumes and writes, fenced to the assignment it had.
    const late = yield* Effect.either(Fenced.fencedWith(target, sql.unsafe(`INSERT INTO ${table} VALUES ('first')`)))
    const committed = yield* sql.unsafe<{ who: string }>(`SELECT who FROM ${table}`)
    yield* sql.unsafe(`DROP TABLE ${table}`)
    return {
      first: { epoch: a.epoch, index: a.index },
      second: { epoch: b.epoch, index: b.index, takenOver: b.takenOver === true },
      lateFence: Either.isLeft(late) ? late.left._tag : "committed",
      committed: committed.map((r) => r.who)
    }
  }).pipe(Effect.scoped, Effect.provide(Notifier.layer.pipe(Layer.provideMerge(PgLive))))

it.live("modulo, static: a frozen process's fenced write of its superseded assignment does not commit after a takeover by its id", () =>
  Effect.gen(function*() {
    const facts = yield* scenario(undefined)
    expect(facts).toMatchObject({ second: { takenOver: false }, lateFence: "StaleAssignment", committed: [] })
    expect(facts.second.epoch).toBeGreaterThan(facts.first.epoch)
  }), 30_000)

it.live("slots, static: the same, fenced to the slots it held", () =>
  Effect.gen(function*() {
    const facts = yield* scenario(4)
    expect(facts).toMatchObject({ lateFence: "StaleAssignment", committed: [] })
  }), 30_000)

it.live("with a member id of its own, the second's takeover makes the same late fence fail", () =>
  Effect.gen(function*() {
    const facts = yield* scenario(undefined, false)
    expect(facts).toMatchObject({ second: { takenOver: true }, lateFence: "StaleAssignment", committed: [] })
  }), 30_000)
