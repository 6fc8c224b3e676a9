/**
 * A burst of joins from many processes (issue 15, "scale"): each process's store found the group's
 * lock busy behind another process's change and backed off blindly, and every join was a change and
 * an epoch of its own, so N processes forming a group took N changes in a row (and N renegotiations
 * of everyone already in). A busy join now leaves a waiting row under the lock shared; the next
 * change, whoever makes it, admits every waiting row in one epoch, and each joiner then takes its
 * index. Stores of their own stand for processes (a store's own changes take turns in the process).
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Layer, Redacted } from "effect"
import { advisoryLockClass, channelFor } from "../../src/internal/pg/constants.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import type { MemberInfo } from "../../src/MembershipStore.js"
import * as Migrations from "../../src/Migrations.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, randomGroupId, rawSession } from "../support/Database.js"
import { slowCommitStore, warmPool } from "./support.js"

const info = (name: string): MemberInfo => ({ memberId: crypto.randomUUID(), name, host: "test", pid: 1 })

const N = 16

// A pool wide enough that every join can be in flight at once.
const Wide = Layer.unwrapEffect(
  Effect.sync(() =>
    PgClient.layer({ url: Redacted.make(databaseUrl()), applicationName: "modulo-group-test-formation", maxConnections: N + 2 })
  )
)

/** One burst: N stores join a fresh group at once; every join's view and the group checked (safety). */
const burst = Effect.gen(function*() {
  const groupId = randomGroupId("formation")
  const steps: Array<string> = []
  // Each change holds the group lock 30 ms before its COMMIT, so that the joins overlap (as they do
  // on a loaded server): without coalescing, each of the N joins is a change of its own, one after
  // another, and the others find the lock busy again and again meanwhile.
  const stores = yield* Effect.forEach(Array.from({ length: N }), () => slowCommitStore(steps))
  yield* warmPool(N + 2)
  const members = stores.map((_, i) => info(`m${i}`))
  const views = yield* Effect.forEach(stores, (store, i) => store.join(groupId, members[i]!, 30_000), {
    concurrency: "unbounded"
  })
  const count = (step: string) => steps.filter((s) => s === `join:${step}`).length
  const changes = count("reassign")
  console.log(`formation: ${N} joins, ${changes} changes, ${count("lock")} lock attempts, ${count("busy")} busy, ${count("share")} shared, ${count("adopt")} adopt steps`)
  // Every join got a view; within one epoch, no index twice and every index below the size.
  for (const v of views) expect(v.index).toBeLessThan(v.size)
  const seen = new Set(views.map((v) => `${v.epoch}:${v.index}`))
  expect(seen.size).toBe(N)
  const rows = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ idx: number | null; member_id: string }>`
      SELECT idx, member_id FROM modulo_group.members WHERE group_id = ${groupId} ORDER BY idx`)
  expect(rows.map((r) => r.idx)).toEqual(Array.from({ length: N }, (_, i) => i))
  expect(new Set(rows.map((r) => r.member_id))).toEqual(new Set(members.map((m) => m.memberId)))
  const [g] = yield* Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ size: number; epoch: string }>`SELECT size, epoch FROM modulo_group.groups WHERE group_id = ${groupId}`)
  expect(g!.size).toBe(N)
  expect(Number(g!.epoch)).toBe(changes)
  return { changes, locks: count("lock") }
})

it.live(`${N} stores (processes) join one group at once: fewer changes than joins, few lock attempts, distinct indices`, () =>
  Effect.gen(function*() {
    yield* Migrations.run
    // Lock turns: a change per join before (16 changes, ~240 lock attempts). Now some changes admit
    // several waiting rows, but how many varies widely: 3 to 13 changes in 9 runs on an idle machine
    // (and 9 on a loaded CI run), and once, in a clean-clone CI run's busiest phase, 16 (with 36
    // lock attempts): the joins, starved of CPU, came one after another's change. So up to three
    // bursts, each a fresh group, each checked for safety above; one must coalesce. Without the
    // coalescing every burst makes N changes. The lock attempts are the steady figure (31-36).
    let last = { changes: N, locks: 0 }
    for (let attempt = 0; attempt < 3 && last.changes >= N; attempt++) last = yield* burst
    expect(last.changes).toBeLessThan(N)
    expect(last.locks).toBeLessThan(3 * N)
  }).pipe(Effect.scoped, Effect.provide(Notifier.layer.pipe(Layer.provideMerge(Wide)))), 60_000)

it.live("a busy join under a flood of forged notifications stays bounded (waits for the change, wake-ups rate-limited), and joins once the lock is free", () =>
  Effect.gen(function*() {
    yield* Migrations.run
    const groupId = randomGroupId("formation-forged")
    const steps: Array<{ readonly step: string; readonly at: number }> = []
    const store = yield* PgMembershipStore.make({
      statementTimeout: Duration.seconds(2),
      onStatement: (operation, step) =>
        operation === "join" ? Effect.sync(() => steps.push({ step, at: performance.now() })) : Effect.void
    })
    // "Another process's change" holds the group's lock (exclusively, as a change takes it) for 1.5 s,
    // while a third party floods the group's channel with notifications (anyone can: they prove
    // nothing). Each is a reason to try again sooner, never more often than the rate limit.
    const holder = yield* rawSession()
    const flooder = yield* rawSession()
    yield* Effect.promise(() => holder.query("BEGIN"))
    yield* Effect.promise(() =>
      holder.query("SELECT pg_advisory_xact_lock($1::int, hashtext($2))", [advisoryLockClass, groupId])
    )
    let flooding = true
    const flood = (async () => {
      while (flooding) {
        // 200 a round trip (distinct payloads: PostgreSQL folds equal ones within a transaction).
        await flooder.query("SELECT pg_notify($1, 'forged ' || g) FROM generate_series(1, 200) AS g", [channelFor(groupId)])
          .catch(() => undefined)
      }
    })()
    const join = yield* Effect.fork(store.join(groupId, info("joiner"), 30_000, {}, { notifications: true }))
    yield* Effect.sleep(Duration.millis(1_500))
    const during = steps.filter((s) => s.step === "share").length
    const attempts = steps.filter((s) => s.step === "lock").length
    flooding = false
    yield* Effect.promise(() => flood)
    yield* Effect.promise(() => holder.query("COMMIT"))
    const view = yield* Fiber.join(join)
    expect(view.size).toBe(1)
    // 1.5 s: at most 8 wake-ups at once and one more per 50 ms (38), plus the backoff's own tries
    // (at least 50 ms apart: 30): uncapped, the flood would make one every few milliseconds.
    expect(during).toBeLessThanOrEqual(70)
    // A change holds the lock: the joiner waits for its commit rather than trying it again and again.
    expect(attempts).toBeLessThanOrEqual(1 + Math.ceil(during / 8) + 1)
  }).pipe(Effect.scoped, Effect.provide(Notifier.layer.pipe(Layer.provideMerge(Wide)))), 60_000)
