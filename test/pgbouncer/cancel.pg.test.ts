/**
 * Timeouts and cancels behind PgBouncer (transaction mode, 2 server connections shared by every
 * client): one client's timeout must never cancel, or fail, another client's statement.
 *
 * Through PgBouncer the pid a client learns at startup is PgBouncer's, not a server's, so
 * `@effect/sql-pg`'s cancel (`SELECT pg_cancel_backend(pid)` from another pooled connection) cannot
 * reach the statement: the bounds that work are the server's own (`statement_timeout` set local to a
 * transaction, as the library's changes and fences do) and the protocol's cancel request, which
 * PgBouncer forwards only to the server connection the sender is linked to.
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Either, Exit, Layer, Redacted, Scope } from "effect"
import pg from "pg"
import * as Fenced from "../../src/Fenced.js"
import * as Membership from "../../src/Membership.js"
import type { MembershipService } from "../../src/Membership.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, randomGroupId } from "../support/Database.js"
import { exactCover, makeRecorder } from "../support/Recorder.js"
import * as Bouncer from "./pgbouncer.js"
import { waitFor as waitForIn } from "../support/Wait.js"

const installed = Bouncer.pgbouncerBinary() !== undefined
if (!installed) console.log(Bouncer.skipMessage)

let bouncer: Bouncer.PgBouncer | undefined

const ThroughBouncer = Layer.unwrapEffect(
  Effect.sync(() =>
    PgClient.layer({
      url: Redacted.make(bouncer!.url),
      applicationName: "modulo-group-test",
      maxConnections: 8,
      connectTimeout: "10 seconds"
    })
  )
)
const StoreLive = Layer.unwrapEffect(
  Effect.sync(() =>
    PgMembershipStore.layer({ listenUrl: databaseUrl(), statementTimeout: "1 second" }).pipe(
      Layer.provideMerge(ThroughBouncer)
    )
  )
)

const connect = async (url: string) => {
  const client = new pg.Client({ connectionString: url, application_name: "modulo-group-test" })
  client.on("error", () => undefined)
  await client.connect()
  return client
}

/** Statements running `pg_sleep` with this marker right now, seen on the server directly. */
const sleepers = async (marker: string): Promise<number> => {
  const direct = await connect(databaseUrl())
  try {
    const r = await direct.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()`,
      [`%${marker}%`]
    )
    return r.rows[0].n as number
  } finally {
    await direct.end()
  }
}

const waitFor = (done: () => boolean, max: Duration.DurationInput = Duration.seconds(15)) => waitForIn(done, max)

describe.skipIf(!installed)("timeouts and cancels behind PgBouncer (transaction mode, 2 server connections)", () => {
  beforeAll(async () => {
    bouncer = await Bouncer.start(databaseUrl(), { poolMode: "transaction", poolSize: 2 })
  })
  afterAll(async () => {
    await bouncer?.stop()
  })

  it("a protocol cancel request reaches the sender's statement only", async () => {
    const [a, b] = await Promise.all([connect(bouncer!.url), connect(bouncer!.url)])
    try {
      // The pid a client is told is PgBouncer's: pg_cancel_backend() with it cannot reach the server.
      const told = (a as unknown as { processID: number }).processID
      const real = (await a.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid
      expect(told).not.toBe(real)
      const started = Date.now()
      const slowA = a.query("SELECT pg_sleep(1.5) AS a").then(() => "ok", (e: { code?: string }) => e.code)
      const slowB = b.query("SELECT pg_sleep(1.5) AS b").then(() => "ok", (e: { code?: string }) => e.code)
      // Both are running, one on each server connection.
      await new Promise<void>((resolve, reject) => {
        const poll = async () => {
          try {
            if (await sleepers("pg_sleep(1.5)") === 2) return resolve()
            if (Date.now() - started > 1_000) return reject(new Error("the two sleeps did not both start"))
            setTimeout(poll, 10)
          } catch (e) {
            reject(e)
          }
        }
        void poll()
      })
      // pg's cancel: a CancelRequest with a's key, on a new connection to PgBouncer.
      const canceller = new pg.Client({ connectionString: bouncer!.url })
      ;(canceller as unknown as { cancel: (c: pg.Client, q: unknown) => void }).cancel(a, (a as unknown as { activeQuery: unknown }).activeQuery)
      expect(await slowA).toBe("57014")
      const aEnded = Date.now() - started
      expect(await slowB).toBe("ok")
      expect(aEnded).toBeLessThan(1_400)
    } finally {
      await Promise.all([a.end(), b.end()])
    }
  })

  it.live("a client-side timeout alone does not stop the statement on the server; its connection waits behind it", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const marker = `mg_client_timeout_${Date.now()}`
      const [returnedMs, timedOut] = yield* Effect.timed(
        Effect.either(Effect.timeout(sql`SELECT pg_sleep(1.5) AS ${sql(marker)}`, "200 millis"))
      )
      expect(Either.isLeft(timedOut)).toBe(true)
      expect(Duration.toMillis(returnedMs)).toBeLessThan(800)
      // @effect/sql-pg's cancel (pg_cancel_backend with PgBouncer's pid) reached nothing: still running.
      expect(yield* Effect.promise(() => sleepers(marker))).toBe(1)
      // Its pool connection went back with the statement running, last (after the cancel's): the next
      // query gets it and waits behind the statement.
      const [ms] = yield* Effect.timed(sql`SELECT 1`)
      expect(Duration.toMillis(ms)).toBeGreaterThan(800)
    }).pipe(
      Effect.provide(Layer.unwrapEffect(Effect.sync(() => PgClient.layer({ url: Redacted.make(bouncer!.url), maxConnections: 2 }))))
    ))

  it.live("a fenced transaction that times out while members run many operations through the same pool fails alone", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const groupId = randomGroupId("bouncer-cancel")
      const table = `bouncer_${groupId.replace(/-/g, "_")}`
      yield* Effect.acquireRelease(
        sql`CREATE TABLE ${sql(table)} (member text NOT NULL, n int NOT NULL, epoch bigint NOT NULL)`,
        () => Effect.orDie(sql`DROP TABLE IF EXISTS ${sql(table)}`)
      )
      const rec = yield* makeRecorder
      const members: Array<MembershipService> = []
      for (let i = 0; i < 3; i++) {
        const scope = yield* Scope.make()
        const m = yield* Membership.make({
          groupId,
          heartbeat: "100 millis",
          lease: "4 seconds",
          fenceMargin: "1 second",
          statementTimeout: "1 second"
        }).pipe(Scope.extend(scope))
        yield* rec.track(m).pipe(Scope.extend(scope))
        yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
        members.push(m)
      }
      yield* waitFor(() => exactCover(rec.working(), 3))
      const ticks = yield* Effect.forEach(members, (m) => m.awaitAssigned)
      const startsBefore = rec.marks.filter((m) => m.kind === "start").length

      // The one that times out: member 0's fenced transaction sleeps past its 300 ms limit.
      const marker = `mg_sleep_${groupId.replace(/-/g, "_")}`
      const sleeper = Fenced.fenced(
        sql`SELECT pg_sleep(10) AS ${sql(marker)}`,
        { assignment: ticks[0]!, timeout: "300 millis" }
      ).pipe(Effect.provideService(Membership.Membership, members[0]!), Effect.either, Effect.timed)

      // The others: 3 members x 25 fenced inserts, 2 at a time each, while heartbeats run every 100 ms.
      const others = Effect.forEach(
        members.flatMap((m, i) => Array.from({ length: 25 }, (_, n) => ({ m, i, n }))),
        ({ i, m, n }) =>
          Fenced.fenced(sql`INSERT INTO ${sql(table)} (member, n, epoch) VALUES (${String(i)}, ${n}, ${ticks[i]!.epoch})`, {
            assignment: ticks[i]!,
            timeout: "900 millis"
          }).pipe(Effect.provideService(Membership.Membership, m), Effect.either),
        { concurrency: 6 }
      )
      const [[sleptMs, slept], results] = yield* Effect.all([sleeper, others], { concurrency: 2 })

      expect(Either.isLeft(slept) && slept.left._tag).toBe("FenceTimeout")
      // Through PgBouncer the client's cancel cannot reach the server: the rollback waits for the
      // fence's server-side backstop (limit + 1 s), which bounds it.
      expect(Duration.toMillis(sleptMs)).toBeLessThan(300 + 1_000 + 1_000)
      const failures = results.filter(Either.isLeft).map((e) => e.left)
      expect(failures).toEqual([])
      const [count] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(table)}`
      expect(count!.n).toBe(75)
      // No member missed enough heartbeats to lose its assignment: nobody restarted.
      expect(rec.marks.filter((m) => m.kind === "start").length).toBe(startsBefore)
      expect(exactCover(rec.working(), 3)).toBe(true)
      expect(rec.violations).toEqual([])
      // The server ended the sleep itself (the fence's backstop, 300 ms + 1 s): no server connection is held.
      const deadline = Date.now() + 3_000
      let running = yield* Effect.promise(() => sleepers(marker))
      while (running > 0 && Date.now() < deadline) {
        yield* Effect.sleep("20 millis")
        running = yield* Effect.promise(() => sleepers(marker))
      }
      expect(running).toBe(0)
      console.log(
        `behind PgBouncer: FenceTimeout after ${Math.round(Duration.toMillis(sleptMs))} ms (limit 300 ms, backstop 1300 ms); 75/75 other fenced transactions committed`
      )
    }).pipe(Effect.scoped, Effect.provide(StoreLive)))

  it.live("an app statement bounded on the server (statement_timeout local to its transaction) fails alone", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const bounded = sql.withTransaction(
        Effect.zipRight(sql`SELECT set_config('statement_timeout', '300', true)`, sql`SELECT pg_sleep(5)`)
      ).pipe(Effect.either, Effect.timed)
      const quick = Effect.forEach(
        Array.from({ length: 40 }, (_, i) => i),
        (i) => sql`SELECT ${i}::int AS i, pg_sleep(0.02)`.pipe(Effect.timeout("2 seconds"), Effect.either),
        { concurrency: 6 }
      )
      const [[ms, slept], results] = yield* Effect.all([bounded, quick], { concurrency: 2 })
      expect(Either.isLeft(slept) && (slept.left as { cause?: { code?: string } }).cause?.code).toBe("57014")
      expect(Duration.toMillis(ms)).toBeLessThan(2_000)
      expect(results.filter(Either.isLeft)).toEqual([])
      // The session's own setting is untouched for whoever gets that server connection next.
      const settings = yield* Effect.forEach(
        Array.from({ length: 6 }),
        () => sql<{ st: string }>`SELECT current_setting('statement_timeout') AS st`,
        { concurrency: 6 }
      )
      expect(new Set(settings.map((r) => r[0]!.st))).toEqual(new Set(["0"]))
    }).pipe(Effect.provide(ThroughBouncer)))
})
