/**
 * An adversarial review (attack13): a nested fence's end restores the outer marker unconditionally (fenceEnd's
 * `restored_marker`), so a block whose locks (and marker) were rolled back by a concurrent sibling's
 * ROLLBACK TO SAVEPOINT gets its marker back from a third block that began before the rollback and
 * took its locks after it. Block A then reports success holding no lock of its group, and its write
 * commits after epoch 8 of the group was committed. Now the marker is a chain of the ids of the
 * blocks whose locks stand, and a block's end restores only the chain its own last lock found: block
 * A fails.
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Fiber } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture } from "./support.js"
import { afterwards, changeOf, expectInOrder, isBegin, isMember, isQueue, isSavepoint, onGated, slowAtCommit } from "./interleave.js"

it.live("a fenced block whose locks a sibling rolled back does not get its marker back from a third block: it fails", () =>
  Effect.gen(function*() {
    const t = yield* fixture("attack13-a")
    const u = yield* fixture("attack13-c")
    // Some work of the app at its own COMMIT, after the fence's commit-time check.
    const audit = yield* slowAtCommit(t)
    // A change of the group (epoch 7 -> 8), from another connection.
    const change = changeOf(t, { exclusive: false })

    const spA = yield* Deferred.make<void>()
    const spC = yield* Deferred.make<void>()
    const spB = yield* Deferred.make<void>()
    const aLocked = yield* Deferred.make<void>()
    const cBegun = yield* Deferred.make<void>()
    const bRolledBack = yield* Deferred.make<void>()
    const cDone = yield* Deferred.make<void>()
    const log: Array<string> = []

    const outcome: { a?: string; b?: string; c?: string } = {}
    let changeFiber: Fiber.RuntimeFiber<ReadonlyArray<string>, unknown> | undefined
    const exit = yield* t.sql.withTransaction(Effect.gen(function*() {
      const on = onGated
      // Block A (group t, epoch 7): its locks are taken after B's savepoint.
      const a = Fenced.fencedWith(t.target, Effect.zipRight(Deferred.await(cDone), t.insert("A, fenced to epoch 7")), {
        timeout: "3 seconds"
      }).pipe(
        on(
          (s) => isQueue(s) ? Deferred.await(spB) : Effect.void,
          (s) => Effect.sync(() => log.push(`A: ${s.slice(0, 40).replace(/\s+/g, " ")}`)).pipe(Effect.zipRight(
            isSavepoint(s) ? Deferred.succeed(spA, undefined) : isMember(s) ? Deferred.succeed(aLocked, undefined) : Effect.void
          ))
        ),
        Effect.either
      )
      // Block C (another group): begins after A's locks (reads A's marker as the one to restore),
      // takes its own locks after B's rollback.
      const c = Fenced.fencedWith(u.target, u.insert("C"), { timeout: "3 seconds" }).pipe(
        on(
          (s) => isBegin(s) ? Deferred.await(aLocked) : isQueue(s) ? Deferred.await(bRolledBack) : Effect.void,
          (s) => Effect.sync(() => log.push(`C: ${s.slice(0, 40).replace(/\s+/g, " ")}`)).pipe(Effect.zipRight(
            isSavepoint(s) ? Deferred.succeed(spC, undefined) : isBegin(s) ? Deferred.succeed(cBegun, undefined) : Effect.void
          ))
        ),
        Effect.either,
        Effect.ensuring(Deferred.succeed(cDone, undefined))
      )
      // B: the app's own nested transaction, which fails (rolls back to its savepoint effect_sql_1).
      const b = t.sql.withTransaction(Effect.zipRight(Deferred.await(cBegun), Effect.fail("B failed" as const))).pipe(
        on(
          (s) => isSavepoint(s) ? Effect.zipRight(Deferred.await(spA), Deferred.await(spC)) : Effect.void,
          (s) => Effect.sync(() => log.push(`B: ${s.slice(0, 40)}`)).pipe(Effect.zipRight(
            isSavepoint(s) ? Deferred.succeed(spB, undefined) : Effect.void))
        ),
        Effect.either,
        Effect.ensuring(Deferred.succeed(bRolledBack, undefined))
      )
      const [ra, rb, rc] = yield* Effect.all([a, b, c], { concurrency: "unbounded" })
      outcome.a = Either.isRight(ra) ? "succeeded" : ra.left._tag
      outcome.b = Either.isRight(rb) ? "succeeded" : String(rb.left)
      outcome.c = Either.isRight(rc) ? "succeeded" : (rc.left as { _tag: string })._tag
      // The locks A holds (the app's transaction): none on group t.
      const held = yield* t.sql<{ locktype: string; mode: string }>`
        SELECT locktype, mode FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'`
      log.push(`advisory locks held after the blocks: ${JSON.stringify(held)}`)
      yield* t.sql`INSERT INTO ${t.sql(audit)} (note) VALUES ('after the blocks')`
      changeFiber = yield* Effect.fork(Effect.zipRight(Effect.sleep("300 millis"), change))
    })).pipe(Effect.exit)
    expectInOrder(yield* afterwards(t, changeFiber), "A, fenced to epoch 7")
    // A has no locks (they were rolled back with B's savepoint); it must not report success.
    expect(outcome.a, `${log.join("\n")}\napp transaction: ${exit._tag}`).not.toBe("succeeded")
  }).pipe(Effect.scoped, Effect.provide(PgLive)) as Effect.Effect<void, unknown>, 20_000)

it.live("variant: the restoring block is nested in A's body (another group), B a failing sibling of A", () =>
  Effect.gen(function*() {
    const t = yield* fixture("attack13-a")
    const u = yield* fixture("attack13-c")
    // Some work of the app at its own COMMIT, after the fence's commit-time check.
    const audit = yield* slowAtCommit(t)
    // A change of the group (epoch 7 -> 8), from another connection.
    const change = changeOf(t, { exclusive: false })

    const spA = yield* Deferred.make<void>()
    const spC = yield* Deferred.make<void>()
    const spB = yield* Deferred.make<void>()
    const aLocked = yield* Deferred.make<void>()
    const aBegun = yield* Deferred.make<void>()
    const cBegun = yield* Deferred.make<void>()
    const bRolledBack = yield* Deferred.make<void>()
    const cDone = yield* Deferred.make<void>()
    const log: Array<string> = []

    const outcome: { a?: string; b?: string; c?: string } = {}
    let changeFiber: Fiber.RuntimeFiber<ReadonlyArray<string>, unknown> | undefined
    const exit = yield* t.sql.withTransaction(Effect.gen(function*() {
      // The connection and depth current where the effect runs (C: inside A's body, depth 1).
      const on = onGated
      let c: Effect.Effect<unknown, never, any> = Effect.void
      // Block A (group t, epoch 7): its locks are taken after B's savepoint.
      const a = Fenced.fencedWith(t.target, Effect.zipRight(Effect.suspend(() => c), t.insert("A, fenced to epoch 7")), {
        timeout: "3 seconds"
      }).pipe(
        on(
          (s) => isQueue(s) ? Deferred.await(spB) : Effect.void,
          (s) => Effect.sync(() => log.push(`A: ${s.slice(0, 40).replace(/\s+/g, " ")}`)).pipe(Effect.zipRight(
            isSavepoint(s) ? Deferred.succeed(spA, undefined) : isBegin(s) ? Deferred.succeed(aBegun, undefined) : isMember(s) ? Deferred.succeed(aLocked, undefined) : Effect.void
          ))
        ),
        Effect.either
      )
      // Block C (another group): begins after A's locks (reads A's marker as the one to restore),
      // takes its own locks after B's rollback.
      c = Fenced.fencedWith(u.target, u.insert("C"), { timeout: "3 seconds" }).pipe(
        on(
          (s) => isBegin(s) ? Deferred.await(aLocked) : isQueue(s) ? Deferred.await(bRolledBack) : Effect.void,
          (s) => Effect.sync(() => log.push(`C: ${s.slice(0, 40).replace(/\s+/g, " ")}`)).pipe(Effect.zipRight(
            isSavepoint(s) ? Deferred.succeed(spC, undefined) : isBegin(s) ? Deferred.succeed(cBegun, undefined) : Effect.void
          ))
        ),
        Effect.either,
        Effect.ensuring(Deferred.succeed(cDone, undefined))
      )
      // B: the app's own nested transaction, which fails (rolls back to its savepoint effect_sql_1).
      const b = t.sql.withTransaction(Effect.zipRight(Deferred.await(cBegun), Effect.fail("B failed" as const))).pipe(
        on(
          (s) => isSavepoint(s) ? Deferred.await(aBegun) : Effect.void,
          (s) => Effect.sync(() => log.push(`B: ${s.slice(0, 40)}`)).pipe(Effect.zipRight(
            isSavepoint(s) ? Deferred.succeed(spB, undefined) : Effect.void))
        ),
        Effect.either,
        Effect.ensuring(Deferred.succeed(bRolledBack, undefined))
      )
      const [ra, rb] = yield* Effect.all([a, b], { concurrency: "unbounded" })
      const rc = Either.right(undefined)
      outcome.a = Either.isRight(ra) ? "succeeded" : ra.left._tag
      outcome.b = Either.isRight(rb) ? "succeeded" : String(rb.left)
      outcome.c = Either.isRight(rc) ? "succeeded" : (rc.left as { _tag: string })._tag
      // The locks A holds (the app's transaction): none on group t.
      const held = yield* t.sql<{ locktype: string; mode: string }>`
        SELECT locktype, mode FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'`
      log.push(`advisory locks held after the blocks: ${JSON.stringify(held)}`)
      yield* t.sql`INSERT INTO ${t.sql(audit)} (note) VALUES ('after the blocks')`
      changeFiber = yield* Effect.fork(Effect.zipRight(Effect.sleep("300 millis"), change))
    })).pipe(Effect.exit)
    expectInOrder(yield* afterwards(t, changeFiber), "A, fenced to epoch 7")
    // A has no locks (they were rolled back with B's savepoint); it must not report success.
    expect(outcome.a, `${log.join("\n")}\napp transaction: ${exit._tag}`).not.toBe("succeeded")
  }).pipe(Effect.scoped, Effect.provide(PgLive)) as Effect.Effect<void, unknown>, 20_000)
