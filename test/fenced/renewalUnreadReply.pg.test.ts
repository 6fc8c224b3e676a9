/**
 * G6, a review of de8e019: a renewal that reads the clock BEFORE the lease's end (after de8e019, once
 * it holds its row) but COMMITS after a fenced COMMIT that landed past that end makes `fencedWith`'s
 * read after the slow COMMIT (`Statements.leasesAfterCommit`) find the lease live, and `fencedWith`
 * reports success for a write that became visible while the member's lease had ended (on the database
 * clock, in the committed state every other session saw).
 *
 * `leasesAfterCommit` rests on "a renewal renews only a lease still running when it has the row
 * locked, so one of the same row live now was live when the COMMIT landed". The first half holds since
 * de8e019; the conclusion does not: between a renewal's check and its commit PostgreSQL can wait, and
 * the renewal's decision only becomes the lease when it commits. Here the wait is the renewal's own
 * reply: a member of a slots group of 16,384 slots gets its slot view in every renewal (~230 kB of
 * JSON); PostgreSQL writes the reply before it commits the statement's implicit transaction, and a
 * client that does not read its socket (a blocked event loop, a GC pause, a slow link; here a proxy
 * that stops reading, over the server's Unix socket whose buffers are ~208 kB) holds the renewal
 * uncommitted, its clock check long passed, for as long as it does not read (the backend waits in
 * `ClientWrite`). No lock of the fence's stops it (a renewal's NO KEY UPDATE does not conflict with
 * FOR KEY SHARE, and a longer lease takes no advisory lock).
 *
 * The interleaving (L = member A's lease end on the database clock):
 *   1. A (slots mode, 16,384 slots, lease 8 s) runs `fencedWith` over slot 0: the body writes 'w' and
 *      creates 300 temp tables ON COMMIT DROP (a COMMIT tail of ~0.4-1.3 s after the commit-time check);
 *      its COMMIT is sent ~250 ms before L: the check passes.
 *   2. At that moment A's store stops reading its connections, and A's renewal is sent (146-228 ms
 *      before L in the runs): it locks its row, reads the clock (before L), writes lease = its time +
 *      8 s, and blocks writing its reply: not committed.
 *   3. L passes: A's lease has ended in the committed state every other session sees.
 *   Mode "caller paused after COMMIT": the fenced COMMIT lands 110-800 ms after L (a poller on another
 *      connection first sees the write then, the lease still ended); 50 ms later A's store reads again
 *      and the renewal commits; `fencedWith` (its caller paused after COMMIT's reply until then, as in
 *      test/fenced/lateRenewalCommit's variant) reads the lease again: live, same row: success.
 *   Mode "no pause": A's store reads again 50 ms after L, while the COMMIT's tail still runs: the
 *      renewal commits then (the poller saw the lease ended, the write not visible, in between), the
 *      COMMIT lands after, and `fencedWith`, not paused, reads the lease live: success (the criterion
 *      of test/fenced/lateRenewalCommit, whose no-pause variant is the same shape).
 * Not observed: another member working slot 0 (a reap's DELETE waits for the renewal's row lock, then
 * re-reads the row: renewed). What breaks is fencedWith's promise and leasesAfterCommit's premise.
 * Fixed: after a slow COMMIT a lease renewed since the fence's last check is not taken as proof
 * (`fenceEnd` records each fenced member's lease, `leasesAfterCommit` compares): FenceBroken.
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Duration, Effect, Either, Fiber, Layer, Option, Redacted, Ref } from "effect"
import { randomUUID } from "node:crypto"
import { existsSync } from "node:fs"
import net from "node:net"
import * as Fenced from "../../src/Fenced.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, randomGroupId } from "../support/Database.js"
import { aroundCommit, leaseEndPoll } from "./support.js"

const SLOTS = 16_384
const TABLES = Number(process.env.MODULO_GROUP_TEST_TEMP_TABLES ?? 300)
const LEASE_MS = 8_000
/**
 * The server's Unix socket (its buffers, ~208 kB, fill with one such reply; over TCP loopback they did
 * not): the Debian default for the DATABASE_URL's port. The embedded server has none (the test skips).
 */
const UNIX = process.env.MODULO_GROUP_TEST_PG_SOCKET ?? `/var/run/postgresql/.s.PGSQL.${new URL(databaseUrl()).port || "5432"}`
const hasSocket = existsSync(UNIX)
if (!hasSocket) {
  console.log(`test/fenced/renewalUnreadReply skipped: no Unix socket ${UNIX} for DATABASE_URL's server (set DATABASE_URL to a server with one, e.g. this machine's PostgreSQL, or MODULO_GROUP_TEST_PG_SOCKET)`)
}

/** A proxy to the server whose server-to-client direction can be stopped (the client not reading). */
const readerProxy = Effect.gen(function*() {
  const ups = new Set<net.Socket>()
  let paused = false
  const server = net.createServer((down) => {
    const up = net.connect({ path: UNIX })
    ups.add(up)
    if (paused) up.pause()
    down.pipe(up)
    up.pipe(down)
    const end = () => {
      ups.delete(up)
      up.destroy()
      down.destroy()
    }
    up.on("error", end)
    down.on("error", end)
    up.on("close", end)
    down.on("close", end)
  })
  yield* Effect.promise(() => new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r())))
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      for (const u of ups) u.destroy()
      server.close()
    })
  )
  const url = new URL(databaseUrl())
  url.hostname = "127.0.0.1"
  url.port = String((server.address() as net.AddressInfo).port)
  return {
    url: url.toString(),
    stopReading: Effect.sync(() => {
      paused = true
      for (const u of ups) u.pause()
    }),
    readAgain: Effect.sync(() => {
      paused = false
      for (const u of ups) u.resume()
    })
  }
})

type Mode = "caller paused after COMMIT" | "no pause: reading resumes during the COMMIT"

const attempt = (mode: Mode) =>
  Effect.gen(function*() {
    const reader = yield* readerProxy
    const direct = yield* Layer.build(PgClient.layer({ url: Redacted.make(databaseUrl()), applicationName: "unread-reply", maxConnections: 6 }))
    const sql = yield* SqlClient.SqlClient.pipe(Effect.provide(direct))
    const outside = Effect.mapInputContext((c: Context.Context<never>) => Context.omit(SqlClient.TransactionConnection)(c))
    const ctxA = yield* Layer.build(
      Notifier.layer.pipe(Layer.provideMerge(PgClient.layer({ url: Redacted.make(reader.url), applicationName: "unread-reply-A", maxConnections: 2 })))
    )
    const storeA = yield* PgMembershipStore.make({ statementTimeout: Duration.seconds(5) }).pipe(Effect.provide(ctxA))

    const groupId = randomGroupId("unread-reply")
    const a = randomUUID()
    yield* Effect.addFinalizer(() => Effect.ignore(sql`DELETE FROM modulo_group.groups WHERE group_id = ${groupId}`))
    const view = yield* storeA.join(groupId, { memberId: a, name: "A", host: "h", pid: 1 }, 60_000, {}, { slots: SLOTS })
    const [slot0] = yield* sql<{ generation: string }>`
      SELECT generation FROM modulo_group.slots WHERE group_id = ${groupId} AND slot = 0 AND holder = ${a}::uuid`
    const table = `unread_reply_${groupId.replace(/-/g, "_")}`
    yield* sql`CREATE TABLE ${sql(table)} (note text NOT NULL)`
    yield* Effect.addFinalizer(() => Effect.ignore(sql`DROP TABLE IF EXISTS ${sql(table)}`))

    const leftNow = Effect.map(
      sql<{ left: number }>`SELECT (extract(epoch FROM lease_expires_at - clock_timestamp()) * 1000)::float8 AS left
                              FROM modulo_group.members WHERE member_id = ${a}::uuid`.pipe(outside),
      (rows) => rows[0]?.left ?? Number.NEGATIVE_INFINITY
    )

    // Poller (direct connection), from the COMMIT on: the write not seen while the lease had ended,
    // and the first poll that saw it (was the lease ended then, and for how long).
    const { firstSeen, poll, unseenAfterEnd } = yield* leaseEndPoll(sql, { table, note: "w", groupId, memberId: a })

    const committing = yield* Deferred.make<void>()
    const settled = yield* Deferred.make<void>()
    const renewal = yield* Ref.make<string>("not sent")
    const renewer = yield* Effect.forkDaemon(Effect.gen(function*() {
      yield* Deferred.await(committing)
      // A's store stops reading its connections; its renewal goes out (before L) and blocks writing its reply.
      yield* reader.stopReading
      const sentLeft = yield* leftNow
      const r = yield* Effect.fork(Effect.either(storeA.heartbeat(groupId, a, view.epoch, LEASE_MS, { slots: true })))
      if (mode === "caller paused after COMMIT") {
        // Until the fenced write is visible (the COMMIT landed), then 50 ms more.
        yield* Effect.repeat(Effect.zipLeft(poll, Effect.sleep("5 millis")), { until: (s) => s }).pipe(Effect.timeout("10 seconds"), Effect.ignore)
        yield* Effect.sleep("50 millis")
      } else {
        // Until 50 ms past L, while the fenced COMMIT is still running (its ON COMMIT drops).
        const poller = yield* Effect.fork(Effect.repeat(Effect.zipLeft(poll, Effect.sleep("5 millis")), { until: (s) => s }).pipe(Effect.timeout("10 seconds"), Effect.ignore))
        yield* Effect.sleep(Duration.millis(Math.max(0, (yield* leftNow) + 50)))
        yield* reader.readAgain
        yield* Fiber.join(poller)
      }
      yield* reader.readAgain
      const e = yield* Fiber.join(r)
      yield* Ref.set(renewal, Either.isRight(e) ? (Option.isSome(e.right) ? `renewed (sent ${Math.round(sentLeft)} ms before L)` : "no row") : String(e.left))
      yield* Deferred.succeed(settled, undefined)
    }))

    let commitMs = -1
    const client = aroundCommit(sql, (commit) =>
      Effect.gen(function*() {
        yield* Deferred.succeed(committing, undefined)
        const started = performance.now()
        const res = yield* commit
        commitMs = Math.round(performance.now() - started)
        // The caller pauses after COMMIT's reply until the renewal has landed (first mode only).
        if (mode === "caller paused after COMMIT") yield* Deferred.await(settled).pipe(Effect.timeout("10 seconds"), Effect.ignore)
        return res
      }))

    // A's lease from now: 8 s (a renewal with a shorter lease, before any fence: it may cut back).
    yield* storeA.heartbeat(groupId, a, view.epoch, LEASE_MS, { slots: true })
    const target = { groupId, memberId: a, epoch: -1, index: -1, size: 0, slots: [{ slot: 0, generation: Number(slot0!.generation) }] }
    const result = yield* Effect.either(Fenced.fencedWith(target, Effect.gen(function*() {
      yield* sql`INSERT INTO ${sql(table)} (note) VALUES ('w')`
      yield* sql.unsafe(`DO $$ DECLARE cols text; BEGIN
        SELECT string_agg(format('c%s int', j), ',') INTO cols FROM generate_series(1, 1000) j;
        FOR i IN 1..${TABLES} LOOP EXECUTE format('CREATE TEMP TABLE unread_tt_%s (%s) ON COMMIT DROP', i, cols); END LOOP; END $$`)
      // The body ends ~250 ms before L: the COMMIT's check runs before L.
      yield* Effect.sleep(Duration.millis(Math.max(0, (yield* leftNow) - 250)))
    }), { timeout: "20 seconds" }).pipe(Effect.provideService(SqlClient.SqlClient, client)))
    yield* Fiber.await(renewer).pipe(Effect.timeout("15 seconds"), Effect.ignore)
    return {
      ok: Either.isRight(result),
      error: Either.isLeft(result) ? String(result.left) : undefined,
      renewal: yield* Ref.get(renewal),
      unseenAfterEndMs: yield* Ref.get(unseenAfterEnd),
      firstSeen: yield* Ref.get(firstSeen),
      commitMs,
      leaseLeftAtEndMs: yield* leftNow
    }
  }).pipe(Effect.scoped)

describe.skipIf(!hasSocket)("a renewal whose reply the member does not read", () => {
for (const mode of ["caller paused after COMMIT", "no pause: reading resumes during the COMMIT"] as const) {
  it.live(`G6 (slots mode): a renewal that checked before the lease's end and commits after a fenced COMMIT landed past it: fencedWith must not report success (${mode})`, () =>
    Effect.gen(function*() {
      // An attempt whose timing missed (the body's temp tables took longer than the lease on a loaded
      // machine: nothing was sent at L) is made again, at most 3 times.
      let r = yield* attempt(mode)
      for (let i = 0; i < 2 && (r.unseenAfterEndMs === undefined || !r.renewal.startsWith("renewed")); i++) {
        console.log("attempt missed its timing, again:", JSON.stringify(r))
        r = yield* attempt(mode)
      }
      console.log(JSON.stringify(r))
      // The attempt is valid: A's lease was seen ended (committed state, database clock) while the write
      // was not yet visible (the criterion of test/fenced/lateRenewalCommit); in the first mode the
      // write first became visible while the lease was still ended.
      expect(r.unseenAfterEndMs).toBeDefined()
      if (mode === "caller paused after COMMIT") expect(r.firstSeen?.ended).toBe(true)
      // G6: fencedWith never reports success for a commit that landed after the lease ended.
      expect(r.ok).toBe(false)
    }), 120_000)
}
})
