/**
 * An adversarial review (attack14): the marker (`modulo_group.fence`) is appended by the statement that takes the fence's LAST
 * lock. A rollback that undoes an EARLIER lock (the shared advisory lock, FOR SHARE on the group row)
 * BEFORE that last statement runs does not undo the append (it has not happened yet). Block A's
 * fenceQueue and fenceGroup run inside a concurrent app `sql.withTransaction`'s savepoint (same name,
 * effect_sql_1); that transaction fails and rolls back to it, undoing both locks; A's fenceMember then
 * appends A's id and A's end sees its chain intact: A reports success holding no lock of the group
 * row (only FOR KEY SHARE on its member row). A change of the group (epoch 7 -> 8) on another
 * connection commits while the app's transaction is still open, and A's write, fenced to 7, commits after it.
 * Now every statement that takes a lock stamps the chain with the fence's next stage, from the stage
 * before only: A's fenceMember finds A's first stamp gone, and A fails with FenceBroken.
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Fiber } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture } from "./support.js"
import { afterwards, changeOf, expectInOrder, isBegin, isGroup, isMember, isQueue, isSavepoint, onGated, slowAtCommit } from "./interleave.js"

const run = (immediate: boolean) =>
  Effect.gen(function*() {
    const t = yield* fixture("attack14")
    // Some work of the app at its own COMMIT, after the fence's commit-time check.
    const audit = yield* slowAtCommit(t)
    // A change of the group (epoch 7 -> 8), from another connection.
    const change = changeOf(t, { exclusive: true })

    const aBegun = yield* Deferred.make<void>()
    const aGrouped = yield* Deferred.make<void>()
    const cSaved = yield* Deferred.make<void>()
    const cRolledBack = yield* Deferred.make<void>()
    const log: Array<string> = []
    const outcome: { a?: string; c?: string } = {}
    let changeFiber: Fiber.RuntimeFiber<ReadonlyArray<string>, unknown> | undefined
    const exit = yield* t.sql.withTransaction(Effect.gen(function*() {
      const on = onGated
      const a = Fenced.fencedWith(t.target, t.insert("A, fenced to epoch 7"), { timeout: "3 seconds" }).pipe(
        on(
          (s) => isQueue(s) ? Deferred.await(cSaved) : isMember(s) ? Deferred.await(cRolledBack) : Effect.void,
          (s) => Effect.sync(() => log.push(`A: ${s.trim().slice(0, 50).replace(/\s+/g, " ")}`)).pipe(Effect.zipRight(
            isBegin(s) ? Deferred.succeed(aBegun, undefined) : isGroup(s) ? Deferred.succeed(aGrouped, undefined) : Effect.void
          ))
        ),
        Effect.either
      )
      // C: the app's own nested transaction on the same app transaction, which fails.
      const c = t.sql.withTransaction(Effect.zipRight(Deferred.await(aGrouped), Effect.fail("C failed" as const))).pipe(
        on(
          (s) => isSavepoint(s) ? Deferred.await(aBegun) : Effect.void,
          (s) => Effect.sync(() => log.push(`C: ${s.slice(0, 50)}`)).pipe(Effect.zipRight(
            isSavepoint(s) ? Deferred.succeed(cSaved, undefined) : Effect.void))
        ),
        Effect.either,
        Effect.ensuring(Deferred.succeed(cRolledBack, undefined))
      )
      const [ra, rc] = yield* Effect.all([a, c], { concurrency: "unbounded" })
      outcome.a = Either.isRight(ra) ? "succeeded" : `${ra.left._tag}: ${(ra.left as any).reason ?? ""}`
      outcome.c = Either.isRight(rc) ? "succeeded" : String(rc.left)
      const held = yield* t.sql<{ locktype: string; mode: string }>`
        SELECT locktype, mode FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'`
      log.push(`advisory locks held after the blocks: ${JSON.stringify(held)}`)
      if (immediate) {
        // The app runs the commit-time check now (docs: harmless, the block's locks hold changes off).
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
    expect(outcome.a, log.join("\n")).not.toBe("succeeded")
  }).pipe(Effect.scoped, Effect.provide(PgLive)) as Effect.Effect<void, unknown>

it.live("a block whose early locks a concurrent app transaction rolled back before its last lock must not succeed (deferred work at COMMIT)", () => run(false), 20_000)
it.live("same, with SET CONSTRAINTS ALL IMMEDIATE after the block", () => run(true), 20_000)
