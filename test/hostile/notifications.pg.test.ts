/**
 * A hostile database user: a role that can log in and nothing else (no grant on schema
 * `modulo_group`) can still `pg_notify` on any channel, including a group's, whose name it can
 * compute (`'mg_' || md5(group)`). While a real group is held at a barrier it forges readiness for
 * the current and future epochs, garbage, huge epochs, empty payloads and a flood of tens of
 * thousands of notifications. Notifications are hints from strangers (PROTOCOL.md): nobody may
 * start before every member of the epoch has acknowledged it in the database, the group must stay
 * live, the LISTEN connection must still be replaced when it dies, and the flood must not turn
 * into a flood of heartbeats.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Layer } from "effect"
import { channelFor } from "../../src/internal/pg/constants.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import type { MembershipConfigInput } from "../../src/MembershipConfig.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import {
  attackerChannel,
  burst,
  burstOneCommit,
  forge,
  groupEpoch,
  hostileClient,
  hostileRole,
  makeGroup,
  memberRows,
  waitFor,
  waitForEffect
} from "./support.js"

const StoreLive = PgMembershipStore.layerUsingNotifier().pipe(Layer.provideMerge(Notifier.layer), Layer.provideMerge(PgLive))

/**
 * The bound on heartbeats per member per second while a sustained stream of notifications arrives.
 * With this test's config (heartbeat 2 s, barrierPoll 10 ms) a member waiting at the barrier polls
 * on its own every 200 ms once its fast polls have backed off (5 a second); rate-limited wake-ups add
 * a short burst and then at most one renewal per refill of their token bucket (every 100 ms here:
 * 10 a second), about 15 a second in all (measured: about 10). 30 a second leaves twice that, and
 * stays well under what a member that renews once per notification does: measured on this machine
 * with the rate limit removed, 80 to 140 a second (bounded only by the round trip and by how fast
 * notifications arrive). A limit loosened to one renewal per `barrierPoll` (100 a second) fails here
 * on purpose: that would let any role multiply the database load of every member tenfold.
 */
const maxHeartbeatsPerSecond = 30

/** Every payload shape we could think of, for epoch `e`. */
const garbage = (e: number): Array<string> => [
  `${e}:ready`,
  `${e}`,
  `${e + 1}:ready`,
  `${e + 1}`,
  `${e + 100}:ready`,
  `${e - 1}:ready`,
  "0:ready",
  "-1:ready",
  "",
  ":",
  ":ready",
  "ready",
  "9007199254740991:ready",
  "9007199254740992:ready",
  "1e21:ready",
  "99999999999999999999999999999:ready",
  "Infinity:ready",
  "NaN:ready",
  `${e}:ready:${e}:ready`,
  `${e}.0:ready`,
  ` ${e}:ready`,
  `0x${e.toString(16)}:ready`,
  `${e}:READY`,
  `{"epoch":${e},"ready":true}`,
  `\u00e9\u{1F600}:ready`,
  "'; DROP TABLE modulo_group.members; --",
  "x".repeat(7_990)
]

/**
 * Work that, once armed, does not stop until `release` (its interruption waits for it); `working`:
 * whether a run of it is under way now (the membership publishes Assigned before the work runs, and
 * a run of an earlier epoch that stopped does not count).
 */
const stuckUntil = (release: Deferred.Deferred<void>) => {
  let armed = false
  let working = false
  return {
    work: () =>
      Effect.suspend(() => {
        working = true
        return Effect.onInterrupt(Effect.never, () =>
          Effect.suspend(() => (armed ? Deferred.await(release) : Effect.sync(() => void (working = false)))))
      }),
    working: () => working,
    arm: () => void (armed = true)
  }
}

it.live(
  "forged readiness from a role without grants never lifts a barrier; the group stays live and the listener healthy",
  () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const groupId = randomGroupId("hostile")
      // A long heartbeat, so that fast convergence at the end can only come from a real notification;
      // a long stop timeout, so the stuck member holds the barrier (under the old code too) for the
      // whole test rather than leaving the group.
      const base: Partial<MembershipConfigInput> = {
        heartbeat: "2 seconds",
        lease: "10 seconds",
        stopTimeout: "60 seconds"
      }
      const g = yield* makeGroup(groupId, base)
      const release = yield* Deferred.make<void>()
      // Once armed, c's work will not stop until released (its interruption waits): it holds the next
      // barrier. Armed only once a, b, c have formed (they join concurrently: c may start in an
      // intermediate epoch) and c's work runs.
      const stuck = stuckUntil(release)

      const a = yield* g.join("a")
      const b = yield* g.join("b")
      const c = yield* g.join("c", { work: stuck.work })
      // Runs before the members' own finalizers: a failed assertion must not leave c's work stuck.
      yield* Effect.addFinalizer(() => Deferred.succeed(release, undefined))
      yield* waitFor(() => g.formed(["a", "b", "c"]), Duration.seconds(15), "a, b, c formed")
      const e0 = (yield* groupEpoch(groupId))!.epoch
      // Assigned is published before the work runs (it first records its start, a query): work
      // interrupted before it ran stops at once, and c then rightly acknowledged d's epoch (a CI run
      // under load saw it here, as the test below once did).
      yield* waitFor(stuck.working, Duration.seconds(5), "c working")
      stuck.arm()

      // A fourth member: epoch E. a, b and d acknowledge it; c cannot, its work does not stop.
      const d = yield* g.join("d")
      yield* waitForEffect(
        Effect.map(memberRows(groupId), (rows) => {
          if (rows.length !== 4) return false
          const epoch = Math.max(...rows.map((r) => r.acked))
          return epoch > e0 && rows.filter((r) => r.acked >= epoch).length === 3
        }),
        Duration.seconds(15),
        "a, b, d acknowledged the new epoch, c not"
      )
      const e = (yield* groupEpoch(groupId))!.epoch
      expect(e).toBe(e0 + 1)
      const cRow = (yield* memberRows(groupId)).find((r) => r.memberId === c.m.memberId)!
      expect(cRow.acked).toBeLessThan(e)
      yield* waitFor(
        () => ["a", "b", "d"].every((l) => g.latest().get(l)?._tag === "Awaiting"),
        Duration.seconds(5),
        "a, b, d awaiting"
      )

      // The attacker: logs in, has no access to the tables, computes the channel.
      const role = yield* hostileRole
      const evil = yield* hostileClient(role)
      const denied = yield* Effect.promise(() =>
        evil.query("SELECT epoch FROM modulo_group.groups").then(() => "allowed", (err: { code?: string }) => err.code ?? "error")
      )
      expect(denied).toBe("42501")
      const channel = yield* attackerChannel(evil, groupId)
      // (If the channel naming ever changes, this suite must be updated, not silently pass.)
      expect(channel).toBe(channelFor(groupId))

      const floodStart = Date.now()
      for (let round = 0; round < 5; round++) yield* forge(evil, channel, garbage(e))
      // 10,000 identical "<E>:ready", each in its own transaction (so none is de-duplicated).
      yield* burst(evil, channel, `'${e}:ready'`, 10_000)
      // 10,000 distinct readiness claims for E, then for 10,000 future epochs, each lot in one commit.
      yield* burstOneCommit(evil, channel, `'${e}:ready:' || i`, 10_000)
      yield* burstOneCommit(evil, channel, `(${e} + i)::text || ':ready'`, 10_000)
      yield* burstOneCommit(evil, channel, `''`, 1)
      // Then a sustained stream, a notification every few milliseconds for a few seconds: a burst
      // arrives in one read and collapses into a single wake-up; a stream is what would turn into a
      // heartbeat per notification if wake-ups were not rate-limited.
      const streamStart = Date.now()
      yield* burst(evil, channel, `'${e}:ready'`, 2_000, 1)
      const streamEnd = Date.now()
      // Let the members digest what arrived.
      yield* Effect.sleep(Duration.millis(500))

      // Nobody started under E (or anything newer); the database agrees the barrier is still up.
      expect(g.starts.filter((s) => s.epoch >= e)).toEqual([])
      expect(g.log.filter((r) => r.state._tag === "Assigned" && r.state.epoch >= e).map((r) => r.member)).toEqual([])
      expect(g.violations).toEqual([])
      expect((yield* groupEpoch(groupId))!.epoch).toBe(e)
      expect((yield* memberRows(groupId)).find((r) => r.memberId === c.m.memberId)!.acked).toBeLessThan(e)
      // c is still a member, holding the barrier, not gone.
      expect(g.latest().get("c")?._tag).toBe("Renegotiating")

      // The stream did not become a stream of heartbeats.
      const seconds = (streamEnd - streamStart) / 1000
      const rates = [a, b, c, d].map((m) => m.heartbeats.filter((t) => t >= streamStart && t <= streamEnd).length / seconds)
      console.log(
        `hostile flood: ${streamStart - floodStart} ms of bursts, then 2,000 notifications over ${seconds.toFixed(1)} s; ` +
          `heartbeats/s per member meanwhile: ${rates.map((r) => r.toFixed(1)).join(", ")}`
      )
      for (const r of rates) expect(r).toBeLessThanOrEqual(maxHeartbeatsPerSecond)

      // The LISTEN connection is still watched: a killed backend is replaced.
      const hub = yield* Notifier.Notifier
      yield* waitFor(() => hub.backendPid !== undefined, Duration.seconds(3), "listener connected")
      const connects = hub.connects
      const [killed] = yield* sql<{ ok: boolean }>`SELECT pg_terminate_backend(${hub.backendPid!}) AS ok`
      expect(killed!.ok).toBe(true)
      yield* waitFor(() => hub.connects > connects, Duration.seconds(3), "listener replaced")

      // Release c: it acknowledges, and the group forms under E (or a later epoch) promptly.
      const releasedAt = Date.now()
      yield* Deferred.succeed(release, undefined)
      const formedIn = yield* waitFor(() => g.formed(["a", "b", "c", "d"]), Duration.seconds(5), "a, b, c, d formed")
      expect(formedIn).toBeLessThan(3_000)
      expect(g.starts.filter((s) => s.epoch >= e).every((s) => s.at >= releasedAt)).toBe(true)

      // Notifications still work after the flood and the reconnect: a join converges well within the
      // 2 s heartbeat that polling alone would need.
      const joinedIn = yield* Effect.zipRight(
        g.join("f"),
        waitFor(() => g.formed(["a", "b", "c", "d", "f"]), Duration.seconds(5), "five formed")
      )
      expect(joinedIn).toBeLessThan(1_500)
      expect(g.violations).toEqual([])
    }).pipe(Effect.scoped, Effect.provide(StoreLive)),
  60_000
)

it.live("a hung member's barrier holds against forged readiness until its lease runs out and it is reaped", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("hostile-hung")
    const base: Partial<MembershipConfigInput> = {
      heartbeat: "300 millis",
      lease: "3 seconds",
      fenceMargin: "1 second",
      statementTimeout: "1 second"
    }
    const g = yield* makeGroup(groupId, base)
    yield* g.join("a")
    yield* g.join("b")
    const c = yield* g.join("c")
    const x = yield* g.join("x")
    yield* waitFor(() => g.formed(["a", "b", "c", "x"]), Duration.seconds(15), "a, b, c, x formed")
    const e0 = (yield* groupEpoch(groupId))!.epoch

    // c hangs (its store calls never return); then x leaves: epoch E, which c will never acknowledge.
    // (A leave, not a join: a join that finds c overdue waits instead of making that barrier.)
    yield* c.freeze
    const hungAt = Date.now()
    // Forked: the forging starts as soon as the leave has committed, not when x's scope has closed.
    yield* Effect.forkScoped(x.close)
    yield* waitForEffect(
      Effect.map(groupEpoch(groupId), (row) => row !== undefined && row.epoch > e0),
      Duration.seconds(5),
      "x left"
    )
    const e = (yield* groupEpoch(groupId))!.epoch

    const role = yield* hostileRole
    const evil = yield* hostileClient(role)
    const channel = yield* attackerChannel(evil, groupId)
    // Forge for as long as c's lease lasts, a burst every 100 ms; at least three bursts (under load the
    // leave above took most of the lease: a full-suite run beside other work managed 2).
    let rounds = 0
    while (Date.now() - hungAt < 2_500 || rounds < 3) {
      yield* forge(evil, channel, garbage(e))
      yield* burstOneCommit(evil, channel, `'${e}:ready:' || i`, 500)
      rounds++
      yield* Effect.sleep(Duration.millis(100))
    }

    // c's lease runs out; the others reap it and form without it: lease + heartbeat + slack.
    const took = yield* waitFor(() => g.formed(["a", "b"]), Duration.seconds(10), "a, b formed")
    expect(Date.now() - hungAt).toBeLessThan(3_000 + 300 + 3_000)
    void took
    // Epoch E never had every member's acknowledgement: nobody ever started under it.
    expect(g.starts.filter((s) => s.epoch === e)).toEqual([])
    expect(g.violations).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)

it.live("work that will not stop holds the barrier past its stop timeout, against forged readiness, and fails closed", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("hostile-stuck")
    const g = yield* makeGroup(groupId, { heartbeat: "300 millis", lease: "3 seconds", fenceMargin: "1 second", statementTimeout: "1 second", stopTimeout: "300 millis" })
    const release = yield* Deferred.make<void>()
    const stuck = stuckUntil(release)
    yield* g.join("a")
    const c = yield* g.join("c", { work: stuck.work })
    yield* Effect.addFinalizer(() => Deferred.succeed(release, undefined))
    yield* waitFor(() => g.formed(["a", "c"]), Duration.seconds(15), "a, c formed")
    const e0 = (yield* groupEpoch(groupId))!.epoch
    // c's work runs (Assigned is published before its work does): work interrupted before it ran
    // stops at once, and c then rightly acknowledges d's epoch with no work running, which a CI run
    // under load saw.
    yield* waitFor(stuck.working, Duration.seconds(5), "c working")
    stuck.arm()
    yield* g.join("d")
    const role = yield* hostileRole
    const evil = yield* hostileClient(role)
    const channel = yield* attackerChannel(evil, groupId)
    // Well past the stop timeout, and past a whole lease: c keeps its row and renews, never acknowledges.
    const until = Date.now() + 3_500
    while (Date.now() < until) {
      const e = (yield* groupEpoch(groupId))!.epoch
      yield* forge(evil, channel, garbage(e))
      yield* Effect.sleep(Duration.millis(100))
    }
    const e = (yield* groupEpoch(groupId))!.epoch
    expect(e).toBe(e0 + 1)
    const cRow = (yield* memberRows(groupId)).find((r) => r.memberId === c.m.memberId)
    expect(cRow).toBeDefined()
    expect(cRow!.acked).toBeLessThan(e)
    expect(g.starts.filter((s) => s.epoch >= e)).toEqual([])
    expect(g.violations).toEqual([])
    // Released, c acknowledges and the group forms promptly.
    const releasedAt = Date.now()
    yield* Deferred.succeed(release, undefined)
    yield* waitFor(() => g.formed(["a", "c", "d"]), Duration.seconds(5), "a, c, d formed")
    expect(g.starts.filter((s) => s.epoch >= e).every((s) => s.at >= releasedAt)).toBe(true)
    expect(g.violations).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)

// Since issue 15 a change's notification (`E`) makes a working member stop before it asks the
// database (docs/protocol.md, "Stopping on a notification's word"). A stranger's claims of newer
// epochs, a flood of them and a stream over most of a lease, cost each member one pause of its work:
// the claim proves false (the renewal finds the epoch it works in), and claims stop nothing until
// the group's epoch moves. Nobody believes a claim: the epoch stays, nobody starts under another, G1/G2 hold.
it.live("forged change claims from a role without grants pause each working member's work at most once per epoch", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("hostile-claims")
    const g = yield* makeGroup(groupId, { heartbeat: "1 second", lease: "10 seconds" })
    yield* g.join("a")
    yield* g.join("b")
    yield* g.join("c")
    yield* waitFor(() => g.formed(["a", "b", "c"]), Duration.seconds(15), "a, b, c formed")
    const e = (yield* groupEpoch(groupId))!.epoch
    const startsBefore = g.starts.length
    const evil = yield* hostileClient(yield* hostileRole)
    const channel = yield* attackerChannel(evil, groupId)
    const floodStart = Date.now()
    // Claims of the next epochs, huge ones and their neighbours in one commit, then a stream.
    yield* forge(evil, channel, [`${e + 1}`, `${e + 2}`, `${e + 1000}`, "999999999999999", `${e + 1}:ready`, `0${e + 1}`])
    yield* burstOneCommit(evil, channel, `(${e} + i)::text`, 5_000)
    yield* burst(evil, channel, `'${e + 1}'`, 1_500, 2)
    const floodEnd = Date.now()
    // No bound on how long the flood took: the rule holds for the whole epoch, however long the
    // claims go on (until 2026-12-04 it held for one lease, and this test required the flood to
    // fit in 8 s; a CI run under load took 8.9 s and failed on that alone).
    yield* waitFor(() => g.formed(["a", "b", "c"]), Duration.seconds(5), "a, b, c working again")
    const during = g.starts.slice(startsBefore)
    // At most one restart per member (one pause), all in the epoch they worked in.
    for (const label of ["a", "b", "c"]) expect(during.filter((s) => s.member === label).length).toBeLessThanOrEqual(1)
    expect(during.every((s) => s.epoch === e)).toBe(true)
    expect((yield* groupEpoch(groupId))!.epoch).toBe(e)
    expect(g.violations).toEqual([])
    console.log(`hostile claims: ${during.length} restarts of 3 members over ${floodEnd - floodStart} ms of forged claims`)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)
