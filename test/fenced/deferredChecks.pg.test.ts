/**
 * The app's deferred checks and the fence's commit-time check (an adversarial review). PostgreSQL runs
 * deferred trigger events at COMMIT in the order they were queued, and events queued while they run
 * (an app's deferred constraint trigger writing a row whose foreign key is deferred too) at the end.
 * A check of the app's that waits for a row lock after the fence's check at COMMIT has passed holds
 * the COMMIT open while the lease runs out, and the COMMIT then succeeds: a fenced write committed
 * 0.7-1.3 s after the lease's end on the database clock.
 *
 * - A fence of its own transaction runs the body's deferred checks before its last lease check
 *   (`SET CONSTRAINTS ALL IMMEDIATE`, `Statements.fenceDeferredNow`): such a wait is then inside the
 *   fence's timer, and the lease is checked after it. Before the change the second test committed
 *   (the first did not: a deferred check queued by the body itself runs before the fence's second
 *   check row, which `fenceEnd` queues after the body; it is kept as a guard of that order).
 * - Nested in an app's transaction, checks the app queues after the block still run after the fence's
 *   at COMMIT (the app's later statements keep their constraint modes): the COMMIT can end past the
 *   lease, and what holds is that no change of the group gets through before it (docs/fencing.md,
 *   "Nesting").
 *
 * Session B holds the parent row FOR UPDATE for longer than the member's lease has left; nothing renews
 * the lease (the fixture's member has no membership fibers).
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture } from "./support.js"

/** A group, its member with `leaseMs` left, a parent table with row 1 held FOR UPDATE by B for `holdMs`. */
const setUp = (prefix: string, holdMs: number, leaseMs: number) =>
  Effect.gen(function*() {
    const t = yield* fixture(prefix)
    const sql = t.sql
    const parent = `${t.table}_parent`
    const child = `${t.table}_child`
    const fn = `${t.table}_audit_fn`
    yield* Effect.acquireRelease(
      Effect.gen(function*() {
        yield* sql`CREATE TABLE ${sql(parent)} (id int PRIMARY KEY)`
        yield* sql`CREATE TABLE ${sql(child)} (parent_id int REFERENCES ${sql(parent)} (id) DEFERRABLE INITIALLY DEFERRED, note text)`
        yield* sql`INSERT INTO ${sql(parent)} (id) VALUES (1)`
      }),
      () =>
        Effect.orDie(Effect.all([
          sql.unsafe(`DROP TRIGGER IF EXISTS ${t.table}_audit ON ${t.table}`),
          sql.unsafe(`DROP FUNCTION IF EXISTS ${fn}()`),
          sql`DROP TABLE IF EXISTS ${sql(child)}`,
          sql`DROP TABLE IF EXISTS ${sql(parent)}`
        ]))
    )
    /** An app's audit trigger: deferred, it writes a child row at COMMIT (whose foreign key is deferred too). */
    const withAuditTrigger = Effect.all([
      sql.unsafe(`CREATE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO ${child} (parent_id, note) VALUES (1, NEW.note); RETURN NULL; END $$`),
      sql.unsafe(`CREATE CONSTRAINT TRIGGER ${t.table}_audit AFTER INSERT ON ${t.table}
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ${fn}()`)
    ])
    const locked = yield* Deferred.make<void>()
    const holder = yield* Effect.fork(
      sql.withTransaction(Effect.gen(function*() {
        yield* sql`SELECT id FROM ${sql(parent)} WHERE id = 1 FOR UPDATE`
        yield* Deferred.succeed(locked, undefined)
        yield* Effect.sleep(`${holdMs} millis`)
        const [row] = yield* sql<{ at: Date }>`SELECT clock_timestamp() AS at`
        return row!.at
      }))
    )
    yield* Deferred.await(locked)
    yield* t.setLease(leaseMs)
    const [lease] = yield* sql<{ expires: Date }>`SELECT lease_expires_at AS expires FROM modulo_group.members WHERE member_id = ${t.memberId}`
    const addChild = sql`INSERT INTO ${sql(child)} (parent_id, note) VALUES (1, 'child')`
    return { t, sql, withAuditTrigger, addChild, released: Fiber.join(holder), leaseEnd: lease!.expires }
  })

it.live("a fenced write whose body queues a deferred foreign key that waits past the lease does not commit", () =>
  Effect.gen(function*() {
    const s = yield* setUp("fenced-deferred-fk", 1_200, 400)
    // A timeout well past the wait: the lease check after the app's checks decides.
    const result = yield* Effect.either(
      Fenced.fencedWith(s.t.target, Effect.zipRight(s.t.insert("fenced-write"), s.addChild), { timeout: "5 seconds" })
    )
    const released = yield* s.released
    expect(released.getTime()).toBeGreaterThan(s.leaseEnd.getTime())
    expect(result._tag === "Left" ? result.left._tag : "committed").toBe("StaleAssignment")
    expect(yield* s.t.notes).toEqual([])
    expect(yield* s.t.leftovers).toBe(0)
  }).pipe(Effect.scoped, Effect.provide(PgLive)))

it.live("a fenced write whose body fires an app's deferred trigger cascading into a deferred foreign key does not commit past the lease", () =>
  Effect.gen(function*() {
    const s = yield* setUp("fenced-deferred-cascade", 1_700, 400)
    yield* s.withAuditTrigger
    // At COMMIT the queue was [fence check, audit trigger, fence check]; the audit row's foreign-key
    // check was queued behind the last fence check. Now the timer (1 s) ends it first.
    const exit = yield* Effect.exit(Fenced.fencedWith(s.t.target, s.t.insert("fenced-write")))
    const released = yield* s.released
    expect(released.getTime()).toBeGreaterThan(s.leaseEnd.getTime())
    expect(Exit.isFailure(exit)).toBe(true)
    expect(yield* s.t.notes).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive)))

it.live("nested: an app's deferred check after the block may end its COMMIT past the lease, and no change gets through before it", () =>
  Effect.gen(function*() {
    const s = yield* setUp("fenced-deferred-nested", 1_500, 400)
    const sql = s.sql
    const app = yield* Effect.fork(Effect.exit(sql.withTransaction(Effect.gen(function*() {
      yield* Fenced.fencedWith(s.t.target, s.t.insert("nested-write"))
      yield* s.addChild
    }))))
    // After the lease's end, while the app's COMMIT waits in its foreign-key check: a reap of the member
    // (the DELETE of its row) and an epoch bump, as a change would make them, from another session.
    yield* Effect.sleep("700 millis")
    const change = yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`DELETE FROM modulo_group.members WHERE member_id = ${s.t.memberId}`
      yield* sql`UPDATE modulo_group.groups SET epoch = epoch + 1 WHERE group_id = ${s.t.groupId}`
      const [row] = yield* sql<{ at: Date }>`SELECT clock_timestamp() AS at`
      return row!.at
    }))
    const released = yield* s.released
    const exit = yield* Fiber.join(app)
    // The app's COMMIT could end only after B released the parent row; the change waited for it.
    expect(change.getTime()).toBeGreaterThan(released.getTime())
    expect(released.getTime()).toBeGreaterThan(s.leaseEnd.getTime())
    // Committed (docs/fencing.md, "Nesting"): past the lease, before any change.
    expect(Exit.isSuccess(exit)).toBe(true)
    expect(yield* s.t.notes).toEqual(["nested-write"])
  }).pipe(Effect.scoped, Effect.provide(PgLive)))
