/**
 * Rows written before migration 0012 have no `writer`: a release of the library before it is still
 * running them during a rolling upgrade (it renews, leaves and rejoins against the new schema, and
 * never writes a writer). An adversarial review of the upgrade found that this release took such a
 * row for its own: with one member id in two processes (against `MemberIdentity`'s contract, but the
 * case migration 0012 defends against), a new process's join deleted the old process's live row and
 * both worked `[0/1]` of one epoch (G1), and a static takeover kept the old process's epoch and index,
 * so its fenced write of the superseded assignment committed (G3). A row with no writer is now another
 * store's, as one that another store wrote. Here the old release's rows are made as it leaves them: a
 * row this test's first store wrote, its writer then cleared.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Either, Layer, Option } from "effect"
import * as Fenced from "../../src/Fenced.js"
import type { MemberInfo } from "../../src/MembershipStore.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { memberRowOf, PgLive, randomGroupId } from "../support/Database.js"

const info = (memberId: string, name: string, pid: number): MemberInfo => ({ memberId, name, host: "web-0", pid })

const rowOf = memberRowOf

/** The row as a release before migration 0012 leaves it: no writer. */
const writtenBefore0012 = (memberId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql`UPDATE modulo_group.members SET writer = NULL WHERE member_id = ${memberId}`)

it.live("a live row of an earlier release (no writer): a join with its member id is refused, and this store's renewals and leaves leave it alone", () =>
  Effect.gen(function*() {
    const old = yield* PgMembershipStore.make()
    const next = yield* PgMembershipStore.make()
    const groupId = randomGroupId("upgrade-live")
    const id = crypto.randomUUID()
    const view = yield* old.join(groupId, info(id, "old", 1), 60_000)
    yield* writtenBefore0012(id)
    const before = yield* rowOf(id)
    expect(before).toMatchObject({ writer: null, live: true, idx: 0 })
    const refused = yield* Effect.either(next.join(groupId, info(id, "new", 2), 60_000))
    expect(Either.isLeft(refused) && refused.left.message).toMatch(
      new RegExp(`member id ${id} is in use by a live member of group "${groupId}" \\(old on web-0, pid 1\\)`)
    )
    expect(yield* rowOf(id)).toEqual(before)
    expect(Option.isNone(yield* next.heartbeat(groupId, id, view.epoch, 60_000))).toBe(true)
    yield* next.leave(groupId, id)
    expect(yield* rowOf(id)).toEqual(before)
  }).pipe(Effect.scoped, Effect.provide(Notifier.layer.pipe(Layer.provideMerge(PgLive)))), 30_000)

it.live("a static row of an earlier release (no writer), its lease run out: a join with its member id and instance id is a change, not a takeover, and the old process's late fenced write fails", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const table = `upgrade_fence_${Math.random().toString(36).slice(2, 10)}`
    yield* sql.unsafe(`CREATE TABLE ${table} (who text)`)
    const old = yield* PgMembershipStore.make()
    const next = yield* PgMembershipStore.make()
    const groupId = randomGroupId("upgrade-static")
    const id = crypto.randomUUID()
    const statics = { instanceId: "web-0", rejoinGraceMs: 60_000 }
    const a = yield* old.join(groupId, info(id, "old", 1), 60_000, statics)
    yield* writtenBefore0012(id)
    const target: Fenced.FenceTarget = { groupId, memberId: id, epoch: a.epoch, index: a.index, size: a.size }
    yield* Fenced.fencedWith(target, sql`SELECT 1`)
    // The old process froze past its lease; its pod restarts on the new release, with the same id.
    yield* sql`UPDATE modulo_group.members SET lease_expires_at = now() - interval '1 second' WHERE member_id = ${id}`
    const b = yield* next.join(groupId, info(id, "new", 2), 60_000, statics)
    const late = yield* Effect.either(Fenced.fencedWith(target, sql.unsafe(`INSERT INTO ${table} VALUES ('old')`)))
    const committed = yield* sql.unsafe<{ who: string }>(`SELECT who FROM ${table}`)
    yield* sql.unsafe(`DROP TABLE ${table}`)
    expect({ takenOver: b.takenOver === true, later: b.epoch > a.epoch }).toEqual({ takenOver: false, later: true })
    expect(Either.isLeft(late) ? late.left._tag : "committed").toBe("StaleAssignment")
    expect(committed).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(Notifier.layer.pipe(Layer.provideMerge(PgLive)))), 30_000)
