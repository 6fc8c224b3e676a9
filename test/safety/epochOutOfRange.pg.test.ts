/**
 * A group epoch set by hand above 2^52 - 1 on a live group, then repaired as docs/operations.md says
 * ("An epoch set out of range"). Changes refuse such an epoch (48a434e), but renewals still handed it
 * to the members: each stopped, acknowledged it, and waited in it; after the repair every later view
 * was older than the epoch they waited in, so they waited for ever (modulo mode), or never started a
 * slot again (slots mode), while a newcomer worked beside them (a review of 48a434e). Now a renewal
 * that reads such an epoch is no view: the member's heartbeat fails, saying why (it fences after its
 * lease), and after the repair the group works on.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Option } from "effect"
import * as Layer from "effect/Layer"
import * as Membership from "../../src/Membership.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { makeRecorder } from "../support/Recorder.js"
import { waitForEffect } from "../support/Wait.js"

const config = { heartbeat: "200 millis", lease: "3 seconds", fenceMargin: "1 second", statementTimeout: "1 second" } as const
const forged = "4503599627370496"

const repair = (groupId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql`UPDATE modulo_group.groups SET epoch = (SELECT epoch FROM modulo_group.change_log
                                                 WHERE group_id = ${groupId} ORDER BY id DESC LIMIT 1)
         WHERE group_id = ${groupId}`)

const acksOf = (groupId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<{ acked: string }>`SELECT acked_epoch::text AS acked FROM modulo_group.members WHERE group_id = ${groupId}`,
      (rows) => rows.map((r) => r.acked)
    ))

it.live("modulo: no member takes the out-of-range epoch for a view; after the repair the group works on and takes a newcomer", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const groupId = randomGroupId("epoch-range")
    const recorder = yield* makeRecorder
    const a = yield* Membership.make({ groupId, ...config, name: "a" })
    yield* recorder.track(a, "a")
    const b = yield* Membership.make({ groupId, ...config, name: "b" })
    yield* recorder.track(b, "b")
    const sizes = Effect.map(Effect.all([a.assignment, b.assignment]), (xs) => xs.map((x) => Option.map(x, (y) => y.size)))
    yield* waitForEffect(Effect.map(sizes, (xs) => xs.every((x) => Option.getOrUndefined(x) === 2)), Duration.seconds(15), "a and b at size 2")
    yield* sql`UPDATE modulo_group.groups SET epoch = ${forged}::bigint WHERE group_id = ${groupId}`
    // Over a lease: neither acknowledges it nor moves its state to it (their heartbeats fail; they fence).
    yield* waitForEffect(
      Effect.map(Effect.all([a.state, b.state]), (xs) => xs.every((s) => s._tag === "Fenced")),
      Duration.seconds(10),
      "a and b fenced"
    )
    for (const s of [yield* a.state, yield* b.state]) expect("epoch" in s && s.epoch).not.toBe(Number(forged))
    expect((yield* acksOf(groupId)).some((x) => x === forged)).toBe(false)
    yield* repair(groupId)
    const c = yield* Membership.make({ groupId, ...config, name: "c" })
    yield* recorder.track(c, "c")
    yield* waitForEffect(
      Effect.map(Effect.all([a.assignment, b.assignment, c.assignment]), (xs) =>
        xs.every((x) => Option.isSome(x) && x.value.size === 3) &&
        new Set(xs.map((x) => Option.getOrThrow(x).epoch)).size === 1),
      Duration.seconds(15),
      "a, b and c working in one epoch"
    )
    expect(recorder.violations).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgMembershipStore.layer().pipe(Layer.provideMerge(PgLive)))), 60_000)

it.live("slots: no member takes the out-of-range epoch for a view; after the repair the slots are all worked again", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const groupId = randomGroupId("epoch-range-slots")
    const cfg = { groupId, slots: 4, ...config }
    const a = yield* Membership.make({ ...cfg, name: "a" })
    const b = yield* Membership.make({ ...cfg, name: "b" })
    const total = Effect.map(Effect.all([a.owned, b.owned]), ([x, y]) => x.slots.length + y.slots.length)
    yield* waitForEffect(Effect.map(total, (t) => t === 4), Duration.seconds(15), "a and b own the 4 slots")
    yield* sql`UPDATE modulo_group.groups SET epoch = ${forged}::bigint WHERE group_id = ${groupId}`
    yield* waitForEffect(Effect.map(total, (t) => t === 0), Duration.seconds(10), "a and b stopped every slot (fenced)")
    for (const s of [yield* a.state, yield* b.state]) expect("epoch" in s && s.epoch).not.toBe(Number(forged))
    yield* repair(groupId)
    yield* waitForEffect(Effect.map(total, (t) => t === 4), Duration.seconds(15), "a and b work the 4 slots again")
  }).pipe(Effect.scoped, Effect.provide(PgMembershipStore.layer().pipe(Layer.provideMerge(PgLive)))), 60_000)
