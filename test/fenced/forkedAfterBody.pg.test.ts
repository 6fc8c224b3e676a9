/**
 * G6 (an adversarial review): statements of a fiber the fenced body forked and left running, sent
 * after the body had returned. Such a fiber inherits the body's `TransactionConnection`; when the body
 * returns, the fence checks, commits and gives the pg client back to the pool, but the fiber's
 * connection object still holds that client. Before the fix a statement it sent later ran outside
 * any transaction (no lock, no lease check) and committed under a stale assignment, or, with a pool of
 * one connection, inside another member's fenced transaction, and committed under that fence; after a
 * `StaleAssignment` ("nothing committed") a `forkScoped` fiber's write committed anyway. Now the
 * body's connection refuses every statement once the body has ended (`statementsWhileRunning`).
 */
import { expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { clientWithOptions, PgLive } from "../support/Database.js"
import { fixture } from "../fenced/support.js"

it.live("G6: a write of a fiber the fenced body forked (forkDaemon), sent after the fence's COMMIT, is refused: nothing commits unfenced", () =>
  Effect.gen(function*() {
    const t = yield* fixture("forked-late")
    const sql = t.sql
    // The forked fiber's write records the epoch and lease state the database had when it committed.
    const lateWrite = Effect.gen(function*() {
      yield* Effect.sleep("400 millis")
      yield* sql`INSERT INTO ${sql(t.table)} (note)
                 SELECT 'late: epoch ' || g.epoch || ', lease live ' || (m.lease_expires_at > clock_timestamp())
                        || ', in transaction ' || (txid_current_if_assigned() IS NOT NULL AND now() <> statement_timestamp())
                   FROM modulo_group.groups g LEFT JOIN modulo_group.members m ON m.member_id = ${t.memberId}
                  WHERE g.group_id = ${t.groupId}`
    })
    let forked: Fiber.RuntimeFiber<void, unknown> | undefined
    const result = yield* Effect.either(Fenced.fencedWith(
      t.target,
      Effect.gen(function*() {
        yield* t.insert("fenced-write")
        forked = yield* Effect.forkDaemon(lateWrite)
      })
    ))
    expect(result._tag).toBe("Right") // the fenced block itself committed under epoch 7
    // The assignment moves on: a change bumps the epoch and the member's lease is gone.
    yield* sql`UPDATE modulo_group.groups SET epoch = 8 WHERE group_id = ${t.groupId}`
    yield* t.setLease(-1000)
    // The forked fiber, part of the fenced body, writes now.
    const late = yield* Fiber.await(forked!)
    const notes = yield* t.notes
    // Refused: the fiber failed, nothing of it was sent.
    expect(late._tag).toBe("Failure")
    // G6: nothing of the body commits after its assignment is stale.
    expect(notes.filter((n) => n.startsWith("late"))).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive)))

// The same stray statement with a pool of one connection: by the time it is sent, the client belongs
// to another member's fenced transaction (another group's).

it.live("G6: with a pool of one connection, the forked fiber's late write does not land in another member's fenced transaction", () =>
  Effect.gen(function*() {
    const a = yield* fixture("forked-a")
    const b = yield* fixture("forked-b")
    const sql = a.sql
    let forked: Fiber.RuntimeFiber<unknown, unknown> | undefined
    const lateWrite = Effect.zipRight(Effect.sleep("300 millis"), a.insert("A's late write"))
    const first = yield* Effect.either(Fenced.fencedWith(a.target, Effect.gen(function*() {
      yield* a.insert("A fenced")
      forked = yield* Effect.forkDaemon(lateWrite)
    })))
    expect(first._tag).toBe("Right")
    // A's assignment is stale from now on (a change moved its group on; its lease is gone).
    yield* sql`UPDATE modulo_group.groups SET epoch = 8 WHERE group_id = ${a.groupId}`
    yield* a.setLease(-1000)
    // B's fenced block takes the pool's only connection and keeps it past A's daemon's write.
    const second = yield* Effect.either(Fenced.fencedWith(
      b.target,
      Effect.zipRight(b.insert("B fenced"), Effect.sleep("700 millis")),
      { timeout: "3 seconds" }
    ))
    yield* Fiber.await(forked!)
    const notesA = yield* a.notes
    expect(second._tag).toBe("Right")
    expect(notesA).not.toContain("A's late write")
  }).pipe(Effect.scoped, Effect.provide(clientWithOptions("-c application_name=forked-one", "forked-one", { maxConnections: 1 }))))


// Not a daemon: `Effect.forkScoped` in the body (a work run is scoped: the fiber lives as long as the
// run). The fence fails (the lease runs out during the body), and the forked write comes afterwards.
it.live("G6: after StaleAssignment ('nothing committed'), a write of the body's forkScoped fiber does not commit either", () =>
  Effect.gen(function*() {
    const t = yield* fixture("forked-scoped")
    yield* t.setLease(150)
    const result = yield* Effect.either(Fenced.fencedWith(
      t.target,
      Effect.gen(function*() {
        yield* t.insert("fenced-write")
        yield* Effect.forkScoped(Effect.zipRight(Effect.sleep("400 millis"), t.insert("audit (forked, scoped)")))
        yield* Effect.sleep("250 millis") // the lease runs out meanwhile: the fence's last check fails
      }),
      { timeout: "3 seconds" }
    ))
    yield* Effect.sleep("600 millis")
    const notes = yield* t.notes
    expect(result._tag === "Left" ? result.left._tag : "committed").toBe("StaleAssignment")
    expect(notes).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive)))
