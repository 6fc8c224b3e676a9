/**
 * The hostile database user: a role that may log in and nothing more (no grant on schema
 * `modulo_group`), which can still send any notification on any channel. Plus members as fibers of
 * this process whose store calls are counted and can be frozen, and whose every state is recorded.
 */
import { SqlClient } from "@effect/sql"
import { Effect, Exit, Scope, Stream } from "effect"
import { randomBytes } from "node:crypto"
import pg from "pg"
import * as Membership from "../../src/Membership.js"
import type { MembershipConfigInput } from "../../src/MembershipConfig.js"
import type { MembershipStoreService } from "../../src/MembershipStore.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import type { MemberState } from "../../src/MemberState.js"
import { databaseUrl } from "../support/Database.js"
export { groupEpoch } from "../support/Database.js"

export { waitFor, waitForEffect } from "../support/Wait.js"

/** A role with LOGIN and a password, no grants; dropped at scope end (after its connections close). */
export const hostileRole = Effect.acquireRelease(
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const name = `mg_hostile_${randomBytes(4).toString("hex")}`
    const password = `pw-${randomBytes(8).toString("hex")}`
    yield* sql.unsafe(`CREATE ROLE "${name}" LOGIN PASSWORD '${password}'`)
    return { name, password }
  }),
  ({ name }) => Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`DROP ROLE IF EXISTS "${name}"`)).pipe(Effect.orDie)
)

/** A plain `pg` connection of the hostile role to the test database, closed at scope end. */
export const hostileClient = (role: { readonly name: string; readonly password: string }) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const url = new URL(databaseUrl())
      url.username = encodeURIComponent(role.name)
      url.password = encodeURIComponent(role.password)
      const client = new pg.Client({ connectionString: url.toString(), application_name: "modulo-group-hostile" })
      client.on("error", () => undefined)
      await client.connect()
      // Its own notifications need not wait for a disk flush each (any role may set this).
      await client.query("SET synchronous_commit = off")
      return client
    }),
    (client) => Effect.promise(() => client.end().catch(() => undefined))
  )

/** What the attacker computes, without any grant: the channel of a group. */
export const attackerChannel = (client: pg.Client, groupId: string) =>
  Effect.promise(async () => (await client.query<{ c: string }>("SELECT 'mg_' || md5($1) AS c", [groupId])).rows[0]!.c)

/** One notification per payload, each in its own transaction. */
export const forge = (client: pg.Client, channel: string, payloads: ReadonlyArray<string>) =>
  Effect.promise(async () => {
    for (const p of payloads) await client.query("SELECT pg_notify($1, $2)", [channel, p])
  })

/**
 * `n` notifications, each committed on its own (no de-duplication of equal payloads within one
 * transaction): a DO block that commits after every `pg_notify`, optionally `spacingMs` apart (a
 * sustained stream rather than one burst). `payloadSql` may use `i`, the loop counter (e.g. `'5:ready:' || i`).
 */
export const burst = (client: pg.Client, channel: string, payloadSql: string, n: number, spacingMs = 0) =>
  Effect.promise(() =>
    client.query(`
      DO $$
      BEGIN
        FOR i IN 1..${n} LOOP
          PERFORM pg_notify(${pg.escapeLiteral(channel)}, ${payloadSql});
          COMMIT;
          ${spacingMs > 0 ? `PERFORM pg_sleep(${spacingMs / 1000});` : ""}
        END LOOP;
      END $$`)
  )

/** `n` notifications with distinct payloads in one transaction, all delivered at its commit. */
export const burstOneCommit = (client: pg.Client, channel: string, payloadSql: string, n: number) =>
  Effect.promise(() =>
    client.query(`SELECT count(pg_notify($1, ${payloadSql})) FROM generate_series(1, ${n}) AS i`, [channel])
  )

export interface Recorded {
  readonly at: number
  readonly member: string
  readonly state: MemberState
}

/** Counts and times store calls, and can freeze them (every call from then on hangs, as in a hung process). */
const instrument = (store: MembershipStoreService, heartbeats: Array<number>) => {
  let frozen = false
  const hang = Effect.interruptible(Effect.never)
  const gate = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
    Effect.suspend(() => (frozen ? hang : Effect.flatMap(Effect.exit(effect), (exit) => (frozen ? hang : exit))))
  const wrapped: MembershipStoreService = {
    ...store,
    join: (...args) => gate(store.join(...args)),
    heartbeat: (...args) =>
      gate(Effect.suspend(() => {
        heartbeats.push(Date.now())
        return store.heartbeat(...args)
      })),
    reap: (...args) => gate(store.reap(...args)),
    leave: (...args) => gate(store.leave(...args))
  }
  return {
    store: wrapped,
    freeze: Effect.sync(() => {
      frozen = true
    })
  }
}

/**
 * Members of one group, each in a scope of its own. Every state of every member is appended to
 * `log` (with the wall-clock time), every work start to `starts`.
 */
export const makeGroup = (groupId: string, base: Partial<MembershipConfigInput>) =>
  Effect.gen(function*() {
    const store = yield* MembershipStore
    const log: Array<Recorded> = []
    const sql = yield* SqlClient.SqlClient
    const starts: Array<{ at: number; member: string; epoch: number; index: number; size: number }> = []
    const violations: Array<string> = []
    // At each start, the database must already hold every member's acknowledgement of the epoch.
    // Acknowledgements only grow, so a row still below it when this query runs was below it at the
    // start too (a sound, one-sided check). Uninterruptible: it runs in work that a change
    // interrupts, on the pool the members' store uses, and an interrupted query's cancel can land
    // on the next statement given its connection, a member's or this test's (test/fenced/sharedPoolCancel.pg.test.ts).
    const checkStart = (label: string, epoch: number) =>
      Effect.uninterruptible(memberRows(groupId)).pipe(
        Effect.provideService(SqlClient.SqlClient, sql),
        Effect.tap((rows) =>
          Effect.sync(() => {
            const behind = rows.filter((r) => r.acked < epoch)
            if (behind.length > 0) {
              violations.push(`${label} started epoch ${epoch} while ${behind.length} member(s) had not acknowledged it`)
            }
          })
        ),
        Effect.ignore
      )
    const join = (
      label: string,
      options: { readonly input?: Partial<MembershipConfigInput>; readonly work?: (epoch: number) => Effect.Effect<void> } = {}
    ) =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const heartbeats: Array<number> = []
        const s = instrument(store, heartbeats)
        const m = yield* Membership.make({ groupId, ...base, ...options.input }).pipe(
          Effect.provideService(MembershipStore, s.store),
          Scope.extend(scope)
        )
        yield* Effect.forkIn(
          Stream.runForEach(m.changes, (state) => Effect.sync(() => log.push({ at: Date.now(), member: label, state }))),
          scope
        )
        yield* m.whileAssigned((a) =>
          Effect.sync(() => starts.push({ at: Date.now(), member: label, epoch: a.epoch, index: a.index, size: a.size })).pipe(
            Effect.zipRight(checkStart(label, a.epoch)),
            Effect.zipRight(options.work === undefined ? Effect.never : options.work(a.epoch))
          )
        ).pipe(Scope.extend(scope))
        const close = Scope.close(scope, Exit.void)
        yield* Effect.addFinalizer(() => close)
        return { label, m, heartbeats, close, freeze: s.freeze }
      })
    /** The latest state of each member, by label. */
    const latest = () => {
      const out = new Map<string, MemberState>()
      for (const r of log) out.set(r.member, r.state)
      return out
    }
    /** Every member in `labels` is Assigned in one epoch, indices exactly 0..n-1. */
    const formed = (labels: ReadonlyArray<string>) => {
      const now = latest()
      const states = labels.map((l) => now.get(l))
      if (!states.every((s) => s?._tag === "Assigned")) return false
      const assigned = states as Array<Extract<MemberState, { _tag: "Assigned" }>>
      const epochs = new Set(assigned.map((s) => s.epoch))
      const indices = assigned.map((s) => s.index).sort((a, b) => a - b)
      return epochs.size === 1 && assigned.every((s) => s.size === labels.length) && indices.every((x, i) => x === i)
    }
    return { join, log, starts, violations, latest, formed }
  })

/** The member rows of a group as the database has them now. */
export const memberRows = (groupId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql<{ member_id: string; idx: number | null; acked_epoch: string }>`
        SELECT member_id, idx, acked_epoch FROM modulo_group.members WHERE group_id = ${groupId}`,
      (rows) => rows.map((r) => ({ memberId: r.member_id, index: r.idx, acked: Number(r.acked_epoch) }))
    ))

