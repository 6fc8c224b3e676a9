/**
 * An adversarial review (attack11). Two fenced blocks run concurrently on one app transaction (`Effect.all(..., { concurrency })` inside
 * `sql.withTransaction`). Both take a savepoint named by depth (`effect_sql_1`): the later one shadows
 * the earlier. When the second block fails (here: stale) its `ROLLBACK TO SAVEPOINT effect_sql_1`
 * undoes the first block's locks, taken after that savepoint, but not its marker
 * (`modulo_group.fence`), set before it: the first block's end check passes, the block "succeeds",
 * and the rest of the app's transaction holds no lock of the group. A change of the group commits
 * epoch E + 1 while the app's transaction (fenced to E) is still open, and the app's writes then
 * commit under E after E + 1 exists. Now the marker is set in the statement that takes the fence's
 * last lock, so a rollback that undoes any of its locks undoes the marker too: block A fails with
 * `FenceBroken` and its write is rolled back.
 */
import { expect, it } from "@effect/vitest"
import { Cause, Effect, Either, Exit, Fiber } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture } from "./support.js"
import { afterwards, changeOf, expectInOrder, slowAtCommit } from "./interleave.js"

it.live("a block that succeeded keeps its locks to the app's COMMIT, whatever a concurrent block on the same transaction does", () =>
  Effect.gen(function*() {
    const t = yield* fixture("attack-concurrent")
    // An app table with a deferred constraint trigger: some work of the app at its own COMMIT, after
    // the fence's commit-time check (queued later).
    const audit = yield* slowAtCommit(t)
    // A change of the group, from another connection: bumps the epoch, then reads the app's table.
    const change = changeOf(t, { exclusive: false })

    const outcome: { a?: string; b?: string } = {}
    let changeFiber: Fiber.RuntimeFiber<ReadonlyArray<string>, unknown> | undefined
    const exit = yield* t.sql.withTransaction(Effect.gen(function*() {
      const [a, b] = yield* Effect.all([
        // Block A: fenced to the group's epoch 7, current.
        Fenced.fencedWith(t.target, Effect.zipRight(t.sql`SELECT pg_sleep(0.2)`, t.insert("A, fenced to epoch 7")), {
          timeout: "3 seconds"
        }).pipe(Effect.either),
        // Block B, on the same transaction (e.g. another group's, or a stale assignment): it fails
        // and rolls back to its savepoint, effect_sql_1, the same name as A's.
        Effect.zipRight(t.sql`SELECT 1`, Fenced.fencedWith({ ...t.target, epoch: 6 }, t.insert("B")).pipe(Effect.either))
      ], { concurrency: 2 })
      outcome.a = Either.isRight(a) ? "succeeded" : a.left._tag
      outcome.b = Either.isRight(b) ? "succeeded" : (b.left as { _tag: string })._tag
      // The rest of the app's transaction: after a block that succeeded it holds the block's locks
      // until COMMIT (docs/fencing.md, "What it does not cover", "Nesting"); some work at COMMIT.
      yield* t.sql`INSERT INTO ${t.sql(audit)} (note) VALUES ('after the blocks')`
      // Meanwhile a change of the group (epoch 7 -> 8), from another connection.
      changeFiber = yield* Effect.fork(Effect.zipRight(Effect.sleep("300 millis"), change))
    })).pipe(Effect.exit)
    const after = yield* afterwards(t, changeFiber)
    // (Observed before: A succeeded, the change was not blocked and committed epoch 8 without seeing
    // A; then the app's COMMIT committed A, fenced to epoch 7, after epoch 8 existed.)
    if (Exit.isFailure(exit)) {
      // Since the fence's savepoints have names of their own: B's savepoint came first here, and its
      // rollback took A's savepoint with it; A's rollback to it then fails (3B001): the fence ends the
      // connection (internal/pg/transaction.ts), the app's transaction dies: nothing of it commits.
      expect(Cause.isDie(exit.cause)).toBe(true)
      expect(after.committed).toEqual([])
    } else {
      expectInOrder(after, "A, fenced to epoch 7")
      expect(outcome.b).toBe("StaleAssignment")
      expect(outcome.a).toBe("FenceBroken")
      expect(after.committed).toEqual([])
    }
  }).pipe(Effect.scoped, Effect.provide(PgLive)))
