/**
 * Fenced transactions in slots mode (docs/slots.md, "`fenced` in slots mode"), against real
 * PostgreSQL, with real statements interleaved: the membership changes and releases are the store's
 * own (`PgMembershipStore`, database clock), run by hand so nothing renews or reaps behind the test's
 * back. A fenced transaction commits only while its member holds each slot at the generation given;
 * a release waits for it (FOR KEY SHARE on the slot row against the release's generation bump); a
 * change that only retargets owners does not; the commit-time trigger re-checks holder and generation.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Layer } from "effect"
import { randomUUID } from "node:crypto"
import * as Fenced from "../../src/Fenced.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import { readCommitted } from "../../src/internal/pg/transaction.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { ownLockWaiters, PgLive, randomGroupId } from "../support/Database.js"
import { waitForEffect } from "../support/Wait.js"
import { stallingBeforeCommit } from "./support.js"

const StoreLive = PgMembershipStore.layerUsingNotifier().pipe(Layer.provideMerge(Notifier.layer), Layer.provideMerge(PgLive))
const info = (name: string) => ({ memberId: randomUUID(), name, host: "test-host", pid: 4242 })

const setup = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const store = yield* MembershipStore
    const groupId = randomGroupId(prefix)
    const table = `slots_${groupId.replace(/-/g, "_")}`
    yield* Effect.acquireRelease(
      sql`CREATE TABLE ${sql(table)} (note text NOT NULL)`,
      () => Effect.orDie(Effect.all([sql`DROP TABLE IF EXISTS ${sql(table)}`, sql`DELETE FROM modulo_group.groups WHERE group_id = ${groupId}`]))
    )
    const insert = (note: string) => sql`INSERT INTO ${sql(table)} (note) VALUES (${note})`
    const notes = Effect.map(sql<{ note: string }>`SELECT note FROM ${sql(table)} ORDER BY note`, (rows) => rows.map((r) => r.note))
    const target = (memberId: string, slots: ReadonlyArray<{ slot: number; generation: number }>): Fenced.FenceTarget => ({
      groupId,
      memberId,
      epoch: -1,
      index: -1,
      size: 0,
      slots
    })
    const row = (slot: number) => Effect.map(store.slotRows(groupId), (rows) => rows[slot]!)
    const leftovers = Effect.map(
      sql<{ n: string }>`SELECT count(*) AS n FROM modulo_group.fence_checks WHERE group_id = ${groupId}`,
      (rows) => Number(rows[0]!.n)
    )
    /** Whether a backend of this test's pool (files run in parallel) waits for a lock in a statement matching `pattern`. */
    const waitingOnLock = (pattern: string) => Effect.map(ownLockWaiters(pattern), (n) => n > 0)
    return { sql, store, groupId, insert, notes, target, row, leftovers, waitingOnLock }
  })

it.live("the holder at its generation commits; another generation, another member or a slot not held fails with StaleAssignment", () =>
  Effect.gen(function*() {
    const t = yield* setup("fence-slots")
    const [a, b] = [info("a"), info("b")]
    yield* t.store.join(t.groupId, a, 60_000, {}, { slots: 4 })
    yield* t.store.join(t.groupId, b, 60_000, {}, { slots: 4 })
    // a holds all four at generation 1 (b owns 2 and 3, waiting for a's release).
    yield* Fenced.fencedWith(t.target(a.memberId, [{ slot: 0, generation: 1 }, { slot: 2, generation: 1 }]), t.insert("a-0-2"))
    const wrongGeneration = yield* Effect.flip(Fenced.fencedWith(t.target(a.memberId, [{ slot: 0, generation: 0 }]), t.insert("x")))
    expect(wrongGeneration._tag).toBe("StaleAssignment")
    expect(wrongGeneration.message).toMatch(/slot 0 is at generation 1, not 0/)
    // No epoch in slots mode's fences: not "of epoch -1".
    expect(wrongGeneration.message).toMatch(/^Assignment is stale: /)
    const notHolder = yield* Effect.flip(Fenced.fencedWith(t.target(b.memberId, [{ slot: 2, generation: 1 }]), t.insert("x")))
    expect(notHolder.message).toMatch(/slot 2 is held by another member now/)
    const noSlot = yield* Effect.flip(Fenced.fencedWith(t.target(a.memberId, [{ slot: 9, generation: 1 }]), t.insert("x")))
    expect(noSlot.message).toMatch(/the group has no slot 9/)
    expect(yield* t.notes).toEqual(["a-0-2"])
    expect(yield* t.leftovers).toBe(0)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)))

// No epoch in slots mode's fences: a timeout or a broken fence does not speak of "epoch -1" either
// (an outsider's review: the FenceTimeout said "Fenced transaction of epoch -1 exceeded ..."; failed before).
it.live("a slots-mode fence's FenceTimeout and FenceBroken name no epoch", () =>
  Effect.gen(function*() {
    const t = yield* setup("fence-slots-msg")
    const a = info("a")
    yield* t.store.join(t.groupId, a, 60_000, {}, { slots: 2 })
    const target = t.target(a.memberId, [{ slot: 0, generation: 1 }])
    const timedOut = yield* Effect.flip(Fenced.fencedWith(target, t.sql`SELECT pg_sleep(0.5)`, { timeout: "100 millis" }))
    expect(timedOut._tag).toBe("FenceTimeout")
    expect(timedOut.message).toMatch(/^Fenced transaction exceeded its 100 ms limit/)
    const broken = yield* Effect.flip(Fenced.fencedWith(target, t.sql`COMMIT`))
    expect(broken._tag).toBe("FenceBroken")
    expect(broken.message).toMatch(/^Fenced transaction was broken: /)
    expect(yield* t.leftovers).toBe(0)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)))

it.live("a stale holder (lease expired, reaped, its slot handed over) cannot commit; the new holder can", () =>
  Effect.gen(function*() {
    const t = yield* setup("fence-slots-reaped")
    const [a, b] = [info("a"), info("b")]
    yield* t.store.join(t.groupId, a, 400, {}, { slots: 2 })
    yield* t.store.join(t.groupId, b, 60_000, {}, { slots: 2 })
    // a stops renewing: once its lease has run out on the database clock, b's reap hands slot 0 and 1 over.
    yield* waitForEffect(Effect.map(t.store.reap(t.groupId), (n) => n === 1), Duration.seconds(5), "a reaped")
    expect(yield* t.row(0)).toMatchObject({ owner: b.memberId, holder: b.memberId, generation: 2 })
    const stale = yield* Effect.flip(Fenced.fencedWith(t.target(a.memberId, [{ slot: 0, generation: 1 }]), t.insert("stale")))
    expect(stale._tag).toBe("StaleAssignment")
    yield* Fenced.fencedWith(t.target(b.memberId, [{ slot: 0, generation: 2 }]), t.insert("new holder"))
    expect(yield* t.notes).toEqual(["new holder"])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)))

it.live("interleaved: a release of the slot waits for the holder's fenced transaction, which commits; after it, the old generation fails", () =>
  Effect.gen(function*() {
    const t = yield* setup("fence-slots-release")
    const [a, b] = [info("a"), info("b")]
    yield* t.store.join(t.groupId, a, 60_000, {}, { slots: 2 })
    yield* t.store.join(t.groupId, b, 60_000, {}, { slots: 2 })
    const inside = yield* Deferred.make<void>()
    const proceed = yield* Deferred.make<void>()
    const fenced = yield* Effect.fork(Fenced.fencedWith(
      t.target(a.memberId, [{ slot: 1, generation: 1 }]),
      Effect.all([t.insert("in flight"), Deferred.succeed(inside, undefined), Deferred.await(proceed)]),
      { timeout: "10 seconds" }
    ))
    yield* Deferred.await(inside)
    // a's release of slot 1 (its own, say from another fiber that saw it stop): it waits on the row lock.
    const release = yield* Effect.fork(t.store.releaseSlots(t.groupId, a.memberId, [{ slot: 1, generation: 1 }]))
    yield* waitForEffect(t.waitingOnLock("%UPDATE modulo_group.slots s%SET holder = s.owner%"), Duration.seconds(5), "release waiting")
    expect(yield* t.row(1)).toMatchObject({ holder: a.memberId, generation: 1 })
    yield* Deferred.succeed(proceed, undefined)
    yield* Fiber.join(fenced)
    expect(yield* Fiber.join(release)).toEqual([1])
    expect(yield* t.row(1)).toMatchObject({ owner: b.memberId, holder: b.memberId, generation: 2 })
    const after = yield* Effect.flip(Fenced.fencedWith(t.target(a.memberId, [{ slot: 1, generation: 1 }]), t.insert("late")))
    expect(after._tag).toBe("StaleAssignment")
    expect(yield* t.notes).toEqual(["in flight"])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)))

it.live("interleaved: a change that only retargets owners (a join) does not wait for a fenced transaction; the holder still commits", () =>
  Effect.gen(function*() {
    const t = yield* setup("fence-slots-join")
    const [a, b] = [info("a"), info("b")]
    yield* t.store.join(t.groupId, a, 60_000, {}, { slots: 4 })
    // Inside a's fenced transaction on slot 3, b joins (slot 3 becomes b's target): the join commits
    // while the transaction holds its locks (else this would wait for it, past the join's timeout).
    const joined = yield* Fenced.fencedWith(
      t.target(a.memberId, [{ slot: 3, generation: 1 }]),
      Effect.zipLeft(t.store.join(t.groupId, b, 60_000, {}, { slots: 4 }), t.insert("during join")),
      { timeout: "5 seconds" }
    )
    expect(joined.slots?.pending).toEqual([2, 3])
    expect(yield* t.row(3)).toMatchObject({ owner: b.memberId, holder: a.memberId, generation: 1 })
    expect(yield* t.notes).toEqual(["during join"])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)))

it.live("the commit-time check: a fence_checks row of a slot at another generation, or another holder, fails the COMMIT (MGF01)", () =>
  Effect.gen(function*() {
    const t = yield* setup("fence-slots-commit")
    const a = info("a")
    yield* t.store.join(t.groupId, a, 60_000, {}, { slots: 2 })
    const queue = (memberId: string, generation: number) =>
      readCommitted(t.sql, Effect.zipRight(
        t.insert(`${memberId === a.memberId ? "a" : "other"}@${generation}`),
        t.sql`INSERT INTO modulo_group.fence_checks (member_id, group_id, slot, generation)
              VALUES (${memberId}, ${t.groupId}, 0, ${generation})`
      )).pipe(Effect.flatMap(() => Effect.void))
    const wrong = yield* Effect.flip(queue(a.memberId, 7))
    expect(String((wrong as { cause?: { code?: string } }).cause?.code)).toBe(Fenced.commitCheckSqlState)
    expect(String(wrong.cause)).toMatch(/slot 0 is at generation 1 at COMMIT, not 7 of this member/)
    yield* queue(a.memberId, 1)
    // A member that is not the holder: its row is missing too, which is checked first.
    const other = yield* Effect.flip(queue(randomUUID(), 1))
    expect(String((other as { cause?: { code?: string } }).cause?.code)).toBe(Fenced.commitCheckSqlState)
    expect(yield* t.notes).toEqual([`a@1`])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)))

it.live("interleaved: a release sent while its member's own change (a leave) runs waits for the change's lock on the slot rows, then is a no-op", () =>
  Effect.gen(function*() {
    // The leave pauses after reading the slot rows (FOR NO KEY UPDATE) and before writing them. A
    // release that did not wait would commit in between (holder := owner, generation 2), and the
    // leave's UPDATE, computed from its read, would then bump the slot again under a holder that may
    // have started it at generation 2.
    const paused = yield* Deferred.make<void>()
    const resume = yield* Deferred.make<void>()
    const onStatement = (operation: string, step: string) =>
      operation === "leave" && step === "handoff"
        ? Effect.zipRight(Deferred.succeed(paused, undefined), Deferred.await(resume))
        : Effect.void
    const Pausing = PgMembershipStore.layerUsingNotifier({ onStatement }).pipe(
      Layer.provideMerge(Notifier.layer),
      Layer.provideMerge(PgLive)
    )
    yield* Effect.gen(function*() {
      const t = yield* setup("fence-slots-release-change")
      const [a, b] = [info("a"), info("b")]
      yield* t.store.join(t.groupId, a, 60_000, {}, { slots: 2 })
      yield* t.store.join(t.groupId, b, 60_000, {}, { slots: 2 })
      expect(yield* t.row(1)).toMatchObject({ owner: b.memberId, holder: a.memberId, generation: 1 })
      const leave = yield* Effect.fork(t.store.leave(t.groupId, a.memberId))
      yield* Deferred.await(paused)
      const release = yield* Effect.fork(t.store.releaseSlots(t.groupId, a.memberId, [{ slot: 1, generation: 1 }]))
      yield* waitForEffect(t.waitingOnLock("%UPDATE modulo_group.slots s%SET holder = s.owner%"), Duration.seconds(5), "release waiting")
      yield* Deferred.succeed(resume, undefined)
      expect(yield* Fiber.join(leave)).toBe(true)
      // After the leave: a's row is gone, so the release (re-checked on the new rows) releases nothing.
      expect(yield* Fiber.join(release)).toEqual([])
      expect(yield* t.store.slotRows(t.groupId)).toEqual([
        { slot: 0, owner: b.memberId, holder: b.memberId, generation: 2 },
        { slot: 1, owner: b.memberId, holder: b.memberId, generation: 2 }
      ])
    }).pipe(Effect.scoped, Effect.provide(Pausing))
  }))


/**
 * (an adversarial review) A fence naming no slots queued no commit-time check at all (one fence_checks
 * row per slot: none): with the client stalled 700 ms before COMMIT, its write committed ~340 ms after
 * the member's lease ended. Reachable as `fenced(effect, { slots: yield* membership.owned })` with
 * nothing owned. Now refused (StaleAssignment), nothing sent. Control: one held slot, the same stall,
 * fails at COMMIT.
 */
it.live("a fence naming no slots is refused (it would check nothing at COMMIT); with a slot, a stall before COMMIT past the lease fails", () =>
  Effect.gen(function*() {
    const t = yield* setup("fence-no-slots")
    const a = info("a")
    yield* t.store.join(t.groupId, a, 60_000, {}, { slots: 4 })
    const setLease = (ms: number) =>
      t.sql`UPDATE modulo_group.members SET lease_expires_at = clock_timestamp() + ${`${ms} milliseconds`}::interval
             WHERE member_id = ${a.memberId}`
    const stalled = (slots: ReadonlyArray<{ slot: number; generation: number }>, note: string) =>
      Effect.either(Fenced.fencedWith(t.target(a.memberId, slots), t.insert(note)).pipe(
        Effect.provideService(SqlClient.SqlClient, stallingBeforeCommit(t.sql, "700 millis"))
      ))
    yield* setLease(400)
    const control = yield* stalled([{ slot: 0, generation: 1 }], "one slot")
    yield* setLease(400)
    const noSlots = yield* stalled([], "no slots")
    expect(control._tag === "Left" && control.left._tag).toBe("StaleAssignment")
    expect(noSlots._tag === "Left" && noSlots.left._tag).toBe("StaleAssignment")
    expect(noSlots._tag === "Left" && noSlots.left.message).toMatch(/no slots were given/)
    // G6: nothing commits once the lease has ended before COMMIT.
    expect(yield* t.notes).toEqual([])
    expect(yield* t.leftovers).toBe(0)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)))
