/**
 * Issue 15, "Members per process share their I/O": the heartbeats of a store's members go in one
 * statement per batch (Statements.renewLeases, internal/pg/batcher.ts), with each member's view
 * exactly as its own renewal would read it.
 */
import { SqlClient } from "@effect/sql"
import * as Statement from "@effect/sql/Statement"
import { expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Layer, Option, Schedule } from "effect"
import * as Notifier from "../../src/internal/pg/notifier.js"
import type { GroupView, MemberInfo } from "../../src/MembershipStore.js"
import * as Migrations from "../../src/Migrations.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId, untilOwnLockWait } from "../support/Database.js"

const info = (name: string): MemberInfo => ({ memberId: crypto.randomUUID(), name, host: "test", pid: 1 })

const Live = Notifier.layer.pipe(Layer.provideMerge(PgLive))

/**
 * Runs `effect` counting the renewal statements it sends (batched and single), in any fiber it forks;
 * with `memberId`, only those that carry that member. (A batch in flight that ends sends the next one
 * from its own fiber, which a fiber of `effect` forked: that one may carry other members' renewals.)
 */
const countingRenewals = <A, E, R>(effect: Effect.Effect<A, E, R>, memberId?: string) =>
  Effect.suspend(() => {
    const counts = { batch: 0, single: 0 }
    return Statement.withTransformer(effect, (statement) => {
      const [text, params] = statement.compile()
      if (memberId !== undefined && !params.some((p) => typeof p === "string" && p.includes(memberId))) {
        return Effect.succeed(statement)
      }
      if (text.includes("json_to_recordset")) counts.batch++
      else if (text.includes("prev AS (")) counts.single++
      return Effect.succeed(statement)
    }).pipe(Effect.map((a) => ({ a, counts })))
  })

/** A store hook that stops every leave before its COMMIT (`atCommit`) until `commit`. */
const leaveGate = Effect.gen(function*() {
  const commit = yield* Deferred.make<void>()
  const atCommit = yield* Deferred.make<void>()
  const onStatement = (operation: string, step: string): Effect.Effect<void> =>
    operation === "leave" && step === "commit"
      ? Effect.zipRight(Deferred.succeed(atCommit, undefined), Deferred.await(commit))
      : Effect.void
  return { commit, atCommit, onStatement }
})

it.live("64 members of one store renew in a few statements, not 64, each with its own view", () =>
  Effect.gen(function*() {
    yield* Migrations.run
    const groupId = randomGroupId("batch")
    const store = yield* PgMembershipStore.make()
    const members = Array.from({ length: 64 }, (_, i) => info(`m${i}`))
    let epoch = 0
    for (const m of members) epoch = (yield* store.join(groupId, m, 30_000)).epoch
    const { a: views, counts } = yield* countingRenewals(
      Effect.forEach(members, (m) => store.heartbeat(groupId, m.memberId, epoch, 30_000), { concurrency: "unbounded" })
    )
    // Without batching: 64 statements. The first goes at once (alone: the single-member statement);
    // the rest queue behind it and go together.
    expect(counts.single).toBeLessThanOrEqual(1)
    expect(counts.batch + counts.single).toBeLessThanOrEqual(3)
    const got = views.map((v) => Option.getOrThrow(v))
    expect(got.map((v) => v.index).sort((x, y) => x - y)).toEqual(Array.from({ length: 64 }, (_, i) => i))
    for (const v of got) expect(v).toMatchObject({ epoch, size: 64, acked: epoch })
    // Every acknowledgement of the batches is in: the next round sees the barrier down.
    const again = yield* Effect.forEach(members, (m) => store.heartbeat(groupId, m.memberId, epoch, 30_000), {
      concurrency: "unbounded"
    })
    for (const v of again) expect(Option.getOrThrow(v)).toMatchObject({ epoch, allAcked: true, expired: false })
  }).pipe(Effect.provide(Live)), 60_000)

it.live("held renewals go together: one statement for 16 members, and a renewal not held takes the queue with it", () =>
  Effect.gen(function*() {
    yield* Migrations.run
    const groupId = randomGroupId("batch-hold")
    const store = yield* PgMembershipStore.make()
    const members = Array.from({ length: 16 }, (_, i) => info(`m${i}`))
    let epoch = 0
    for (const m of members) epoch = (yield* store.join(groupId, m, 30_000)).epoch
    // All held up to 10 s: the last one, not held, sends them all at once.
    const { a: took, counts } = yield* countingRenewals(Effect.gen(function*() {
      const started = Date.now()
      const held = yield* Effect.fork(Effect.forEach(
        members.slice(1),
        (m) => store.heartbeat(groupId, m.memberId, epoch, 30_000, { holdMs: 10_000 }),
        { concurrency: "unbounded" }
      ))
      yield* Effect.sleep(Duration.millis(200))
      yield* store.heartbeat(groupId, members[0]!.memberId, epoch, 30_000)
      yield* Fiber.join(held)
      return Date.now() - started
    }))
    expect(counts).toEqual({ batch: 1, single: 0 })
    expect(took).toBeLessThan(5_000)
  }).pipe(Effect.provide(Live)), 60_000)

it.live("acknowledgements in one batch count for each other: the barrier comes down in that round, announced once", () =>
  Effect.gen(function*() {
    yield* Migrations.run
    const groupId = randomGroupId("batch-ack")
    let notifies = 0
    const store = yield* PgMembershipStore.make({
      onStatement: (operation, step) =>
        Effect.sync(() => {
          if (operation === "heartbeat" && step === "notify") notifies++
        })
    })
    const [a, b, c] = [info("a"), info("b"), info("c")]
    yield* store.join(groupId, a, 30_000)
    yield* store.join(groupId, b, 30_000)
    const joined = yield* store.join(groupId, c, 30_000)
    // a and b acknowledge the last epoch in the same statement as c renews (held, then sent together).
    const { a: views, counts } = yield* countingRenewals(
      Effect.forEach([a, b, c], (m) => store.heartbeat(groupId, m.memberId, joined.epoch, 30_000, { holdMs: 300 }), {
        concurrency: "unbounded"
      })
    )
    expect(counts).toEqual({ batch: 1, single: 0 })
    for (const v of views) expect(Option.getOrThrow(v)).toMatchObject({ epoch: joined.epoch, size: 3, allAcked: true })
    // The batch completed the barrier: one notification for the group, not one per member.
    expect(notifies).toBe(1)
  }).pipe(Effect.provide(Live)), 60_000)

it.live("a member whose renewal fails is not counted as acknowledged by the others of its batch", () =>
  Effect.gen(function*() {
    yield* Migrations.run
    const groupId = randomGroupId("batch-expired")
    const store = yield* PgMembershipStore.make()
    const [a, b, c] = [info("a"), info("b"), info("c")]
    // c first, with a lease that runs out before the batch: its renewal writes nothing.
    yield* store.join(groupId, c, 1_500)
    yield* store.join(groupId, a, 60_000)
    const joined = yield* store.join(groupId, b, 60_000)
    yield* Effect.sleep(Duration.millis(1_700))
    // a, b, c in one batch, all acknowledging the last epoch (c has not: its row is at its join's).
    const { a: views, counts } = yield* countingRenewals(Effect.forEach(
      [a, b, c],
      (m) => store.heartbeat(groupId, m.memberId, joined.epoch, 60_000, { holdMs: 300 }),
      { concurrency: "unbounded" }
    ))
    expect(counts).toEqual({ batch: 1, single: 0 })
    expect(Option.isNone(views[2]!)).toBe(true)
    // Counted as asked for (not as renewed), c would lower the barrier.
    for (const v of views.slice(0, 2)) {
      expect(Option.getOrThrow(v)).toMatchObject({ epoch: joined.epoch, allAcked: false, expired: true })
    }
  }).pipe(Effect.provide(Live)), 60_000)

it.live("a batch never waits for a change's row locks: its members renew alone, as one committed state; another group's members are not delayed", () =>
  Effect.gen(function*() {
    yield* Migrations.run
    const groupId = randomGroupId("batch-lock")
    const other = randomGroupId("batch-other")
    // The leave stops before its COMMIT, after it has reassigned (row locks held on every row).
    const { commit, atCommit, onStatement } = yield* leaveGate
    const store = yield* PgMembershipStore.make({ onStatement })
    // A change in another process: a store of its own.
    const changer = yield* PgMembershipStore.make({ onStatement })
    const [a, b, c, d] = [info("a"), info("b"), info("c"), info("d")]
    const [x, y] = [info("x"), info("y")]
    // b is the other process's member: its leave is that process's change.
    for (const m of [a, b, c, d]) yield* (m === b ? changer : store).join(groupId, m, 30_000)
    yield* store.join(other, x, 30_000)
    const otherJoined = yield* store.join(other, y, 30_000)
    const settled = yield* Effect.forEach([a, b, c, d], (m) => (m === b ? changer : store).heartbeat(groupId, m.memberId, 4, 30_000))
    const epoch = Option.getOrThrow(settled[3]!).epoch

    const leave = yield* Effect.fork(changer.leave(groupId, b.memberId))
    yield* Deferred.await(atCommit)
    // a, c, d (locked by the leave) and x, y (another group) in one batch.
    const renewals = yield* Effect.fork(Effect.forEach(
      [a, c, d, x, y],
      (m) => store.heartbeat(m === x || m === y ? other : groupId, m.memberId, m === x || m === y ? otherJoined.epoch : epoch, 30_000, { holdMs: 200 }),
      { concurrency: "unbounded" }
    ))
    yield* untilOwnLockWait("%lease_expires_at%")
    // x and y are not held up by the other group's change.
    const started = Date.now()
    // (their answers are in the forked forEach; poll the rows instead)
    const sql = yield* SqlClient.SqlClient
    yield* sql<{ n: string }>`
      SELECT count(*) AS n FROM modulo_group.members
       WHERE group_id = ${other} AND heartbeat_at > now() - interval '5 seconds' AND acked_epoch = ${otherJoined.epoch}`.pipe(
      Effect.flatMap(([r]) => (Number(r!.n) === 2 ? Effect.void : Effect.fail("not yet"))),
      Effect.retry(Schedule.spaced(Duration.millis(10)).pipe(Schedule.upTo(Duration.seconds(5)))),
      Effect.orDie
    )
    expect(Date.now() - started).toBeLessThan(5_000)
    yield* Deferred.succeed(commit, undefined)
    yield* Fiber.join(leave)
    const views = (yield* Fiber.join(renewals)).map((v) => Option.getOrThrow(v))
    // a, c, d waited for the leave and read their rows as it left them: the new epoch, barrier up.
    for (const v of views.slice(0, 3)) expect(v).toMatchObject({ epoch: epoch + 1, size: 3, allAcked: false })
    expect(new Set(views.slice(0, 3).map((v: GroupView) => v.index))).toEqual(new Set([0, 1, 2]))
    for (const v of views.slice(3)) expect(v).toMatchObject({ epoch: otherJoined.epoch, size: 2 })
  }).pipe(Effect.provide(Live)), 60_000)

it.live("a lone renewal is the single-member statement; behind a change's row lock it renews alone after, and holds no other member back", () =>
  Effect.gen(function*() {
    yield* Migrations.run
    const groupId = randomGroupId("batch-one")
    const other = randomGroupId("batch-one-other")
    const { commit, atCommit, onStatement } = yield* leaveGate
    const store = yield* PgMembershipStore.make()
    // A change in another process, stopped before its COMMIT with the group's rows locked.
    const changer = yield* PgMembershipStore.make({ onStatement })
    const [a, b, x] = [info("a"), info("b"), info("x")]
    yield* store.join(groupId, a, 30_000)
    // b is the other process's member: its leave is that process's change.
    const joined = yield* changer.join(groupId, b, 30_000)
    const joinedOther = yield* store.join(other, x, 30_000)

    // Alone: the single-member statement (the batch statement costs the server about three times as much).
    const { a: view, counts } = yield* countingRenewals(store.heartbeat(groupId, a.memberId, joined.epoch, 30_000))
    expect(counts).toEqual({ batch: 0, single: 1 })
    expect(Option.getOrThrow(view)).toMatchObject({ epoch: joined.epoch, size: 2 })

    // Behind the change's row lock: the lone statement gives up at once (nothing written), and a
    // renews alone, waiting for the lock; meanwhile x's renewal goes (not held behind a's).
    const leave = yield* Effect.fork(changer.leave(groupId, b.memberId))
    yield* Deferred.await(atCommit)
    const renewal = yield* Effect.fork(countingRenewals(store.heartbeat(groupId, a.memberId, joined.epoch, 30_000), a.memberId))
    yield* untilOwnLockWait("%lease_expires_at%")
    const xView = yield* store.heartbeat(other, x.memberId, joinedOther.epoch, 30_000).pipe(Effect.timeout(Duration.seconds(5)))
    expect(Option.getOrThrow(xView)).toMatchObject({ epoch: joinedOther.epoch, size: 1 })
    yield* Deferred.succeed(commit, undefined)
    yield* Fiber.join(leave)
    const { a: after, counts: behind } = yield* Fiber.join(renewal)
    expect(behind).toEqual({ batch: 0, single: 2 })
    // It read its row as the leave left it: the new epoch, barrier up.
    expect(Option.getOrThrow(after)).toMatchObject({ epoch: joined.epoch + 1, size: 1, index: 0, allAcked: false })
  }).pipe(Effect.provide(Live)), 60_000)
