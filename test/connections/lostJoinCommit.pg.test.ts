/**
 * A join whose COMMIT is still in flight when the store's bound on the attempt (the statement
 * timeout) fires: the change commits, and the caller is told the join timed out. Its retry (the
 * member's next join, same id) was a new join, which deleted and inserted the member's row again: a
 * change of its own that every member must acknowledge. Under contention each retry could be lost
 * the same way (a review, attack99: a member's id joined 8 times in a row, one change every 620-690
 * ms, and the group did no work for 5.4 s; its cause not shown). Now the store remembers the row an
 * abandoned join inserted (its `renewal_seq`), and the retry takes that row as it is, if a change has
 * not removed it since: no second change.
 *
 * Interleaving: the store's connections report COMMIT's result 900 ms late (the COMMIT itself is
 * done on the server at once), past the 500 ms bound; the retry is sent right after the timeout.
 */
import { SqlClient } from "@effect/sql"
import type { Connection } from "@effect/sql/SqlConnection"
import { expect, it } from "@effect/vitest"
import { Effect, Either, Layer } from "effect"
import { randomUUID } from "node:crypto"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { proxy } from "../fenced/support.js"

const scenario = (second: "retry" | "rejoin after a change" | "reaped first" | "slow before commit") =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    let lateCommits = 0
    const client = proxy(sql, {
      reserve: Effect.map(sql.reserve, (conn) =>
        proxy<Connection>(conn, {
          executeUnprepared: (statement, params, transformRows) =>
            statement.trim().toUpperCase() === "COMMIT" && lateCommits > 0
              ? Effect.tap(conn.executeUnprepared(statement, params, transformRows), () => {
                lateCommits--
                return Effect.sleep("900 millis")
              })
              : conn.executeUnprepared(statement, params, transformRows)
        }))
    })
    let slowBump = false
    const store = yield* PgMembershipStore.make({
      statementTimeout: "500 millis",
      // The change's last steps held up past the bound: the attempt may be stopped before its COMMIT.
      onStatement: (operation, step) => operation === "join" && step === "bump" && slowBump ? Effect.sleep("900 millis") : Effect.void
    }).pipe(
      Effect.provideService(SqlClient.SqlClient, client)
    )
    const other = yield* PgMembershipStore.make()
    const groupId = randomGroupId("lost-join")
    yield* Effect.addFinalizer(() => Effect.orDie(sql`DELETE FROM modulo_group.groups WHERE group_id = ${groupId}`))
    const info = (name: string) => ({ memberId: randomUUID(), name, host: "h", pid: 1 })
    const a = info("a")
    const b = info("b")
    yield* other.join(groupId, a, 10_000)
    if (second === "slow before commit") slowBump = true
    else lateCommits = 1
    const lost = yield* Effect.either(store.join(groupId, b, second === "reaped first" ? 1_000 : 10_000))
    slowBump = false
    // Whatever the abandoned attempt does next is over (its statements are bounded on the server).
    yield* Effect.sleep("1 second")
    const committed = yield* sql<{ epoch: string }>`SELECT epoch FROM modulo_group.groups WHERE group_id = ${groupId}`
    if (second === "rejoin after a change") {
      // Another member's join, a change in between: the lost join's row stays (with its index).
      yield* other.join(groupId, info("c"), 10_000)
    }
    if (second === "reaped first") {
      // The lost join's row ran out (lease 1 s) and was reaped: the retry joins as usual.
      yield* Effect.sleep("300 millis")
      yield* other.reap(groupId)
    }
    const retried = yield* store.join(groupId, b, 10_000)
    const log = yield* sql<{ epoch: string; cause: string; name: string | null }>`
      SELECT c.epoch, c.cause, (SELECT a->>'name' FROM jsonb_array_elements(c.assignment) a
                                 WHERE a->>'member_id' = c.subject::text) AS name
        FROM modulo_group.change_log c WHERE c.group_id = ${groupId} ORDER BY c.epoch`
    const [row] = yield* sql<{ n: string }>`
      SELECT count(*) AS n FROM modulo_group.members WHERE group_id = ${groupId} AND member_id = ${b.memberId}::uuid`
    return {
      lost: Either.isLeft(lost) ? lost.left.message : "joined",
      epochAfterLost: Number(committed[0]!.epoch),
      retried: { epoch: retried.epoch, index: retried.index, size: retried.size },
      changes: log.map((c) => `${c.epoch} ${c.cause} ${c.name}`),
      rowsOfB: Number(row!.n)
    }
  }).pipe(Effect.scoped)

const Live = Notifier.layer.pipe(Layer.provideMerge(PgLive))

it.live("a join that committed after its caller gave up: the retry takes the row it inserted, no second change", () =>
  Effect.gen(function*() {
    const facts = yield* scenario("retry")
    console.log("lostJoinCommit", JSON.stringify(facts))
    // The first attempt timed out for its caller, and committed.
    expect(facts.lost).toMatch(/timed out after 500 ms/)
    expect(facts.epochAfterLost).toBe(2)
    // The retry is that change's join: same epoch, nothing new in the change log.
    expect(facts.retried).toEqual({ epoch: 2, index: 1, size: 2 })
    expect(facts.changes).toEqual(["1 join a", "2 join b"])
    expect(facts.rowsOfB).toBe(1)
  }).pipe(Effect.provide(Live)), 30_000)

it.live("the same with a change in between: the row kept its index, the retry takes it in the newer epoch", () =>
  Effect.gen(function*() {
    const facts = yield* scenario("rejoin after a change")
    console.log("lostJoinCommit", JSON.stringify(facts))
    expect(facts.lost).toMatch(/timed out after 500 ms/)
    expect(facts.retried).toEqual({ epoch: 3, index: 1, size: 3 })
    expect(facts.changes).toEqual(["1 join a", "2 join b", "3 join c"])
    expect(facts.rowsOfB).toBe(1)
  }).pipe(Effect.provide(Live)), 30_000)

it.live("the lost join's row reaped before the retry: the retry joins as usual (a change)", () =>
  Effect.gen(function*() {
    const facts = yield* scenario("reaped first")
    console.log("lostJoinCommit", JSON.stringify(facts))
    expect(facts.lost).toMatch(/timed out after 500 ms/)
    expect(facts.retried).toEqual({ epoch: 4, index: 1, size: 2 })
    expect(facts.changes).toEqual(["1 join a", "2 join b", "3 reap null", "4 join b"])
    expect(facts.rowsOfB).toBe(1)
  }).pipe(Effect.provide(Live)), 30_000)

it.live("an attempt held up before its COMMIT: committed or not, the member joins once, in one change", () =>
  Effect.gen(function*() {
    const facts = yield* scenario("slow before commit")
    console.log("lostJoinCommit", JSON.stringify(facts))
    expect(facts.lost).toMatch(/timed out after 500 ms/)
    expect(facts.retried).toEqual({ epoch: 2, index: 1, size: 2 })
    expect(facts.changes).toEqual(["1 join a", "2 join b"])
    expect(facts.rowsOfB).toBe(1)
  }).pipe(Effect.provide(Live)), 30_000)
