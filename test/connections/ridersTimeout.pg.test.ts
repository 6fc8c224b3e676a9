/**
 * From an adversarial run against the riders (commit 8689092): the leader's change commits on the server, but the reply to its
 * COMMIT reaches the client after `wrap`'s bound (statementTimeout): the leader fails with a timeout,
 * its riders are freed (their rows committed) and must join again. Oracle: after all joins return
 * (no heartbeats), each member's returned view is its row: same index, row acknowledges exactly that
 * epoch, and the row's epoch stamp is the view's epoch when no later change happened.
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Either, Layer } from "effect"
import * as Notifier from "../../src/internal/pg/notifier.js"
import type { MemberInfo } from "../../src/MembershipStore.js"
import * as Migrations from "../../src/Migrations.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { randomGroupId } from "../support/Database.js"
import { commitDelayingPool } from "./support.js"

const info = (name: string): MemberInfo => ({ memberId: crypto.randomUUID(), name, host: "test", pid: 1 })

/** The reply to the COMMIT of a change that took riders comes late, `state.left` times. */
const delayingPool = (delayMs: number, state: { left: number; delayed: number }) =>
  commitDelayingPool({
    applicationName: "riders-timeout",
    marker: "json_to_recordset",
    delayMs,
    take: () => {
      if (state.left <= 0) return false
      state.left--
      state.delayed++
      return true
    }
  })

it.live("a leader whose COMMIT reply comes after its timeout: riders rejoin, every view is the member's row", () =>
  Effect.gen(function*() {
    const state = { left: 3, delayed: 0 }
    const ctx = yield* Layer.build(Notifier.layer.pipe(Layer.provideMerge(PgClient.layerFromPool({ acquire: delayingPool(1_500, state) }))))
    yield* Migrations.run.pipe(Effect.provide(ctx))
    const store = yield* PgMembershipStore.make({ statementTimeout: Duration.seconds(1) }).pipe(Effect.provide(ctx))
    const sql = yield* SqlClient.SqlClient.pipe(Effect.provide(ctx))
    const groupId = randomGroupId("attack-timeout")
    const members = Array.from({ length: 60 }, (_, i) => info(`m${i}`))
    const results = yield* Effect.forEach(
      members,
      (m, i) => Effect.zipRight(Effect.sleep(Duration.millis((i * 13) % 200)), Effect.either(store.join(groupId, m, 60_000))),
      { concurrency: "unbounded" }
    )
    const rows = yield* sql<{ member_id: string; idx: number | null; acked_epoch: string; assigned_epoch: string | null }>`
      SELECT member_id::text, idx, acked_epoch, assigned_epoch FROM modulo_group.members WHERE group_id = ${groupId}`
    const [g] = yield* sql<{ epoch: string; size: number }>`SELECT epoch, size FROM modulo_group.groups WHERE group_id = ${groupId}`
    const byId = new Map(rows.map((r) => [r.member_id, r]))
    const bad: Array<string> = []
    let failed = 0
    members.forEach((m, i) => {
      const r = results[i]!
      if (Either.isLeft(r)) return void failed++
      const v = r.right
      const row = byId.get(m.memberId)
      if (row === undefined) return void bad.push(`${m.name}: view ${v.epoch} [${v.index}/${v.size}] but no row`)
      if (Number(row.acked_epoch) !== v.epoch) bad.push(`${m.name}: view ${v.epoch} [${v.index}/${v.size}] allAcked=${v.allAcked}; row acked ${row.acked_epoch} idx ${row.idx}`)
    })
    expect(bad).toEqual([])
    // The group as it stands: every member on exactly 0..N-1 of its size.
    expect(g!.size).toBe(rows.length)
    expect(rows.map((r) => r.idx).sort((a, b) => a! - b!)).toEqual(Array.from({ length: rows.length }, (_, i) => i))
  }).pipe(Effect.scoped), 120_000)

it.live("the riders of a leader whose COMMIT reply hangs are free at the leader's timeout, not when the reply comes", () =>
  Effect.gen(function*() {
    // An adversarial review: the riders stayed taken until the reply came (or never, on a half-open
    // connection), each retrying its turn for the busy budget (30 s), their committed rows unrenewed.
    const state = { left: 1, delayed: 0 }
    const ctx = yield* Layer.build(Notifier.layer.pipe(Layer.provideMerge(PgClient.layerFromPool({ acquire: delayingPool(8_000, state) }))))
    yield* Migrations.run.pipe(Effect.provide(ctx))
    const store = yield* PgMembershipStore.make({ statementTimeout: Duration.seconds(1) }).pipe(Effect.provide(ctx))
    const sql = yield* SqlClient.SqlClient.pipe(Effect.provide(ctx))
    const groupId = randomGroupId("riders-hung")
    const members = Array.from({ length: 8 }, (_, i) => info(`m${i}`))
    const t0 = Date.now()
    const results = yield* Effect.forEach(
      members,
      (m) => Effect.map(Effect.either(store.join(groupId, m, 60_000)), (r) => ({ r, ms: Date.now() - t0 })),
      { concurrency: "unbounded" }
    )
    expect(state.delayed).toBe(1)
    // The leader fails at its timeout (1 s); its riders join again at once, each within a few
    // statement timeouts, not after the 8 s reply.
    const joined = results.filter(({ r }) => Either.isRight(r))
    expect(joined.length).toBeGreaterThanOrEqual(members.length - 1)
    expect(Math.max(...results.map(({ ms }) => ms))).toBeLessThan(5_000)
    // Every returned view is its member's row.
    const rows = yield* sql<{ member_id: string; acked_epoch: string }>`
      SELECT member_id::text, acked_epoch FROM modulo_group.members WHERE group_id = ${groupId}`
    const acked = new Map(rows.map((r) => [r.member_id, Number(r.acked_epoch)]))
    members.forEach((m, i) => {
      const r = results[i]!.r
      if (Either.isRight(r)) expect(acked.get(m.memberId), m.name).toBe(r.right.epoch)
    })
  }).pipe(Effect.scoped), 120_000)
