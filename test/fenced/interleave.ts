/**
 * For the tests that interleave fenced blocks with other fibers on one app transaction
 * (concurrentBlocks, markerRestore, earlyLockRollback): a connection whose statements wait on gates,
 * an app table whose rows do slow work at COMMIT, and a change of the group on another connection.
 */
import { SqlClient } from "@effect/sql"
import type { Connection } from "@effect/sql/SqlConnection"
import { expect } from "@effect/vitest"
import { Context, Effect, Fiber } from "effect"
import * as Fenced from "../../src/Fenced.js"
import type { fixture } from "./support.js"

type Fixture = Effect.Effect.Success<ReturnType<typeof fixture>>

/** Runs before (or after) a statement is sent on a gated connection. */
export type Hook = (statement: string) => Effect.Effect<void, never, any>
export const noop: Hook = () => Effect.void

/** `conn`, with `pre` run before each statement and `post` after it. */
export const gated = (conn: Connection, pre: Hook, post: Hook = noop): Connection =>
  new Proxy(conn, {
    get: (t, p) => {
      if (p === "execute" || p === "executeUnprepared" || p === "executeRaw" || p === "executeValues") {
        return (statement: string, ...rest: Array<unknown>) =>
          Effect.zipRight(
            pre(statement),
            Effect.tap((Reflect.get(t, p) as any).call(t, statement, ...rest) as Effect.Effect<unknown, unknown>, () => post(statement))
          )
      }
      return Reflect.get(t, p)
    }
  })

/**
 * `effect` on the transaction connection current where it runs (in a fenced body: the body's),
 * gated by `pre` and `post`.
 */
export const onGated = (pre: Hook, post: Hook = noop) => <X, E, R>(effect: Effect.Effect<X, E, R>) =>
  Effect.flatMap(SqlClient.TransactionConnection, ([conn, depth]) =>
    Effect.provideService(effect, SqlClient.TransactionConnection, [gated(conn, pre, post), depth] as const))

/** `effect` on a connection of its own, outside the app transaction of the context. */
export const outside = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.mapInputContext(effect, (c: Context.Context<R>) => Context.omit(SqlClient.TransactionConnection)(c) as Context.Context<R>)

/**
 * A table of the app whose rows take a second each at COMMIT (a deferred constraint trigger: work of
 * the app at its own COMMIT, after the fence's commit-time check); dropped at scope end. Its name.
 */
export const slowAtCommit = (t: Fixture) =>
  Effect.gen(function*() {
    const audit = `${t.table}_audit`
    yield* t.sql`CREATE TABLE ${t.sql(audit)} (note text)`
    yield* t.sql.unsafe(`CREATE FUNCTION ${audit}_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$`)
    yield* t.sql.unsafe(`CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON ${audit} DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ${audit}_slow()`)
    yield* Effect.addFinalizer(() => Effect.orDie(Effect.all([
      t.sql.unsafe(`DROP TABLE IF EXISTS ${audit}`),
      t.sql.unsafe(`DROP FUNCTION IF EXISTS ${audit}_slow()`)
    ])))
    return audit
  })

/**
 * A change of the group on another connection (`exclusive`: first the protocol's exclusive advisory
 * lock and the group row FOR UPDATE, as the store's changes), bumping the epoch; what it saw of the
 * app's table.
 */
export const changeOf = (t: Fixture, options: { readonly exclusive: boolean }) =>
  outside(t.sql.withTransaction(Effect.gen(function*() {
    if (options.exclusive) {
      yield* t.sql`SET LOCAL lock_timeout = '5s'`
      yield* t.sql`SELECT pg_advisory_xact_lock(${Fenced.advisoryLockClass}, hashtext(${t.groupId}))`
      yield* t.sql`SELECT epoch FROM modulo_group.groups WHERE group_id = ${t.groupId} FOR UPDATE`
    }
    yield* t.sql`UPDATE modulo_group.groups SET epoch = epoch + 1 WHERE group_id = ${t.groupId}`
    return (yield* t.sql<{ note: string }>`SELECT note FROM ${t.sql(t.table)}`).map((r) => r.note)
  })))

/**
 * After the app's transaction: the group's epoch, what committed of the app's table, and what the
 * change (`changeOf`, forked) saw of it. G2 / G6: a write fenced to the old epoch that committed came
 * before the new epoch, so the change saw it (`expectInOrder`).
 */
export const afterwards = <E>(t: Fixture, change: Fiber.RuntimeFiber<ReadonlyArray<string>, E> | undefined) =>
  Effect.gen(function*() {
    const seenByChange = change === undefined ? [] : yield* Fiber.join(change)
    const committed = yield* t.notes
    const [row] = yield* t.sql<{ epoch: string }>`SELECT epoch FROM modulo_group.groups WHERE group_id = ${t.groupId}`
    return { seenByChange, committed, epoch: Number(row!.epoch) }
  })

/** The change moved the group to epoch 8; `note`, fenced to epoch 7, committed before it or not at all. */
export const expectInOrder = (after: { readonly seenByChange: ReadonlyArray<string>; readonly committed: ReadonlyArray<string>; readonly epoch: number }, note: string, log = "") => {
  expect(after.epoch).toBe(8)
  if (after.committed.includes(note)) expect(after.seenByChange, log).toEqual([note])
}

/** Which statement a gated connection is about to send (or sent): the fence's, by their text. */
export const isSavepoint = (s: string) => s.startsWith("SAVEPOINT")
export const isRollbackTo = (s: string) => s.startsWith("ROLLBACK TO")
/** Statements.fenceBegin */
export const isBegin = (s: string) => s.includes("AS old_st")
/** Statements.fenceQueue: the shared advisory lock. */
export const isQueue = (s: string) => s.includes("pg_advisory_xact_lock_shared")
/** Statements.fenceGroup: the group row FOR SHARE. */
export const isGroup = (s: string) => s.includes("FOR SHARE") && s.includes("modulo_group.groups")
/** Statements.fenceMember: the member row FOR KEY SHARE and the first check row. */
export const isMember = (s: string) => s.includes("FOR KEY SHARE") && s.includes("fence_checks")
/** Statements.fenceEnd */
export const isEnd = (s: string) => s.includes("AS replication")
/** The fixture's `insert`. */
export const isInsert = (s: string) => s.includes("(note) VALUES")
