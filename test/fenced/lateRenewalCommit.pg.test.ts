/**
 * G6, a review of cbfaea8 (test/safety/lateRenewal.pg.test.ts has the statement alone): a renewal sent
 * before the lease's end revived the lease after it had ended, and a fenced COMMIT that landed in
 * between was reported a success.
 *
 * Slots mode: a change does not wait for a slots-mode fence (no group lock), and its
 * `reassignIndices` takes a NO KEY UPDATE lock on every member row (the fenced member keeps its index:
 * no key update, so the fence's FOR KEY SHARE does not hold it up). A renewal R of the fenced member A,
 * sent before A's lease ends (statement time t < T), waits for that row behind the change. A's fenced
 * COMMIT passes its commit-time check before T and lands after T (the PostgreSQL commit path after the
 * check: here ON COMMIT DROP of the body's temp tables; notifications do the same). Nobody renews A
 * meanwhile (R waits). The change goes on 50 ms after T (its process was stalled, well within its
 * statement timeout) and R reaches the row: `lease_expires_at > t` held at R's own statement time, and
 * R wrote t + lease. `fencedWith`'s read after the slow COMMIT (`Statements.leasesAfterCommit`) found
 * the same row live, and reported success for a write first seen 0.4-1.5 s past the lease's end (the
 * review: 5 runs of 5; and 11 of 11 when COMMIT's reply reached the caller late). Now R compares the
 * lease with the clock once it holds the row (`Statements.renewLease`): the lease stays ended, and
 * `fencedWith` fails with FenceBroken "the transaction COMMITTED".
 *
 * `MODULO_GROUP_TEST_TEMP_TABLES` sets how many temp tables of 1,000 columns make the COMMIT slow
 * (default 300: a COMMIT of 0.4-1.3 s on this project's machines).
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Context, Deferred, Duration, Effect, Either, Fiber, Layer, Redacted, Ref } from "effect"
import { randomUUID } from "node:crypto"
import * as Fenced from "../../src/Fenced.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Migrations from "../../src/Migrations.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, randomGroupId } from "../support/Database.js"
import { aroundCommit, leaseEndPoll } from "./support.js"

const TABLES = Number(process.env.MODULO_GROUP_TEST_TEMP_TABLES ?? 300)
const COLUMNS = 1000

const attempt = () => Effect.gen(function*() {
  const ctx = yield* Layer.build(
    Notifier.layer.pipe(
      Layer.provideMerge(PgClient.layer({ url: Redacted.make(databaseUrl()), applicationName: "late-renewal-commit", maxConnections: 10 }))
    )
  )
  yield* Migrations.run.pipe(Effect.provide(ctx))
  const sql = yield* SqlClient.SqlClient.pipe(Effect.provide(ctx))
  const outside = Effect.mapInputContext((c: Context.Context<never>) => Context.omit(SqlClient.TransactionConnection)(c))
  const storeA = yield* PgMembershipStore.make({ statementTimeout: Duration.millis(2000) }).pipe(Effect.provide(ctx))
  // B's store: its join stalls after `reassignIndices` (holding every member row, A's included).
  const paused = yield* Deferred.make<void>()
  const resume = yield* Deferred.make<void>()
  const storeB = yield* PgMembershipStore.make({
    statementTimeout: Duration.millis(2000),
    onStatement: (_op, step) =>
      step === "slots" ? Effect.zipRight(Deferred.succeed(paused, undefined), Deferred.await(resume)) : Effect.void
  }).pipe(Effect.provide(ctx))

  const groupId = randomGroupId("late-renewal-commit")
  const a = randomUUID()
  const b = randomUUID()
  const leaseMs = 10_000
  const view = yield* storeA.join(groupId, { memberId: a, name: "A", host: "h", pid: 1 }, leaseMs, {}, { slots: 8 })
  const held = yield* sql<{ slot: number; generation: string }>`
    SELECT slot, generation FROM modulo_group.slots WHERE group_id = ${groupId} AND holder = ${a}::uuid ORDER BY slot`
  const table = `late_renewal_${groupId.replace(/-/g, "_")}`
  yield* sql`CREATE TABLE ${sql(table)} (note text NOT NULL)`

  // A's heartbeats (lease 10 s, the default) while the body prepares; stopped before the end.
  const beating = yield* Ref.make(true)
  const beat = Effect.gen(function*() {
    while (yield* Ref.get(beating)) {
      yield* Effect.ignore(storeA.heartbeat(groupId, a, view.epoch, leaseMs, { slots: true }))
      yield* Effect.sleep("250 millis")
    }
  }).pipe(outside)
  const beater = yield* Effect.forkDaemon(beat)

  // The poller: a moment when A's lease had ended on the database clock and the write was not visible.
  const { firstSeen, poll, unseenAfterEnd } = yield* leaseEndPoll(sql, { table, note: "w", groupId, memberId: a })

  const renewal = yield* Ref.make<unknown>(undefined)
  const afterCommit = yield* Ref.make<{ seen: boolean; ended: boolean; past: number | null } | undefined>(undefined)
  const leaseAfterRenewal = yield* Ref.make<number | null>(null)

  // Helpers started outside the fenced call (a fiber forked inside it inherits its statement guard).
  const startJoin = yield* Deferred.make<void>()
  const startRenewal = yield* Deferred.make<void>()
  const committing = yield* Deferred.make<void>()
  const committed = yield* Deferred.make<void>()
  const joiner = yield* Effect.forkDaemon(Effect.gen(function*() {
    yield* Deferred.await(startJoin)
    return yield* Effect.either(storeB.join(groupId, { memberId: b, name: "B", host: "h", pid: 2 }, 10_000, {}, { slots: 8 }))
  }))
  const renewer = yield* Effect.forkDaemon(Effect.gen(function*() {
    yield* Deferred.await(startRenewal)
    const r = yield* Effect.either(storeA.heartbeat(groupId, a, view.epoch, leaseMs, { slots: true }))
    yield* Ref.set(renewal, r)
  }))
  const poller = yield* Effect.forkDaemon(Effect.gen(function*() {
    yield* Deferred.await(committing)
    yield* Effect.repeat(Effect.zipLeft(poll, Effect.sleep("5 millis")), { until: (s) => s })
  }))
  // The stalled change goes on 50 ms after T, while the COMMIT is still running (no pause of the
  // fenced caller at all: COMMIT's reply is not held).
  const duringCommit = yield* Effect.forkDaemon(Effect.gen(function*() {
    yield* Deferred.await(committing)
    const [l] = yield* sql<{ left: number }>`
      SELECT (extract(epoch FROM lease_expires_at - clock_timestamp()) * 1000)::float8 AS left
        FROM modulo_group.members WHERE member_id = ${a}::uuid`.pipe(Effect.orDie)
    yield* Effect.sleep(Duration.millis(Math.max(0, l!.left + 50)))
    yield* Deferred.succeed(resume, undefined)
  }))
  const after = yield* Effect.forkDaemon(Effect.gen(function*() {
    yield* Deferred.await(committed)
    // COMMIT returned: the write is visible; is A's lease ended now?
    const [row] = yield* sql<{ seen: boolean; ended: boolean; past: number | null }>`
      SELECT EXISTS (SELECT 1 FROM ${sql(table)} WHERE note = 'w') AS seen,
             lease_expires_at <= clock_timestamp() AS ended,
             (extract(epoch FROM clock_timestamp() - lease_expires_at) * 1000)::float8 AS past
        FROM modulo_group.members WHERE group_id = ${groupId} AND member_id = ${a}::uuid`.pipe(Effect.orDie)
    yield* Ref.set(afterCommit, row)
    // The stalled change goes on; the renewal R, sent before the lease's end, lands.
    yield* Deferred.succeed(resume, undefined)
    yield* Fiber.await(renewer).pipe(Effect.timeout("5 seconds"), Effect.ignore)
    const [l] = yield* sql<{ left: number }>`
      SELECT (extract(epoch FROM lease_expires_at - clock_timestamp()) * 1000)::float8 AS left
        FROM modulo_group.members WHERE member_id = ${a}::uuid`.pipe(Effect.orDie)
    yield* Ref.set(leaseAfterRenewal, l?.left ?? null)
  }))

  // How long COMMIT took, and how long its reply was held before fenced saw it (the caller's pause).
  let commitMs = -1
  let heldMs = -1
  let tempTablesMs = -1
  const client = aroundCommit(sql, (commit) =>
    Effect.gen(function*() {
      yield* Deferred.succeed(committing, undefined)
      const started = performance.now()
      const res = yield* commit
      const replied = performance.now()
      yield* Deferred.succeed(committed, undefined)
      commitMs = Math.round(replied - started)
      heldMs = Math.round(performance.now() - replied)
      return res
    }))

  const target = {
    groupId,
    memberId: a,
    epoch: -1,
    index: -1,
    size: 0,
    slots: held.map((h) => ({ slot: h.slot, generation: Number(h.generation) }))
  }
  const result = yield* Effect.either(Fenced.fencedWith(target, Effect.gen(function*() {
    yield* sql`INSERT INTO ${sql(table)} (note) VALUES ('w')`
    // Work PostgreSQL does at COMMIT after the commit-time check: ON COMMIT DROP of temp tables.
    const creating = performance.now()
    yield* sql.unsafe(`DO $$ DECLARE cols text; BEGIN
      SELECT string_agg(format('c%s int', j), ',') INTO cols FROM generate_series(1, ${COLUMNS}) j;
      FOR i IN 1..${TABLES} LOOP EXECUTE format('CREATE TEMP TABLE late_renewal_tt_%s (%s) ON COMMIT DROP', i, cols); END LOOP; END $$`)
    tempTablesMs = Math.round(performance.now() - creating)
    // Stop A's heartbeats; its lease now ends at T.
    yield* Ref.set(beating, false)
    yield* Fiber.join(beater)
    // Wait until ~600 ms before T (A's lease's end on the database clock).
    const leftNow = Effect.map(
      sql<{ left: number }>`
        SELECT (extract(epoch FROM lease_expires_at - clock_timestamp()) * 1000)::float8 AS left
          FROM modulo_group.members WHERE member_id = ${a}::uuid`.pipe(outside),
      (rows) => rows[0]!.left
    )
    yield* Effect.sleep(Duration.millis(Math.max(0, (yield* leftNow) - 600)))
    // B joins; its change stalls after reassignIndices, holding A's member row (NO KEY UPDATE).
    yield* Deferred.succeed(startJoin, undefined)
    yield* Deferred.await(paused)
    yield* Effect.sleep(Duration.millis(Math.max(0, (yield* leftNow) - 300)))
    // R: A's renewal, sent before T; it waits for A's row behind the stalled change.
    yield* Deferred.succeed(startRenewal, undefined)
    yield* Effect.sleep("100 millis")
    // The body ends ~200 ms before T: the COMMIT's check runs before T, the COMMIT lands after it.
    // The limit is far from what the body takes (the temp tables and then A's lease of 10 s): a
    // clean-clone CI run beside five other files passed 30 s and failed with FenceTimeout.
  }), { timeout: "100 seconds" }).pipe(Effect.provideService(SqlClient.SqlClient, client)))

  yield* Deferred.succeed(resume, undefined)
  yield* Deferred.succeed(committing, undefined)
  yield* Fiber.join(poller).pipe(Effect.timeout("10 seconds"), Effect.ignore)
  const joined = yield* Fiber.join(joiner).pipe(Effect.timeout("10 seconds"), Effect.either)
  yield* Fiber.await(after).pipe(Effect.timeout("10 seconds"), Effect.ignore)
  yield* Fiber.await(duringCommit).pipe(Effect.timeout("10 seconds"), Effect.ignore)
  yield* sql`DROP TABLE ${sql(table)}`
  return {
    ok: Either.isRight(result),
    error: Either.isLeft(result) ? String(result.left) : undefined,
    renewal: yield* Ref.get(renewal),
    unseenAfterEndMs: yield* Ref.get(unseenAfterEnd),
    firstSeen: yield* Ref.get(firstSeen),
    tempTablesMs,
    commitMs,
    heldMs,
    afterCommit: yield* Ref.get(afterCommit),
    leaseLeftAfterRenewalMs: yield* Ref.get(leaseAfterRenewal),
    joined: String(Either.isRight(joined) ? (Either.isRight(joined.right) ? "B joined" : joined.right.left) : joined.left)
  }
}).pipe(Effect.scoped)

it.live("G6 (slots mode): a renewal sent before the lease's end lands during a fenced COMMIT that lands past it: not a success", () =>
  Effect.gen(function*() {
    // Up to three attempts: under a loaded machine the body can end past T (its temp tables took 6 s
    // beside reviewers' runs), and the fence's own deferred check then refuses it before COMMIT
    // (`StaleAssignment`, COMMIT never reached): safe, but not the interleaving this test is about.
    let r = yield* attempt()
    for (let tries = 1; tries < 3 && r.commitMs === -1 && /^StaleAssignment: .*the lease expired during the transaction/.test(r.error ?? ""); tries++) {
      console.log(`the body ended past the lease's end before COMMIT (${r.error}): trying again`)
      r = yield* attempt()
    }
    console.log(JSON.stringify({ ...r, renewal: Either.isEither(r.renewal) ? (Either.isRight(r.renewal) ? "renewed" : String(r.renewal.left)) : r.renewal }))
    // The lease was seen ended (on the database clock) while the write was not yet visible (else the
    // attempt proves nothing), and fenced does not report success: the criterion of
    // test/fenced/leaseCutDuringCommit.pg.test.ts.
    expect(r.unseenAfterEndMs).toBeDefined()
    expect(r.ok).toBe(false)
    expect(r.error).toMatch(/the transaction COMMITTED/)
  }), 480_000)
