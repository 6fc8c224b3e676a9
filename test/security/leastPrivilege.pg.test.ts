/**
 * Security: the least grants of docs/operations.md are enough, and each is needed. An owner role
 * migrates a database of the test's own; a login role that has only the grants copied from the doc
 * (CONNECT revoked from PUBLIC, so it must be granted too) runs members with `migrate: false`: join,
 * heartbeat, LISTEN/NOTIFY, reap, leave, fenced transactions and the status queries. Then each
 * grant is left out in turn, and something the library does must fail with permission denied.
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Layer, Option, Redacted, Stream } from "effect"
import { randomBytes } from "node:crypto"
import { fencedWith } from "../../src/Fenced.js"
import * as Migrations from "../../src/Migrations.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { documentedGrants, serialised } from "../support/Grants.js"
import { exactCover } from "../support/Recorder.js"
import { fast, freshDatabase, makeGroup, urlWith, waitFor } from "../faults/support.js"

/** A login role with a password, dropped (after the databases it has grants in) at scope end. */
const loginRole = Effect.acquireRelease(
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const name = `mg_app_${randomBytes(4).toString("hex")}`
    const password = `pw-${randomBytes(8).toString("hex")}`
    yield* sql.unsafe(`CREATE ROLE "${name}" LOGIN PASSWORD '${password}'`)
    return { name, password }
  }),
  ({ name }) => Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`DROP ROLE IF EXISTS "${name}"`)).pipe(Effect.orDie)
)

/** A migrated database; the role gets the documented grants minus `skip` (indices into the list). */
const setup = (skip: ReadonlyArray<number> = []) =>
  Effect.gen(function*() {
    const role = yield* loginRole
    const db = yield* freshDatabase
    const grants = documentedGrants(role.name).map((g) => g.replace("CURRENT_DATABASE_NAME", `"${db.name}"`))
    yield* Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* Migrations.run
      // Hardened: nothing through PUBLIC, so every privilege the role uses is one the doc grants.
      yield* sql.unsafe(serialised(`REVOKE ALL ON DATABASE "${db.name}" FROM PUBLIC`))
      yield* sql.unsafe(serialised(`REVOKE ALL ON SCHEMA public FROM PUBLIC`))
      for (const [i, grant] of grants.entries()) if (!skip.includes(i)) yield* sql.unsafe(serialised(grant))
    }).pipe(Effect.provide(db.layer), Effect.scoped)
    const url = new URL(urlWith({ user: role.name, password: role.password }))
    url.pathname = `/${db.name}`
    const layer = PgClient.layer({ url: Redacted.make(url.toString()), applicationName: "modulo-group-least", maxConnections: 10 })
    return { role, db, grants, url: url.toString(), layer }
  })

it.live("members run under a role with only the documented grants, migrate: false", () =>
  Effect.gen(function*() {
    const { layer, grants } = yield* setup()
    expect(grants.length).toBeGreaterThanOrEqual(4)
    yield* Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const [who] = yield* sql<{ user: string; superuser: string }>`SELECT current_user AS user, current_setting('is_superuser') AS superuser`
      expect(who!.superuser).toBe("off")
      // A long heartbeat: a fast join proves LISTEN/NOTIFY works for the role too.
      const { join, rec, groupId } = yield* makeGroup(randomGroupId("least"), { ...fast, heartbeat: "2 seconds", lease: "6 seconds" })
      const members = yield* Effect.forEach([1, 2, 3], () => join(), { concurrency: "unbounded" })
      yield* waitFor(() => exactCover(rec.working(), 3), Duration.seconds(20), "three members")
      const took = yield* Effect.zipRight(join(), waitFor(() => exactCover(rec.working(), 4), Duration.seconds(20)))
      expect(took).toBeLessThan(1_500)
      // A fenced transaction commits under the role.
      const m = members[0]!.m
      const a = yield* m.guard
      const fencedOk = yield* fencedWith(
        { groupId, memberId: m.memberId, epoch: a.epoch, index: a.index, size: a.size },
        Effect.as(sql`SELECT 1`, "committed")
      ).pipe(Effect.either)
      // (It may lose to a renegotiation; then it fails as stale, never with permission denied.)
      if (fencedOk._tag === "Left") expect(fencedOk.left._tag).toBe("StaleAssignment")
      else expect(fencedOk.right).toBe("committed")
      // A crash: the others reap it (DELETE, UPDATE) and re-form.
      yield* members[1]!.crash
      yield* waitFor(() => exactCover(rec.working(), 3), Duration.seconds(20), "reaped")
      // A graceful leave.
      yield* members[2]!.close
      yield* waitFor(() => exactCover(rec.working(), 2), Duration.seconds(20), "left")
      // The read side of `status` and `groups`.
      const store = yield* MembershipStore
      expect((yield* store.members(groupId)).length).toBe(2)
      expect(Option.isSome(yield* store.group(groupId))).toBe(true)
      expect((yield* store.groups).length).toBeGreaterThanOrEqual(1)
      expect(rec.violations).toEqual([])
    }).pipe(
      // Scoped inside: the members leave before the role's pool closes.
      Effect.scoped,
      Effect.provide(PgMembershipStore.layer({ migrate: false }).pipe(Layer.provideMerge(layer)))
    )
    // With migrate: true the role works too while the schema is current (nothing to apply).
    const applied = yield* Migrations.run.pipe(Effect.provide(layer), Effect.scoped)
    expect(applied).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 90_000)

it.live("the role cannot change the schema: a pending migration fails with permission denied, not a hang", () =>
  Effect.gen(function*() {
    const { layer, db } = yield* setup()
    // Pretend the schema is older than the library.
    yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql`DELETE FROM modulo_group.schema_migrations`).pipe(
      Effect.provide(db.layer),
      Effect.scoped
    )
    const started = Date.now()
    const error = yield* Effect.flip(
      Effect.scoped(Layer.build(PgMembershipStore.layer({ migrate: true, startupTimeout: "5 seconds" }).pipe(Layer.provide(layer))))
    )
    expect(error._tag).toBe("DatabaseUnavailable")
    expect(error.message).toMatch(/permission denied|must be owner/)
    // 42501 is not retried for the whole startup timeout.
    expect(Date.now() - started).toBeLessThan(4_000)
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 60_000)

/** Every database operation of the library, under the role; the first that fails, or "ok". */
const everything = Effect.gen(function*() {
  const store = yield* MembershipStore
  const sql = yield* SqlClient.SqlClient
  const groupId = randomGroupId("grant")
  const member = { memberId: crypto.randomUUID(), name: "n", host: "h", pid: 1 }
  const view = yield* store.join(groupId, member, 5_000)
  yield* store.heartbeat(groupId, member.memberId, view.epoch, 5_000)
  yield* store.members(groupId)
  yield* store.group(groupId)
  yield* store.groups
  yield* fencedWith(
    { groupId, memberId: member.memberId, epoch: view.epoch, index: view.index, size: view.size },
    sql`SELECT 1`
  )
  yield* store.reap(groupId)
  // Static membership: a waiter's row, for `status` (written at each busy retry, then deleted).
  const waiter = { memberId: crypto.randomUUID(), name: "w", host: "h", pid: 2 }
  yield* store.wait(groupId, waiter, "w1", 5_000)
  yield* store.waiters(groupId)
  yield* store.stopWaiting(groupId, waiter.memberId)
  yield* store.leave(groupId, member.memberId)
  // Slots mode: a group of 4 slots, its renewal, a fenced transaction on a held slot, a release and a
  // retake (no-ops here: nothing is owned by another member), the slot rows, a leave.
  const slotGroup = randomGroupId("grant-slots")
  const holder = { memberId: crypto.randomUUID(), name: "s", host: "h", pid: 3 }
  const joined = yield* store.join(slotGroup, holder, 5_000, {}, { slots: 4 })
  const renewed = yield* store.heartbeat(slotGroup, holder.memberId, joined.epoch, 5_000, { slots: true })
  const held = Option.getOrThrow(renewed).slots?.held ?? []
  if (held.length !== 4) throw new Error(`a lone slots-mode member should hold 4 slots, holds ${held.length}`)
  yield* fencedWith(
    { groupId: slotGroup, memberId: holder.memberId, epoch: joined.epoch, index: 0, size: 1, slots: [held[0]!] },
    sql`SELECT 1`
  )
  yield* store.releaseSlots(slotGroup, holder.memberId, [{ slot: 0, generation: held[0]!.generation }])
  yield* store.retakeSlot(slotGroup, holder.memberId, 0, held[0]!.generation)
  yield* store.slotRows(slotGroup)
  yield* store.leave(slotGroup, holder.memberId)
  const wakeups = yield* store.wakeups(groupId)
  void Stream.take(wakeups, 0)
})

const failureOf = (layer: Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, unknown>) =>
  everything.pipe(
    Effect.provide(PgMembershipStore.layer({ migrate: false, startupTimeout: "2 seconds" }).pipe(Layer.provideMerge(layer))),
    Effect.scoped,
    Effect.match({
      onFailure: (e) => {
        const error = e as { message?: unknown; cause?: { message?: unknown; code?: unknown } }
        return `${String(error.message ?? e)} ${String(error.cause?.message ?? "")} ${String(error.cause?.code ?? "")}`
      },
      onSuccess: () => "ok"
    })
  )

it.live("every documented grant is needed: without any one of them something fails with permission denied", () =>
  Effect.gen(function*() {
    const all = documentedGrants("x")
    const results: Array<string> = []
    for (const [i, grant] of all.entries()) {
      const outcome = yield* Effect.scoped(Effect.flatMap(setup([i]), ({ layer }) => failureOf(layer)))
      results.push(`${grant} -> ${outcome}`)
    }
    // Everything works with all of them (the positive control).
    const control = yield* Effect.scoped(Effect.flatMap(setup(), ({ layer }) => failureOf(layer)))
    expect(control).toBe("ok")
    for (const r of results) expect(r, r).toMatch(/ -> .*(permission denied|CONNECT privilege|42501)/)
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 120_000)
