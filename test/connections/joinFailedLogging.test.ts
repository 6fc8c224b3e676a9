/**
 * `sayJoinFailed` (src/internal/membership/driver.ts) says a repeated join failure with the same
 * reason once, then once a minute. A failure said in between by another channel (the database
 * refusing connections, `refusedOnce`; an instance id held by a live member, `InstanceBusy`) resets
 * it: when the first failure comes back, it is said again. Before, only a successful join reset it,
 * and the log's last word stayed the other failure, which was over (a review; failed before).
 */
import { expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as InMemoryMembershipStore from "../../src/InMemoryMembershipStore.js"
import * as Membership from "../../src/Membership.js"
import * as MembershipConfig from "../../src/MembershipConfig.js"
import { StoreError } from "../../src/MembershipError.js"
import type { MembershipStoreService } from "../../src/MembershipStore.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import { waitForEffect } from "../support/Wait.js"
import { collectLogs } from "../safety/support.js"
import { answered } from "../../src/internal/pg/errors.js"

const fast = { heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const

/**
 * An in-memory store whose joins fail as a refused connection while `knobs.refuse`, and a member id
 * with a live row in group "g1" (its earlier membership's leave gave up); `start` makes a member of
 * group "g2" with that id, over the store.
 */
const elsewhereMember = Effect.gen(function*() {
  const { store } = yield* InMemoryMembershipStore.make
  const knobs = { refuse: false }
  const wrapped: MembershipStoreService = {
    ...store,
    join: (...args: Parameters<MembershipStoreService["join"]>) =>
      knobs.refuse
        ? Effect.fail(new StoreError({
          operation: "join",
          reason: "connect ECONNREFUSED 127.0.0.1:5432",
          cause: { code: "ECONNREFUSED", message: "connect ECONNREFUSED 127.0.0.1:5432" }
        }))
        : store.join(...args)
  }
  const id = crypto.randomUUID()
  yield* store.join("g1", { memberId: id, host: "h", pid: 1, name: "old" }, 60_000)
  const identity = { host: "h", pid: 2, newMemberId: Effect.succeed(id) }
  const start = Membership.make({ groupId: "g2", ...fast }).pipe(
    Effect.provideService(MembershipConfig.MemberIdentity, identity),
    Effect.provide(Layer.succeed(MembershipStore, wrapped))
  )
  return { knobs, start }
})

it.live("a join refused for a row elsewhere, then the database refusing connections, then the row elsewhere again: the refusal by name is said again", () => {
  const logs = collectLogs()
  return Effect.gen(function*() {
    const { knobs, start } = yield* elsewhereMember
    yield* start
    const elsewhere = () => logs.lines.filter((l) => l.message.includes("still has a row in group")).length
    const refused = () => logs.lines.findIndex((l) => l.message.includes("refuses connections"))
    yield* waitForEffect(Effect.sync(() => elsewhere() === 1), "5 seconds", "said once")
    // The database restarts: connections refused for a while (said once).
    knobs.refuse = true
    yield* waitForEffect(Effect.sync(() => refused() >= 0), "5 seconds", "refusal said")
    yield* Effect.sleep("600 millis")
    // Back: every join gets through to the database again and is refused by name, at every attempt.
    knobs.refuse = false
    yield* Effect.sleep("3 seconds")
    const after = logs.lines.slice(refused() + 1)
    // The failure changed (from no connection to a row elsewhere): that must be said, and the
    // refusal's "said once until a call gets through" closed.
    expect(after.map((l) => l.message).filter((m) => m.includes("still has a row in group") || m.includes("connected"))).not.toEqual([])
  }).pipe(Effect.provide(logs.layer), Effect.scoped)
}, 30_000)

// A join the database refused by name (a row elsewhere) proves the database answered: the outage of
// refused connections before it is over ("connected ... again" said), and a second outage later is
// said again. Before, only a successful store call closed it: the second outage went unsaid (a left-alone item).
it.live("refused connections, a join refused by name, refused connections again: the second outage is said too", () => {
  const logs = collectLogs()
  return Effect.gen(function*() {
    const { knobs, start } = yield* elsewhereMember
    knobs.refuse = true
    yield* start
    const count = (text: string) => logs.lines.filter((l) => l.message.includes(text)).length
    yield* waitForEffect(Effect.sync(() => count("refuses connections") === 1), "5 seconds", "first outage said")
    knobs.refuse = false
    yield* waitForEffect(Effect.sync(() => count("still has a row in group") >= 1), "5 seconds", "refused by name")
    expect(count("connected to the database again")).toBe(1)
    knobs.refuse = true
    yield* waitForEffect(Effect.sync(() => count("refuses connections") === 2), "5 seconds", "second outage said")
  }).pipe(Effect.provide(logs.layer), Effect.scoped)
}, 30_000)

it("answered: a SQLSTATE other than a refusal's or a connection exception's, or a row elsewhere the store read", () => {
  const sqlError = (code: string) => new StoreError({ operation: "heartbeat", reason: code, cause: { _tag: "SqlError", cause: { code } } })
  expect(["57014", "23505", "40001", "55P03", "XX000"].map((c) => answered(sqlError(c)))).toEqual([true, true, true, true, true])
  expect(["53300", "57P03", "08006", "08P01", "EPIPE", "ECONNREFUSED", "ETIMEDOUT"].map((c) => answered(sqlError(c)))).toEqual(
    [false, false, false, false, false, false, false]
  )
  expect(answered(new StoreError({ operation: "join", reason: "timed out after 1000 ms" }))).toBe(false)
  // Errors that ended the session (a review: a terminated backend between two refusals said "connected again").
  const fatal = (code: string, severity?: string) =>
    new StoreError({ operation: "heartbeat", reason: code, cause: { _tag: "SqlError", cause: { code, severity } } })
  expect(["57P01", "57P02", "57P05", "25P03"].map((c) => answered(fatal(c)))).toEqual([false, false, false, false])
  expect([answered(fatal("57P01", "FATAL")), answered(fatal("XX000", "FATAL")), answered(fatal("XX000", "ERROR"))]).toEqual([false, false, true])
  // The severity as sent is translated (lc_messages): a German server's statement timeout is answered (a review).
  expect([answered(fatal("57014", "FEHLER")), answered(fatal("57014", "ERREUR"))]).toEqual([true, true])
  expect(answered(new Error("Connection terminated unexpectedly"))).toBe(false)
})
