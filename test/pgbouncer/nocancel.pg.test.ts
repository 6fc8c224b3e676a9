/**
 * The library never cancels a statement with `pg_cancel_backend` (issue: operator experience,
 * PgBouncer). `@effect/sql-pg` cancels an interrupted query with `SELECT pg_cancel_backend(pid)`
 * on another pooled connection, `pid` from the connection's startup reply: behind PgBouncer that is
 * PgBouncer's key, not a server pid, so the cancel reaches nothing or, should the number equal a
 * server backend's pid, cancels SOMEBODY ELSE's statement. These tests make that collision certain:
 * every connection the library opens through PgBouncer reports, as its pid, the real server pid of
 * an unrelated client's transaction (a long `pg_sleep` behind the same PgBouncer). Then a heartbeat
 * (and a fenced transaction) runs past its client-side limit. They check that (a) the library's pool
 * sends no `pg_cancel_backend` at all (counted on `pg.Pool.prototype.query`, which `@effect/sql-pg`'s
 * cancel goes through), (b) the unrelated statement ends normally, and (c) the timed-out statement
 * still ends, by its server-side bound, while the lock it waits for is still held.
 */
import { PgClient } from "@effect/sql-pg"
import { SqlClient } from "@effect/sql"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Either, Layer, Redacted } from "effect"
import { randomUUID } from "node:crypto"
import pg from "pg"
import * as Fenced from "../../src/Fenced.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, randomGroupId } from "../support/Database.js"
import * as Bouncer from "./pgbouncer.js"

const installed = Bouncer.pgbouncerBinary() !== undefined
if (!installed) console.log(Bouncer.skipMessage)

let bouncer: Bouncer.PgBouncer | undefined

const connect = async (url: string) => {
  const client = new pg.Client({ connectionString: url, application_name: "modulo-group-test" })
  client.on("error", () => undefined)
  await client.connect()
  return client
}

/** Runs `f` with a direct connection to the test database. */
const direct = async <A>(f: (c: pg.Client) => Promise<A>): Promise<A> => {
  const c = await connect(databaseUrl())
  try {
    return await f(c)
  } finally {
    await c.end()
  }
}

/**
 * While installed: every `pg_cancel_backend` sent through a `pg.Pool` is counted, and every `pg`
 * client connected to PgBouncer reports `collide` as its pid (its startup reply's `processID`),
 * as if PgBouncer's key had drawn that server pid.
 */
const collision = (bouncerPort: number, collide: number) => {
  const cancels: Array<string> = []
  const poolProto = pg.Pool.prototype as unknown as { query: (...args: Array<unknown>) => unknown }
  const originalQuery = poolProto.query
  poolProto.query = function(this: unknown, ...args: Array<unknown>) {
    const text = typeof args[0] === "string" ? args[0] : (args[0] as { text?: string } | undefined)?.text
    if (typeof text === "string" && /pg_cancel_backend/i.test(text)) cancels.push(text)
    return originalQuery.apply(this, args)
  }
  const clientProto = pg.Client.prototype as object
  const real = new WeakMap<object, unknown>()
  Object.defineProperty(clientProto, "processID", {
    configurable: true,
    get(this: { port?: unknown }) {
      return Number(this.port) === bouncerPort ? collide : real.get(this)
    },
    set(this: object, v: unknown) {
      real.set(this, v)
    }
  })
  const restore = () => {
    poolProto.query = originalQuery
    delete (clientProto as { processID?: unknown }).processID
  }
  return { cancels, restore }
}

/**
 * An unrelated client behind the same PgBouncer: a transaction (so it keeps its server connection)
 * that reads its real server pid and then sleeps `seconds`. `outcome`: "ok" or the error's SQLSTATE.
 */
const unrelatedSleeper = async (url: string, seconds: number) => {
  const client = await connect(url)
  await client.query("BEGIN")
  const pid = (await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]!.pid
  const outcome = client.query(`SELECT pg_sleep(${seconds}) AS unrelated`).then(
    () => "ok",
    (e: { code?: string }) => e.code ?? String(e)
  )
  const done = outcome.then(async (o) => {
    await client.query("ROLLBACK").catch(() => undefined)
    await client.end().catch(() => undefined)
    return o
  })
  return { pid, outcome: done }
}

/** Statements of the library waiting for a lock held by `holderPid`, seen on the server directly. */
const waitingBehind = (holderPid: number) =>
  direct(async (c) =>
    (await c.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`,
      [holderPid]
    )).rows[0]!.n
  )

/** Polls `check` every 20 ms until it is true or `ms` have passed; returns whether it became true. */
const eventually = async (check: () => Promise<boolean>, ms: number) => {
  const deadline = Date.now() + ms
  for (;;) {
    if (await check()) return true
    if (Date.now() > deadline) return false
    await new Promise((r) => setTimeout(r, 20))
  }
}

const statementTimeoutMs = 500

/** The store over a `PgClient` through PgBouncer (made after the collision is installed). */
const StoreThroughBouncer = Layer.unwrapEffect(
  Effect.sync(() =>
    PgMembershipStore.layer({ listenUrl: databaseUrl(), statementTimeout: Duration.millis(statementTimeoutMs) }).pipe(
      Layer.provideMerge(
        PgClient.layer({ url: Redacted.make(bouncer!.url), applicationName: "modulo-group-test", maxConnections: 6 })
      )
    )
  )
)

describe.skipIf(!installed)("no pg_cancel_backend behind PgBouncer (transaction mode): statements end by their server-side bounds", () => {
  beforeAll(async () => {
    bouncer = await Bouncer.start(databaseUrl(), { poolMode: "transaction", poolSize: 4 })
  })
  afterAll(async () => {
    await bouncer?.stop()
  })

  it.live("a heartbeat past its client-side limit cancels nothing, and the server ends it (lock_timeout in the statement)", () =>
    Effect.gen(function*() {
      const unrelated = yield* Effect.promise(() => unrelatedSleeper(bouncer!.url, 3))
      const trap = collision(bouncer!.port, unrelated.pid)
      yield* Effect.addFinalizer(() => Effect.sync(trap.restore))
      const holder = yield* Effect.acquireRelease(
        Effect.promise(() => connect(databaseUrl())),
        (c) => Effect.promise(() => c.end())
      )
      const holderPid = (yield* Effect.promise(() => holder.query<{ pid: number }>("SELECT pg_backend_pid() AS pid"))).rows[0]!.pid

      yield* Effect.gen(function*() {
        const store = yield* MembershipStore
        const groupId = randomGroupId("nocancel-hb")
        const memberId = randomUUID()
        yield* store.join(groupId, { memberId, name: "m", host: "h", pid: 1 }, 10_000)
        const [before] = (yield* Effect.promise(() =>
          holder.query<{ hb: Date }>("SELECT heartbeat_at AS hb FROM modulo_group.members WHERE member_id = $1", [memberId])
        )).rows
        // A lock on the member's row that the test holds: the renewal waits for it.
        yield* Effect.promise(() => holder.query("BEGIN"))
        yield* Effect.promise(() => holder.query("SELECT 1 FROM modulo_group.members WHERE member_id = $1 FOR UPDATE", [memberId]))

        const started = Date.now()
        const result = yield* Effect.either(store.heartbeat(groupId, memberId, 0, 10_000))
        const returnedMs = Date.now() - started
        // Its client-side limit (500 ms), or, when that timer fires late on a loaded machine, the
        // statement's own lock_timeout on the server (a CI run: "canceling statement due to lock
        // timeout (55P03)"); either way no cancel is sent (below).
        expect(Either.isLeft(result) && result.left.reason).toMatch(/timed out after 500 ms|lock timeout \(55P03\)/)
        expect(returnedMs).toBeLessThan(statementTimeoutMs + 400)
        // (c) The renewal stops waiting on the server, by its own bound, while the lock is still held.
        const ended = yield* Effect.promise(() =>
          eventually(async () => (await waitingBehind(holderPid)) === 0, statementTimeoutMs + 1_500)
        )
        expect.soft(ended).toBe(true)
        yield* Effect.promise(() => holder.query("ROLLBACK"))
        // It renewed nothing (it failed with lock_timeout, not after the lock was released).
        const [after] = (yield* Effect.promise(() =>
          holder.query<{ hb: Date }>("SELECT heartbeat_at AS hb FROM modulo_group.members WHERE member_id = $1", [memberId])
        )).rows
        expect.soft(after!.hb.getTime()).toBe(before!.hb.getTime())
        // The next heartbeat works, on a session without the bound left over.
        const next = yield* store.heartbeat(groupId, memberId, 0, 10_000)
        expect(next._tag).toBe("Some")
        yield* store.leave(groupId, memberId)
      }).pipe(Effect.provide(StoreThroughBouncer))

      // (b) The unrelated statement, whose server pid the library's connections reported, was not cancelled.
      expect.soft(yield* Effect.promise(() => unrelated.outcome)).toBe("ok")
      // (a) The library's pool sent no pg_cancel_backend.
      expect(trap.cancels).toEqual([])
    }).pipe(Effect.scoped), 20_000)

  it.live("a fenced transaction past its timeout cancels nothing: the app's statement ends by the fence's backstop", () =>
    Effect.gen(function*() {
      const unrelated = yield* Effect.promise(() => unrelatedSleeper(bouncer!.url, 3))
      const trap = collision(bouncer!.port, unrelated.pid)
      yield* Effect.addFinalizer(() => Effect.sync(trap.restore))
      const marker = `mg_nocancel_${Date.now()}`

      const [[ms, outcome], lingering] = yield* Effect.gen(function*() {
        const store = yield* MembershipStore
        const sql = yield* SqlClient.SqlClient
        const groupId = randomGroupId("nocancel-fence")
        const memberId = randomUUID()
        const view = yield* store.join(groupId, { memberId, name: "m", host: "h", pid: 1 }, 10_000)
        const target = { groupId, memberId, epoch: view.epoch, index: view.index, size: view.size }
        const timed = yield* Effect.timed(
          Effect.either(Fenced.fencedWith(target, sql`SELECT pg_sleep(5) AS ${sql(marker)}`, { timeout: "300 millis" }))
        )
        // (c) Nothing of it runs on the server any more once the fence has returned.
        const running = yield* Effect.promise(() =>
          direct(async (c) =>
            (await c.query<{ n: number }>(
              `SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()`,
              [`%${marker}%`]
            )).rows[0]!.n
          )
        )
        yield* store.leave(groupId, memberId)
        return [timed, running] as const
      }).pipe(Effect.provide(StoreThroughBouncer))

      expect(Either.isLeft(outcome) && outcome.left._tag).toBe("FenceTimeout")
      // The backstop (300 ms + 1 s) ended the statement, then the ROLLBACK ran.
      expect(Duration.toMillis(ms)).toBeGreaterThan(1_200)
      expect(Duration.toMillis(ms)).toBeLessThan(2_500)
      expect(lingering).toBe(0)
      // (b) and (a)
      expect.soft(yield* Effect.promise(() => unrelated.outcome)).toBe("ok")
      expect(trap.cancels).toEqual([])
    }).pipe(Effect.scoped), 20_000)
})
