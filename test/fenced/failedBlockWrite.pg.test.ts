/**
 * An adversarial review (attack15): a block that FAILS (FenceBroken) but whose body's write commits without any of its locks.
 * A concurrent app transaction C (savepoint effect_sql_1, taken after A's) holds A's locks; C fails
 * after A's last lock and rolls back to its savepoint: A's locks, stamps and check row are gone
 * (the savepoint stays open: @effect/sql never RELEASEs). A's body writes (inside C's savepoint).
 * C is retried: its second attempt takes a NEW savepoint effect_sql_1. A's end sees the chain broken
 * and A fails with FenceBroken; A's ROLLBACK TO SAVEPOINT effect_sql_1 goes to the newest of that name,
 * C's second one, taken after A's write: the write stays. The app treats A's failure as A's
 * (Effect.either) and commits; a change committed epoch 8 meanwhile (no lock stopped it, no
 * fence_checks row is left to fail the COMMIT), and A's write fenced to epoch 7 commits after it.
 * Now the fence's savepoints have names of their own (internal/pg/transaction.ts): A's rollback
 * reaches A's savepoint, and A's write goes with it.
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Fiber } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture } from "./support.js"
import { afterwards, changeOf, expectInOrder, isBegin, isEnd, isInsert, isMember, isQueue, isRollbackTo, isSavepoint, onGated, slowAtCommit } from "./interleave.js"

const run = (immediate: boolean) =>
  Effect.gen(function*() {
    const t = yield* fixture("attack15")
    // Some work of the app at its own COMMIT; a change of the group from another connection.
    const audit = yield* slowAtCommit(t)
    const change = changeOf(t, { exclusive: true })

    const aBegun = yield* Deferred.make<void>()
    const aMembered = yield* Deferred.make<void>()
    const cSaved = yield* Deferred.make<void>()
    const cRolledBack = yield* Deferred.make<void>()
    const aWrote = yield* Deferred.make<void>()
    const c2Saved = yield* Deferred.make<void>()
    const log: Array<string> = []
    const outcome: { a?: string; c?: string } = {}
    let changeFiber: Fiber.RuntimeFiber<ReadonlyArray<string>, unknown> | undefined
    const exit = yield* t.sql.withTransaction(Effect.gen(function*() {
      const on = onGated
      const a = Fenced.fencedWith(t.target, t.insert("A, fenced to epoch 7"), { timeout: "5 seconds" }).pipe(
        on(
          (s) =>
            isQueue(s) ? Deferred.await(cSaved) :
            isInsert(s) ? Deferred.await(cRolledBack) :
            isEnd(s) ? Deferred.await(c2Saved) : Effect.void,
          (s) => Effect.sync(() => log.push(`A: ${s.trim().slice(0, 60).replace(/\s+/g, " ")}`)).pipe(Effect.zipRight(
            isBegin(s) ? Deferred.succeed(aBegun, undefined) :
            isMember(s) ? Deferred.succeed(aMembered, undefined) :
            isInsert(s) ? Deferred.succeed(aWrote, undefined) : Effect.void
          ))
        ),
        Effect.either
      )
      // C: the app's own nested transaction on the same app transaction; fails once, retried, succeeds.
      let attempt = 0
      let saves = 0
      const c = t.sql.withTransaction(Effect.suspend(() =>
        ++attempt === 1 ? Effect.zipRight(Deferred.await(aMembered), Effect.fail("C failed" as const)) : Effect.void
      )).pipe(
        Effect.retry({ times: 1 }),
        on(
          (s) => isSavepoint(s) ? (saves === 0 ? Deferred.await(aBegun) : Deferred.await(aWrote)) : Effect.void,
          (s) => Effect.sync(() => log.push(`C: ${s.slice(0, 50)}`)).pipe(Effect.zipRight(
            isSavepoint(s)
              ? (++saves === 1 ? Deferred.succeed(cSaved, undefined) : Deferred.succeed(c2Saved, undefined))
              : isRollbackTo(s) ? Deferred.succeed(cRolledBack, undefined) : Effect.void))
        ),
        Effect.either
      )
      const [ra, rc] = yield* Effect.all([a, c], { concurrency: "unbounded" })
      outcome.a = Either.isRight(ra) ? "succeeded" : `${ra.left._tag}: ${(ra.left as any).reason ?? ""}`
      outcome.c = Either.isRight(rc) ? "succeeded" : String(rc.left)
      const held = yield* t.sql<{ locktype: string; mode: string }>`
        SELECT locktype, mode FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'`
      const checks = yield* t.sql<{ n: string }>`SELECT count(*) AS n FROM modulo_group.fence_checks WHERE member_id = ${t.memberId}`
      const mine = yield* t.notes
      log.push(`after the blocks: advisory locks ${JSON.stringify(held)}; fence_checks rows ${checks[0]!.n}; notes in the app tx ${JSON.stringify(mine)}`)
      if (immediate) {
        yield* t.sql`SET CONSTRAINTS ALL IMMEDIATE`
        changeFiber = yield* Effect.fork(change)
        const seen = yield* Fiber.join(changeFiber)
        log.push(`change committed epoch 8 while the app's transaction is open; it saw ${JSON.stringify(seen)}`)
      } else {
        yield* t.sql`INSERT INTO ${t.sql(audit)} (note) VALUES ('after the blocks')`
        changeFiber = yield* Effect.fork(Effect.zipRight(Effect.sleep("300 millis"), change))
      }
    })).pipe(Effect.exit)
    const after = yield* afterwards(t, changeFiber)
    log.push(`A: ${outcome.a}; C: ${outcome.c}; app tx: ${exit._tag}; ${JSON.stringify(after)}`)
    expectInOrder(after, "A, fenced to epoch 7", log.join("\n"))
    // A failed (its locks were taken away under it), and nothing of it committed.
    expect(outcome.a, log.join("\n")).toMatch(/^FenceBroken/)
    expect(after.committed, log.join("\n")).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive)) as Effect.Effect<void, unknown>

it.live("a failed block's write must not commit without its locks (deferred work at COMMIT)", () => run(false), 20_000)
it.live("same, with SET CONSTRAINTS ALL IMMEDIATE after the block", () => run(true), 20_000)
