/**
 * The protocol behind PgBouncer in transaction pooling mode: members are fibers of this process over
 * one `PgClient` whose URL is PgBouncer's, with 4 server connections for every client, so clients
 * share server connections between transactions. They form, renegotiate on join, leave and crash,
 * and fenced transactions commit under a live lease and fail with `StaleAssignment` after a change.
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Layer, Redacted, Scope } from "effect"
import * as Fenced from "../../src/Fenced.js"
import * as Membership from "../../src/Membership.js"
import * as Migrations from "../../src/Migrations.js"
import type { MembershipConfigInput } from "../../src/MembershipConfig.js"
import { StoreError } from "../../src/MembershipError.js"
import type { MembershipStoreService } from "../../src/MembershipStore.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { scratchDatabase } from "../cli/pgSupport.js"
import { databaseUrl, randomGroupId } from "../support/Database.js"
import { exactCover, makeRecorder } from "../support/Recorder.js"
import * as Bouncer from "./pgbouncer.js"
import { waitFor as waitForIn } from "../support/Wait.js"

const installed = Bouncer.pgbouncerBinary() !== undefined
if (!installed) console.log(Bouncer.skipMessage)

const fast = { heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const

let bouncer: Bouncer.PgBouncer | undefined

/** A pooled client whose every connection goes through PgBouncer. */
const ThroughBouncer = Layer.unwrapEffect(
  Effect.sync(() =>
    PgClient.layer({ url: Redacted.make(bouncer!.url), applicationName: "modulo-group-test", connectTimeout: "10 seconds" })
  )
)

/** The real store (notifier included), with heartbeats and leaves a test can fail for one member: a crash. */
const CrashableStore = Effect.gen(function*() {
  yield* PgMembershipStore.prepare()
  const inner = yield* PgMembershipStore.make()
  const crashed = new Set<string>()
  const dead = (operation: string) => Effect.fail(new StoreError({ operation, reason: "crashed by the test" }))
  const store: MembershipStoreService = {
    ...inner,
    heartbeat: (groupId, memberId, ack, leaseMs, options) =>
      crashed.has(memberId) ? dead("heartbeat") : inner.heartbeat(groupId, memberId, ack, leaseMs, options),
    leave: (groupId, memberId) => (crashed.has(memberId) ? dead("leave") : inner.leave(groupId, memberId))
  }
  return { store, crash: (memberId: string) => Effect.sync(() => void crashed.add(memberId)) }
})

/** Polls `done` every 10 ms of real time; returns the milliseconds it took. */
const waitFor = (done: () => boolean, max: Duration.DurationInput = Duration.seconds(15)) => waitForIn(done, max)

const setup = (prefix: string) =>
  Effect.gen(function*() {
    const groupId = randomGroupId(prefix)
    const rec = yield* makeRecorder
    const { crash, store } = yield* CrashableStore
    const join = (input: Partial<MembershipConfigInput> = {}) =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const m = yield* Membership.make({ groupId, ...fast, ...input }).pipe(
          Effect.provideService(MembershipStore, store),
          Scope.extend(scope)
        )
        yield* rec.track(m).pipe(Scope.extend(scope))
        yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
        return { m, close: Scope.close(scope, Exit.void) }
      })
    return { groupId, rec, join, crash }
  })

const StoreDeps = Notifier.layer.pipe(Layer.provideMerge(ThroughBouncer))

/** PgBouncer's URL for another database on the same server (its `[databases]` entry is a wildcard). */
const bouncerUrlFor = (b: Bouncer.PgBouncer, database: string) => {
  const url = new URL(b.url)
  url.pathname = `/${database}`
  return url.toString()
}

describe.skipIf(!installed)("behind PgBouncer (transaction pooling, 4 server connections)", () => {
  beforeAll(async () => {
    bouncer = await Bouncer.start(databaseUrl(), { poolMode: "transaction", poolSize: 4 })
  })
  afterAll(async () => {
    await bouncer?.stop()
  })

  it.live("members form, renegotiate on join, leave and crash, with G1 and G2 throughout", () =>
    Effect.gen(function*() {
      const { crash, join, rec } = yield* setup("bouncer-form")
      const ms = yield* Effect.forEach(Array.from({ length: 4 }), () => join(), { concurrency: "unbounded" })
      yield* waitFor(() => exactCover(rec.working(), 4))
      // Two join.
      yield* Effect.forEach(Array.from({ length: 2 }), () => join(), { concurrency: "unbounded" })
      yield* waitFor(() => exactCover(rec.working(), 6))
      // One leaves gracefully: the others converge without waiting for a lease.
      const leaveMs = yield* Effect.zipRight(ms[0]!.close, waitFor(() => exactCover(rec.working(), 5)))
      expect(leaveMs).toBeLessThan(2_000)
      // One crashes (no more heartbeats, no leave): reaped after its lease, the rest re-form.
      yield* crash(ms[1]!.m.memberId)
      yield* waitFor(() => exactCover(rec.working().filter((w) => w.member !== ms[1]!.m.memberId), 4))
      expect(rec.violations).toEqual([])
    }).pipe(Effect.scoped, Effect.provide(StoreDeps)))

  it.live("fenced transactions commit under a live lease and fail with StaleAssignment after a change", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const { groupId, join, rec } = yield* setup("bouncer-fenced")
      const table = `bouncer_${groupId.replace(/-/g, "_")}`
      yield* Effect.acquireRelease(
        sql`CREATE TABLE ${sql(table)} (note text NOT NULL, epoch bigint NOT NULL)`,
        () => Effect.orDie(sql`DROP TABLE IF EXISTS ${sql(table)}`)
      )
      const { m } = yield* join()
      yield* waitFor(() => exactCover(rec.working(), 1))
      const tick = yield* m.awaitAssigned
      const write = (note: string, epoch: number) => sql`INSERT INTO ${sql(table)} (note, epoch) VALUES (${note}, ${epoch})`
      const fenced = (note: string) =>
        Fenced.fenced(write(note, tick.epoch), { assignment: tick }).pipe(Effect.provideService(Membership.Membership, m))
      // Many, concurrently, through 4 server connections: all commit.
      yield* Effect.forEach(Array.from({ length: 20 }, (_, i) => `live-${i}`), fenced, { concurrency: 8 })
      // A change: a second member joins; the first's old assignment is stale.
      yield* join()
      yield* waitFor(() => exactCover(rec.working(), 2))
      const stale = yield* Effect.flip(fenced("stale"))
      expect(stale._tag).toBe("StaleAssignment")
      // Checked on the database, not only by the local guard: fencedWith skips the guard.
      const target = { groupId, memberId: m.memberId, epoch: tick.epoch, index: tick.index, size: tick.size }
      const staleDb = yield* Effect.flip(Fenced.fencedWith(target, write("stale-db", tick.epoch)))
      expect(staleDb._tag).toBe("StaleAssignment")
      const rows = yield* sql<{ note: string }>`SELECT note FROM ${sql(table)} ORDER BY note`
      expect(rows.map((r) => r.note).filter((n) => n.startsWith("stale"))).toEqual([])
      expect(rows.length).toBe(20)
      expect(rec.violations).toEqual([])
    }).pipe(Effect.scoped, Effect.provide(StoreDeps)))

  it.live("the migrations apply through PgBouncer on a fresh database, from several clients at once", () =>
    Effect.gen(function*() {
      const scratch = yield* Effect.acquireRelease(Effect.promise(scratchDatabase), (db) => Effect.promise(db.drop))
      const url = bouncerUrlFor(bouncer!, scratch.name)
      const migrateVia = Effect.scoped(Effect.gen(function*() {
        const client = yield* Layer.build(PgClient.layer({ url: Redacted.make(url), connectTimeout: "10 seconds" }))
        return yield* Effect.provide(Migrations.run, client)
      }))
      // Three clients race; the transaction-scoped advisory lock lets one apply, the others see it done.
      const applied = yield* Effect.all([migrateVia, migrateVia, migrateVia], { concurrency: "unbounded" })
      expect(applied.flat().length).toBe(Migrations.migrations.length)
      yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* Layer.build(PgClient.layer({ url: Redacted.make(url) }))
        yield* Effect.provide(Migrations.check, client)
      }))
    }).pipe(Effect.scoped))

  it.live("statement pooling mode is refused: a join fails with a StoreError that names it", () =>
    Effect.gen(function*() {
      const statementMode = yield* Effect.acquireRelease(
        Effect.promise(() => Bouncer.start(databaseUrl(), { poolMode: "statement", poolSize: 2 })),
        (b) => Effect.promise(() => b.stop())
      )
      const client = yield* Layer.build(PgClient.layer({ url: Redacted.make(statementMode.url) }))
      const store = yield* Effect.provide(
        Effect.zipRight(PgMembershipStore.prepare({ migrate: false }), PgMembershipStore.make()),
        Layer.merge(Layer.succeedContext(client), Notifier.layer.pipe(Layer.provide(Layer.succeedContext(client))))
      )
      const member = { memberId: globalThis.crypto.randomUUID(), host: "h", pid: 1, name: "n" }
      const error = yield* Effect.flip(store.join(randomGroupId("bouncer-statement"), member, 2_000))
      expect(error._tag).toBe("StoreError")
      expect(error.message).toMatch(/statement pooling/)
    }).pipe(Effect.scoped))
})
