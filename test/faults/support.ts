/**
 * Shared by the fault, bad-input and security suites: members as fibers of this process on the real
 * PostgreSQL store, a recorder that checks G1 and G2 at every start, members that can be "crashed"
 * (every store call hangs from then on, as if the process froze) and a database of a test's own.
 */
import { SqlClient } from "@effect/sql"
import { Duration, Effect, Exit, Layer, Scope } from "effect"
import pg from "pg"
import * as Membership from "../../src/Membership.js"
import type { MembershipConfigInput } from "../../src/MembershipConfig.js"
import type { MembershipStoreService } from "../../src/MembershipStore.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, ownDatabase, PgLive } from "../support/Database.js"
import * as Wait from "../support/Wait.js"
import { makeRecorder } from "../support/Recorder.js"

/** lease 2 s > heartbeat 200 ms + fence margin 500 ms + statement timeout 1 s. */
export const fast = {
  heartbeat: "200 millis",
  lease: "2 seconds",
  fenceMargin: "500 millis",
  statementTimeout: "1 second"
} as const

export const StoreLive = PgMembershipStore.layer().pipe(Layer.provideMerge(PgLive))

/** `waitFor` (test/support/Wait.ts) with this suite's default of 15 s. */
export const waitFor = (done: () => boolean, max: Duration.DurationInput = Duration.seconds(15), what = "condition") =>
  Wait.waitFor(done, max, what)

/** `waitForEffect` (test/support/Wait.ts) with this suite's default of 15 s. */
export const waitForEffect = <E, R>(
  done: Effect.Effect<boolean, E, R>,
  max: Duration.DurationInput = Duration.seconds(15),
  what = "condition"
) => Wait.waitForEffect(done, max, what)

/**
 * A store whose calls can be frozen: once `freeze` runs, every call (and every call in flight that
 * has not returned) hangs forever, as the calls of a process that was SIGKILLed or hung do.
 */
export const freezable = (store: MembershipStoreService) =>
  Effect.gen(function*() {
    let isFrozen = false
    // A call that returns after the freeze is never seen either: the process is gone. Interruptible
    // even inside the member's (uninterruptible) leave finalizer, so its timeout can end the wait.
    const hang = Effect.interruptible(Effect.never)
    const gate = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
      Effect.suspend(() => (isFrozen ? hang : Effect.flatMap(Effect.exit(effect), (exit) => (isFrozen ? hang : exit))))
    const wrapped: MembershipStoreService = {
      join: (...args) => gate(store.join(...args)),
      heartbeat: (...args) => gate(store.heartbeat(...args)),
      reap: (...args) => gate(store.reap(...args)),
      leave: (...args) => gate(store.leave(...args)),
      release: (...args) => gate(store.release(...args)),
      wait: (...args) => gate(store.wait(...args)),
      stopWaiting: (...args) => gate(store.stopWaiting(...args)),
      releaseSlots: (...args) => gate(store.releaseSlots(...args)),
      retakeSlot: (...args) => gate(store.retakeSlot(...args)),
      slotRows: store.slotRows,
      waiters: store.waiters,
      wakeups: store.wakeups,
      group: store.group,
      members: store.members,
      groups: store.groups
    }
    const freeze = Effect.sync(() => {
      isFrozen = true
    })
    return { store: wrapped, freeze }
  })

/**
 * Members of one group, each in a scope of its own, all tracked by one recorder. `join` returns
 * the member, `close` (graceful leave), `crash` (its work stops and its store calls hang from
 * now on: its row stays until its lease expires, as after kill -9) and `hang` (its store calls hang,
 * its work goes on until it fences itself).
 */
export const makeGroup = (groupId: string, base: Partial<MembershipConfigInput> = fast) =>
  Effect.gen(function*() {
    const rec = yield* makeRecorder
    const store = yield* MembershipStore
    const join = (input: Partial<MembershipConfigInput> = {}) =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const f = yield* freezable(store)
        const m = yield* Membership.make({ groupId, ...base, ...input }).pipe(
          Effect.provideService(MembershipStore, f.store),
          Scope.extend(scope)
        )
        yield* rec.track(m).pipe(Scope.extend(scope))
        const close = Scope.close(scope, Exit.void)
        yield* Effect.addFinalizer(() => close)
        // The scope closes in the background: its leave hangs until the leave timeout gives up.
        const crash = Effect.zipRight(f.freeze, Effect.asVoid(Effect.forkDaemon(close)))
        // A hung process: its store calls hang, its work goes on until it fences itself.
        const hang = f.freeze
        return { m, close, crash, hang }
      })
    return { rec, join, groupId }
  })

/** The group's member rows as the database has them. */
export const rows = (groupId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ member_id: string; idx: number | null; acked_epoch: string; lease_left_ms: string }>`
      SELECT member_id, idx, acked_epoch,
             (extract(epoch FROM lease_expires_at - clock_timestamp()) * 1000)::bigint AS lease_left_ms
        FROM modulo_group.members WHERE group_id = ${groupId} ORDER BY idx NULLS LAST`)

export const groupRow = (groupId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<{ epoch: string; size: number }>`SELECT epoch, size FROM modulo_group.groups WHERE group_id = ${groupId}`,
      (r) => (r[0] === undefined ? undefined : { epoch: Number(r[0].epoch), size: Number(r[0].size) })
    ))

/** A database of its own (so schema states and roles can be tested), dropped at scope end. */
export const freshDatabase = ownDatabase("db", { maxConnections: 20 })

/** The URL of the test database with other credentials or another database. */
export const urlWith = (change: { user?: string; password?: string; database?: string; port?: number }) => {
  const url = new URL(databaseUrl())
  if (change.user !== undefined) url.username = encodeURIComponent(change.user)
  if (change.password !== undefined) url.password = encodeURIComponent(change.password)
  if (change.database !== undefined) url.pathname = `/${encodeURIComponent(change.database)}`
  if (change.port !== undefined) url.port = String(change.port)
  return url.toString()
}


/**
 * Whether the test server checks passwords. The CI machine's PostgreSQL uses trust auth (any
 * password logs in), the embedded one does not: a wrong-password case can only fail on the latter.
 */
export const serverChecksPasswords = async (): Promise<boolean> => {
  const client = new pg.Client({ connectionString: urlWith({ password: "surely-not-the-password" }) })
  client.on("error", () => undefined)
  try {
    await client.connect()
    await client.end()
    return false
  } catch {
    return true
  }
}

export { Membership }
