/**
 * From an adversarial run against the riders (commit 8689092), no hooks, no injected delay: process A (one store) joins many
 * members at once while process B (another store) keeps changing the group (joins and leaves), so
 * that A's joins find the lock busy, leave waiting rows (`busyJoin`) and adopt them under the lock
 * shared, while A's next change takes riders. Oracle: right after its join returns (no heartbeat
 * yet), a member's row must not acknowledge an epoch beyond the view its join returned: a row that
 * does was re-inserted by a change whose view the member never got (it works the OLD view).
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Either, Fiber, Layer, Redacted } from "effect"
import * as Notifier from "../../src/internal/pg/notifier.js"
import type { GroupView, MemberInfo } from "../../src/MembershipStore.js"
import * as Migrations from "../../src/Migrations.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, randomGroupId } from "../support/Database.js"

const info = (name: string): MemberInfo => ({ memberId: crypto.randomUUID(), name, host: "test", pid: 1 })
const pool = (app: string) =>
  Notifier.layer.pipe(Layer.provideMerge(PgClient.layer({ url: Redacted.make(databaseUrl()), applicationName: app, maxConnections: 6 })))

it.live("many joins of one store while another store churns: every returned view is the member's row", () =>
  Effect.gen(function*() {
    const ctxA = yield* Layer.build(pool("attack-natural-A"))
    const ctxB = yield* Layer.build(pool("attack-natural-B"))
    yield* Migrations.run.pipe(Effect.provide(ctxB))
    const counts: Record<string, number> = {}
    let sawShare = false
    const storeA = yield* PgMembershipStore.make({
      statementTimeout: Duration.seconds(2),
      onStatement: (operation, step) => Effect.sync(() => {
        if (step === "share") sawShare = true
        const k = `${operation}:${step}${step === "adopt" && sawShare ? "(busy)" : ""}`
        if (step === "share commit" || step === "lock") sawShare = false
        counts[k] = (counts[k] ?? 0) + 1
      })
    }).pipe(Effect.provide(ctxA))
    const storeB = yield* PgMembershipStore.make({ statementTimeout: Duration.seconds(2) }).pipe(Effect.provide(ctxB))
    const sql = yield* SqlClient.SqlClient.pipe(Effect.provide(ctxB))
    const rounds = 10
    const perRound = 40
    const bad: Array<string> = []
    let failures = 0
    for (let round = 0; round < rounds; round++) {
      const groupId = randomGroupId("attack-natural")
      yield* storeB.join(groupId, info("B-seed"), 60_000)
      // B: join and leave, over and over.
      const churn = yield* Effect.fork(Effect.forever(Effect.gen(function*() {
        const m = info("B-churn")
        yield* Effect.ignore(storeB.join(groupId, m, 60_000))
        yield* Effect.ignore(storeB.leave(groupId, m.memberId))
      })))
      yield* Effect.sleep(Duration.millis(20))
      const members = Array.from({ length: perRound }, (_, i) => info(`A${i}`))
      const results = yield* Effect.forEach(
        members,
        (m, i) => Effect.zipRight(Effect.sleep(Duration.millis((i * 37) % 7)), Effect.either(storeA.join(groupId, m, 60_000))),
        { concurrency: "unbounded" }
      )
      yield* Fiber.interrupt(churn)
      const rows = yield* sql<{ member_id: string; idx: number | null; acked_epoch: string; assigned_epoch: string | null }>`
        SELECT member_id::text, idx, acked_epoch, assigned_epoch FROM modulo_group.members WHERE group_id = ${groupId}`
      const byId = new Map(rows.map((r) => [r.member_id, r]))
      members.forEach((m, i) => {
        const r = results[i]!
        if (Either.isLeft(r)) {
          failures++
          return
        }
        const v: GroupView = r.right
        const row = byId.get(m.memberId)
        if (row !== undefined && Number(row.acked_epoch) > v.epoch) {
          bad.push(`round ${round} ${m.name}: returned [${v.index}/${v.size}] epoch ${v.epoch} allAcked=${v.allAcked}; row: idx ${row.idx} acked ${row.acked_epoch} assigned ${row.assigned_epoch}`)
        }
      })
    }
    expect(bad).toEqual([])
  }).pipe(Effect.scoped), 300_000)
