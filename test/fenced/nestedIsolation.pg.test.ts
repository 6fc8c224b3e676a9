/**
 * A fenced block nested in an app transaction above READ COMMITTED (the database's or role's
 * `default_transaction_isolation`, which `sql.withTransaction`'s plain BEGIN takes). A review: its
 * lease checks (the block's last statement, the commit-time trigger) read the app transaction's
 * snapshot, so a lease cut short after it (an UPDATE that does not conflict with the block's FOR KEY
 * SHARE, as the library's own `expireLease` after a leave that gave up) went unseen and the app's
 * COMMIT succeeded after the lease had ended. Such a block is refused now (`FenceBroken`, naming the
 * level; failed before), and nothing of it commits; at READ COMMITTED the commit-time check fails the
 * app's COMMIT as docs/fencing.md says.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import pg from "pg"
import * as Fenced from "../../src/Fenced.js"
import { clientWithOptions, databaseUrl } from "../support/Database.js"
import { fixture } from "./support.js"

const clientWith = (level: string) =>
  clientWithOptions(`-c default_transaction_isolation=${level.replace(" ", "\\ ")}`, "fence-nested-isolation")

/** An outside connection ends the member's lease (as expireLease does), committing at once. */
const cutLease = (memberId: string) =>
  Effect.promise(async () => {
    const c = new pg.Client({ connectionString: databaseUrl() })
    await c.connect()
    try {
      await c.query("SET lock_timeout = '2s'")
      await c.query(
        "UPDATE modulo_group.members SET lease_expires_at = clock_timestamp() - interval '5 seconds' WHERE member_id = $1",
        [memberId]
      )
    } finally {
      await c.end()
    }
  })

it.live("default_transaction_isolation = read committed: a nested fenced write whose lease was ended before the app's COMMIT does not commit", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const t = yield* fixture("fence-nested-rc")
    const exit = yield* sql.withTransaction(Effect.gen(function*() {
      yield* Fenced.fencedWith(t.target, t.insert("nested"))
      yield* cutLease(t.memberId)
    })).pipe(Effect.exit)
    expect({ committed: Exit.isSuccess(exit), notes: yield* t.notes }).toEqual({ committed: false, notes: [] })
  }).pipe(Effect.scoped, Effect.provide(clientWith("read committed"))), 30_000)

for (const level of ["repeatable read", "serializable"]) {
  it.live(`default_transaction_isolation = ${level}: a fenced block nested in the app's transaction is refused (FenceBroken), nothing of it commits; outside one it commits`, () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const t = yield* fixture(`fence-nested-${level.replace(" ", "-")}`)
      const exit = yield* sql.withTransaction(Effect.gen(function*() {
        const [iso] = yield* sql<{ level: string }>`SELECT current_setting('transaction_isolation') AS level`
        expect(iso!.level).toBe(level)
        yield* Fenced.fencedWith(t.target, t.insert("nested"))
        yield* cutLease(t.memberId)
      })).pipe(Effect.exit)
      expect(Exit.isFailure(exit)).toBe(true)
      const error = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : undefined
      expect(error?._tag === "Some" ? (error.value as { _tag: string })._tag : undefined).toBe("FenceBroken")
      expect(error?._tag === "Some" ? String((error.value as Error).message) : "").toMatch(
        new RegExp(`nested in an app transaction at ${level.toUpperCase()}`)
      )
      expect(yield* t.notes).toEqual([])
      // Not nested: its own READ COMMITTED transaction, whatever the default.
      yield* t.setLease(60_000)
      yield* Fenced.fencedWith(t.target, t.insert("alone"))
      expect(yield* t.notes).toEqual(["alone"])
    }).pipe(Effect.scoped, Effect.provide(clientWith(level))), 30_000)
}
