/**
 * One uuid, several spellings. PostgreSQL's uuid type reads a uuid in upper case, in braces, without
 * hyphens or hyphenated every four digits, and writes it back in one form. A review of migration 0012
 * found two members of one process given the same uuid with and without braces: the process's check of
 * live ids let both in, they shared a store (one writer), the second's join deleted the first's live
 * row as its own and both worked [0/1] of one epoch (G1). And a member whose id was in braces was told
 * "no row" at every batched renewal (liveness). Ids are now put in the database's form first.
 */
import { expect, it } from "@effect/vitest"
import { Effect, Either, Layer, Option } from "effect"
import { canonicalMemberId } from "../../src/internal/memberId.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import * as MembershipConfig from "../../src/MembershipConfig.js"
import type { MemberInfo } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"

const lease = 60_000
const info = (memberId: string, name: string): MemberInfo => ({ memberId, name, host: "h", pid: 1 })

it("canonicalMemberId: every spelling PostgreSQL reads as one uuid, the form it writes back; other strings as they are", () => {
  const id = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
  for (const spelling of [id, id.toUpperCase(), `{${id}}`, id.replace(/-/g, ""), "A0EEBC999C0B4EF8BB6D6BB9BD380A11", "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11", `{${id.replace(/-/g, "")}}`]) {
    expect(canonicalMemberId(spelling)).toBe(id)
  }
  for (const other of ["member-1", "", "a0eebc99", `${id}0`, "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]) expect(canonicalMemberId(other)).toBe(other)
})

it.live("one uuid in two spellings ({braces}): the process refuses the second member", () =>
  Effect.gen(function*() {
    const id = crypto.randomUUID()
    const groupId = randomGroupId("spelling")
    const config = { groupId, heartbeat: "200 millis", lease: "3 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const
    const identity = (memberId: string) => ({ host: "test", pid: 1, newMemberId: Effect.succeed(memberId) })
    const first = yield* Membership.make(config).pipe(Effect.provideService(MembershipConfig.MemberIdentity, identity(id)))
    yield* first.awaitAssigned
    const second = yield* Effect.either(
      Membership.make(config).pipe(Effect.provideService(MembershipConfig.MemberIdentity, identity(`{${id.toUpperCase()}}`)))
    )
    expect(Either.isLeft(second) && second.left.message).toMatch(`member id ${id} is already used by a live member of this process`)
    expect(first.memberId).toBe(id)
  }).pipe(Effect.scoped, Effect.provide(PgMembershipStore.layer().pipe(Layer.provideMerge(PgLive)))), 30_000)

it.live("a member id in braces renews in a batch like any other", () =>
  Effect.gen(function*() {
    const store = yield* PgMembershipStore.make()
    const groupId = randomGroupId("braces")
    const plain = crypto.randomUUID()
    const braced = `{${crypto.randomUUID()}}`
    yield* store.join(groupId, info(plain, "plain"), lease)
    const v = yield* store.join(groupId, info(braced, "braced"), lease)
    expect(Option.isSome(yield* store.heartbeat(groupId, braced, v.epoch, lease))).toBe(true)
    // In one batch with the other member (both held 100 ms to share the statement).
    const [a, b] = yield* Effect.all([
      store.heartbeat(groupId, plain, v.epoch, lease, { holdMs: 100 }),
      store.heartbeat(groupId, braced, v.epoch, lease, { holdMs: 100 })
    ], { concurrency: 2 })
    expect(Option.isSome(a)).toBe(true)
    expect(Option.isSome(b)).toBe(true)
  }).pipe(Effect.scoped, Effect.provide(Notifier.layer.pipe(Layer.provideMerge(PgLive)))), 30_000)
