/**
 * One member id given to two members (against `MemberIdentity`'s contract: an app whose identity
 * derives the id from the host, or returns a constant). An adversarial review broke G1 and G2 with it
 * on real PostgreSQL: the second member's join deleted the first's live row as its own earlier row
 * (without it in the barrier) and started beside its work; the first's renewals, numbered from the
 * wall clock as the second's were, then applied to the second's row and took its index, and both
 * worked `[0/1]` of one epoch until the test ended. In one process (the same id in two groups), the
 * join into the second group deleted the first group's row while its member worked, and that group's
 * next change handed the index out beside it. Now the database tells the stores apart (`writer`,
 * migration 0012) and a process refuses a second live member with one id.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Either, Exit, Layer, Option } from "effect"
import * as Membership from "../../src/Membership.js"
import * as MembershipConfig from "../../src/MembershipConfig.js"
import type { MemberInfo } from "../../src/MembershipStore.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { memberRowOf, PgLive, randomGroupId } from "../support/Database.js"

const lease = 60_000
const info = (memberId: string, name: string, pid: number): MemberInfo => ({ memberId, name, host: `host-${name}`, pid })

const rowOf = memberRowOf

it.live("a member id live under another store (another process): the join refuses, naming that member; its row and renewals are untouched", () =>
  Effect.gen(function*() {
    const first = yield* PgMembershipStore.make()
    const second = yield* PgMembershipStore.make()
    const groupId = randomGroupId("reused-id")
    const other = randomGroupId("reused-id-other")
    const id = crypto.randomUUID()
    const view = yield* first.join(groupId, info(id, "first", 1), lease)
    const before = yield* rowOf(id)
    // The second process's member, with the same id: into the same group, and into another.
    for (const g of [groupId, other]) {
      const refused = yield* Effect.either(second.join(g, info(id, "second", 2), lease))
      expect(Either.isLeft(refused) && refused.left.message).toMatch(
        new RegExp(`member id ${id} is in use by a live member of group "${groupId}" \\(first on host-first, pid 1\\)`)
      )
    }
    expect(yield* rowOf(id)).toEqual(before)
    // Its renewals, leave and release do not reach the first's row either.
    expect(Option.isNone(yield* second.heartbeat(groupId, id, view.epoch, lease))).toBe(true)
    yield* second.leave(groupId, id)
    expect(yield* rowOf(id)).toEqual(before)
    // The first member renews as ever.
    expect(Option.getOrThrow(yield* first.heartbeat(groupId, id, view.epoch, lease))).toMatchObject({ index: 0, size: 1 })
  }).pipe(Effect.scoped, Effect.provide(Notifier.layer.pipe(Layer.provideMerge(PgLive)))), 30_000)

it.live("a member id whose row another store wrote once the first's lease ran out: the first store's late renewal and leave touch nothing", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const first = yield* PgMembershipStore.make()
    const second = yield* PgMembershipStore.make()
    const groupId = randomGroupId("reused-late")
    const id = crypto.randomUUID()
    const other = crypto.randomUUID()
    const a = yield* first.join(groupId, info(id, "first", 1), lease)
    yield* first.join(groupId, info(other, "other", 3), lease)
    // The first member froze past its lease (it stopped its work at its deadline: G3).
    yield* sql`UPDATE modulo_group.members SET lease_expires_at = now() - interval '1 second' WHERE member_id = ${id}`
    const b = yield* second.join(groupId, info(id, "second", 2), lease)
    const taken = yield* rowOf(id)
    expect(taken).toMatchObject({ name: "second", live: true })
    // The first member resumes: its renewal (numbered later than the second's join) finds no row of
    // its own, and its leave deletes nothing.
    expect(Option.isNone(yield* first.heartbeat(groupId, id, a.epoch, lease))).toBe(true)
    yield* first.leave(groupId, id)
    expect(yield* rowOf(id)).toEqual(taken)
    expect(Option.getOrThrow(yield* second.heartbeat(groupId, id, b.epoch, lease))).toMatchObject({ epoch: b.epoch, size: 2 })
  }).pipe(Effect.scoped, Effect.provide(Notifier.layer.pipe(Layer.provideMerge(PgLive)))), 30_000)

it.live("two live members of one process with one member id (here in two groups): the second is refused; once the first has left, the id is free", () =>
  Effect.gen(function*() {
    const id = crypto.randomUUID()
    const identity = { host: "test", pid: 1, newMemberId: Effect.succeed(id) }
    const config = { heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const
    const first = yield* Membership.make({ groupId: randomGroupId("reused-1"), ...config }).pipe(
      Effect.provideService(MembershipConfig.MemberIdentity, identity),
      Effect.scoped,
      Effect.exit
    )
    // (That member's scope is closed: it left, and its id is free again.)
    expect(Exit.isSuccess(first)).toBe(true)
    yield* Effect.scoped(Effect.gen(function*() {
      yield* Membership.make({ groupId: randomGroupId("reused-1"), ...config })
      const second = yield* Effect.either(Membership.make({ groupId: randomGroupId("reused-2"), ...config }))
      expect(Either.isLeft(second) && second.left.message).toMatch(
        `member id ${id} is already used by a live member of this process`
      )
    }).pipe(Effect.provideService(MembershipConfig.MemberIdentity, identity)))
  }).pipe(Effect.provide(PgMembershipStore.layer().pipe(Layer.provideMerge(PgLive)))), 30_000)
