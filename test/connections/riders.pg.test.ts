/**
 * Joins of one store that ride along another's change (issue "scale and speed": a thousand members
 * of one process joining at once). Each joined view must be one a committed change gave: checked
 * against the change log, which every change writes under the group lock with the assignment it
 * leaves (migration 0004).
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Either, Layer, Redacted } from "effect"
import * as Notifier from "../../src/internal/pg/notifier.js"
import type { GroupView, MemberInfo } from "../../src/MembershipStore.js"
import * as Migrations from "../../src/Migrations.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, groupEpoch, randomGroupId } from "../support/Database.js"
import { warmPool } from "./support.js"

const info = (name: string): MemberInfo => ({ memberId: crypto.randomUUID(), name, host: "test", pid: 1 })

const Pool = Layer.unwrapEffect(
  Effect.sync(() =>
    PgClient.layer({ url: Redacted.make(databaseUrl()), applicationName: "modulo-group-test-riders", maxConnections: 8 })
  )
)

/** The group's epoch now. */
const epochOf = (groupId: string) => Effect.map(groupEpoch(groupId), (g) => g!.epoch)

/** Every view must be the assignment a logged change left: same incarnation, epoch, size and index. */
const checkAgainstLog = (groupId: string, joined: ReadonlyArray<readonly [MemberInfo, GroupView]>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ epoch: string; size: number; incarnation: string; assignment: Array<{ member_id: string; index: number | null }> }>`
      SELECT epoch, size, incarnation, assignment FROM modulo_group.change_log WHERE group_id = ${groupId}`
    const log = new Map(rows.map((r) => [`${r.incarnation}/${r.epoch}`, r]))
    const wrong = joined.flatMap(([m, v]) => {
      const change = log.get(`${v.incarnation}/${v.epoch}`)
      const logged = change?.assignment.find((a) => a.member_id === m.memberId)
      return change !== undefined && change.size === v.size && logged?.index === v.index
        ? []
        : [`${m.name}: [${v.index}/${v.size}] in ${v.incarnation}/${v.epoch}, logged: ${JSON.stringify(logged ?? null)}`]
    })
    return { wrong, changes: rows.length }
  })

/** A store recording every step, its pool warm. */
const recordingStore = (steps: Array<string>) =>
  Effect.gen(function*() {
    yield* Migrations.run
    const store = yield* PgMembershipStore.make({
      statementTimeout: Duration.seconds(2),
      onStatement: (operation, step) => Effect.sync(() => steps.push(`${operation}:${step}`))
    })
    yield* warmPool(8)
    return store
  })

it.live("200 joins at once over one store go in a few changes, and every view is one a change committed", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("riders")
    const steps: Array<string> = []
    const store = yield* recordingStore(steps)
    const members = Array.from({ length: 200 }, (_, i) => info(`m${i}`))
    const results = yield* Effect.forEach(members, (m) => Effect.either(store.join(groupId, m, 30_000)), {
      concurrency: "unbounded"
    })
    expect(results.filter(Either.isLeft).map((r) => r.left.reason)).toEqual([])
    const joined = members.map((m, i) => [m, Either.getOrThrow(results[i]!)] as const)
    // One change per join before riders: 200 epochs, 200 attempts at the lock.
    const epochs = new Set(joined.map(([, v]) => v.epoch))
    expect(epochs.size).toBeLessThanOrEqual(4)
    expect(steps.filter((s) => s === "join:lock").length).toBeLessThanOrEqual(8)
    const { wrong, changes } = yield* checkAgainstLog(groupId, joined)
    expect(wrong).toEqual([])
    expect(changes).toBe(epochs.size)
    // The group as it stands: 200 members on exactly 0..199.
    const sql = yield* SqlClient.SqlClient
    const idx = yield* sql<{ idx: number }>`SELECT idx FROM modulo_group.members WHERE group_id = ${groupId} ORDER BY idx`
    expect(idx.map((r) => r.idx)).toEqual(Array.from({ length: 200 }, (_, i) => i))
  }).pipe(Effect.scoped, Effect.provide(Notifier.layer.pipe(Layer.provideMerge(Pool)))), 60_000)

it.live("a change that fails leaves its riders to join on their own, and none gets a view of it", () =>
  Effect.gen(function*() {
    yield* Migrations.run
    const groupId = randomGroupId("riders-fail")
    const steps: Array<string> = []
    let armed = false
    let failed = 0
    // The first change that takes riders fails after inserting them, before its COMMIT (the
    // transaction rolls back).
    const store = yield* PgMembershipStore.make({
      statementTimeout: Duration.seconds(2),
      onStatement: (operation, step) =>
        Effect.suspend(() => {
          steps.push(`${operation}:${step}`)
          if (step === "riders insert" && failed === 0) armed = true
          if (step === "riders view" && armed) {
            armed = false
            failed++
            return Effect.die(new Error("injected: connection lost"))
          }
          return Effect.void
        })
    })
    yield* warmPool(8)
    const members = Array.from({ length: 16 }, (_, i) => info(`m${i}`))
    const results = yield* Effect.forEach(members, (m) => Effect.either(store.join(groupId, m, 30_000)), {
      concurrency: "unbounded"
    })
    expect(failed).toBe(1)
    // The leader of the failed change fails; every rider it took joins after all.
    const failures = results.filter(Either.isLeft)
    expect(failures.length).toBe(1)
    const joined = members.flatMap((m, i) => Either.isRight(results[i]!) ? [[m, results[i]!.right] as const] : [])
    expect(joined.length).toBe(15)
    const { wrong } = yield* checkAgainstLog(groupId, joined)
    expect(wrong).toEqual([])
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ member_id: string }>`SELECT member_id::text FROM modulo_group.members WHERE group_id = ${groupId}`
    expect(rows.map((r) => r.member_id).sort()).toEqual(joined.map(([m]) => m.memberId).sort())
  }).pipe(Effect.scoped, Effect.provide(Notifier.layer.pipe(Layer.provideMerge(Pool)))), 60_000)

it.live("150 of 200 members of one store leave at once: a few changes, each leave done, the other 50 on 0..49", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("riders-leave")
    const steps: Array<string> = []
    const store = yield* recordingStore(steps)
    const members = Array.from({ length: 200 }, (_, i) => info(`m${i}`))
    yield* Effect.forEach(members, (m) => store.join(groupId, m, 30_000), { concurrency: "unbounded", discard: true })
    const sql = yield* SqlClient.SqlClient
    const before = yield* epochOf(groupId)
    steps.length = 0
    const leaving = members.slice(0, 150)
    const left = yield* Effect.forEach(leaving, (m) => Effect.either(store.leave(groupId, m.memberId)), {
      concurrency: "unbounded"
    })
    // Every leave done, and true: its row was there (a rider's too).
    expect(left.map((r) => Either.isRight(r) ? r.right : r.left.reason)).toEqual(leaving.map(() => true))
    // One change per leave before riders: 150 epochs.
    expect((yield* epochOf(groupId)) - before).toBeLessThanOrEqual(4)
    expect(steps.filter((s) => s === "leave:lock").length).toBeLessThanOrEqual(8)
    const rows = yield* sql<{ member_id: string; idx: number }>`
      SELECT member_id::text, idx FROM modulo_group.members WHERE group_id = ${groupId} ORDER BY idx`
    expect(rows.map((r) => r.idx)).toEqual(Array.from({ length: 50 }, (_, i) => i))
    expect(rows.map((r) => r.member_id).sort()).toEqual(members.slice(150).map((m) => m.memberId).sort())
  }).pipe(Effect.scoped, Effect.provide(Notifier.layer.pipe(Layer.provideMerge(Pool)))), 60_000)

it.live("64 reaps at once over one store: one reaps for all (3 expired rows gone, one change), a few lock attempts", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("riders-reap")
    const steps: Array<string> = []
    const store = yield* recordingStore(steps)
    const members = Array.from({ length: 10 }, (_, i) => info(`m${i}`))
    yield* Effect.forEach(members, (m) => store.join(groupId, m, 30_000), { concurrency: "unbounded", discard: true })
    const sql = yield* SqlClient.SqlClient
    const expired = members.slice(0, 3).map((m) => m.memberId)
    yield* sql`UPDATE modulo_group.members SET lease_expires_at = now() - interval '1 second'
                WHERE member_id IN ${sql.in(expired)}`
    const before = yield* epochOf(groupId)
    steps.length = 0
    const reaped = yield* Effect.forEach(Array.from({ length: 64 }), () => store.reap(groupId), { concurrency: "unbounded" })
    // The three rows went once, in one change; every other reap was done by the one that took it.
    expect(reaped.reduce((a, b) => a + b, 0)).toBe(3)
    expect((yield* epochOf(groupId)) - before).toBe(1)
    // One lock attempt per reap before reaps rode along: 64.
    expect(steps.filter((s) => s === "reap:lock").length).toBeLessThanOrEqual(8)
    const rows = yield* sql<{ idx: number }>`SELECT idx FROM modulo_group.members WHERE group_id = ${groupId} ORDER BY idx`
    expect(rows.map((r) => r.idx)).toEqual([0, 1, 2, 3, 4, 5, 6])
  }).pipe(Effect.scoped, Effect.provide(Notifier.layer.pipe(Layer.provideMerge(Pool)))), 60_000)
