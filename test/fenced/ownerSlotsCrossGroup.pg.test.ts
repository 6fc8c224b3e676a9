/**
 * Slots mode: `OwnedSlot` names the membership that handed it out. A daemon of group G's `whileOwning`
 * run joined a fiber of group H's run (which carried H's `Membership` into it); its
 * `fenced(..., { slots: owned })` was checked against H's member, which held the same slot number at
 * the same generation, and committed after G had moved that slot to another member (an adversarial
 * review). Now refused: the slots are G's member's.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, Fiber, Layer, Scope } from "effect"
import * as Fenced from "../../src/Fenced.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import type { OwnedSlot } from "../../src/MemberState.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { waitForEffect } from "../support/Wait.js"

const fast = { heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "500 millis", statementTimeout: "1 second", slots: 2 } as const
const StoreLive = PgMembershipStore.layerUsingNotifier().pipe(Layer.provideMerge(Notifier.layer), Layer.provideMerge(PgLive))

it.live("G's slot daemon that joined H's slot run fiber is refused G's moved slot with { slots }", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const groupId = randomGroupId("a4-sg")
    const otherGroup = randomGroupId("a4-sh")
    const written = `w_${groupId.replace(/-/g, "_")}`
    yield* Effect.acquireRelease(
      sql`CREATE TABLE ${sql(written)} (id bigint, member text, slot int, generation int)`,
      () => Effect.orDie(sql`DROP TABLE IF EXISTS ${sql(written)}`)
    )
    const body = (name: string, o: OwnedSlot) =>
      sql`INSERT INTO ${sql(written)} SELECT id, ${name}, ${o.slot}, ${o.generation} FROM generate_series(0, 9) id WHERE id % 2 = ${o.slot}`
    const s1 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(s1, Exit.void))
    const g1 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(s1))
    const h = yield* Membership.make({ groupId: otherGroup, ...fast }).pipe(Scope.extend(s1))
    const fromH = yield* Deferred.make<Fiber.RuntimeFiber<void>>()
    yield* h.whileOwning(() =>
      Effect.gen(function*() {
        const f = yield* Effect.forkDaemon(Effect.void)
        yield* Deferred.succeed(fromH, f)
        return yield* Effect.never
      })
    ).pipe(Effect.provideService(Membership.Membership, h))
    yield* waitForEffect(Effect.map(g1.owned, (o) => o.slots.length === 2), "10 seconds", "g1 holds both")
    const go = yield* Deferred.make<void>()
    const results = new Map<number, Deferred.Deferred<Either.Either<void, unknown>>>()
    for (const s of [0, 1]) results.set(s, yield* Deferred.make<Either.Either<void, unknown>>())
    const first = new Map<number, OwnedSlot>()
    yield* g1.whileOwning((owned) =>
      Effect.gen(function*() {
        if (first.has(owned.slot)) return yield* Effect.never
        yield* Fenced.fenced(body("g1-run", owned), { slots: owned })
        yield* Effect.forkDaemon(
          Effect.gen(function*() {
            yield* Deferred.await(go)
            yield* Fiber.join(yield* Deferred.await(fromH))
            return yield* Effect.either(Effect.asVoid(Fenced.fenced(body("g1-daemon", owned), { slots: owned })))
          }).pipe(Effect.flatMap((result) => Deferred.succeed(results.get(owned.slot)!, result)))
        )
        // Counted once its daemon is forked (g2 joins then, and may take the slot from this run).
        first.set(owned.slot, owned)
        return yield* Effect.never
      })
    ).pipe(Effect.provideService(Membership.Membership, g1))
    yield* waitForEffect(Effect.sync(() => first.size === 2), "10 seconds", "both slot runs")
    const s2 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(s2, Exit.void))
    const g2 = yield* Membership.make({ groupId, ...fast }).pipe(Scope.extend(s2))
    yield* waitForEffect(Effect.map(g2.owned, (o) => o.slots.length === 1), "15 seconds", "g2 holds one")
    const o2 = yield* g2.owned
    const moved = o2.slots[0]!
    yield* Fenced.fenced(body("g2", { slot: moved, generation: o2.generations[0]!, count: 2 }), {
      slots: { slot: moved, generation: o2.generations[0]!, count: 2 }
    }).pipe(Effect.provideService(Membership.Membership, g2))
    yield* Deferred.succeed(go, undefined)
    const result = yield* Deferred.await(results.get(moved)!)
    const rows = yield* sql<{ member: string }>`SELECT member, slot, generation, count(*)::int AS n FROM ${sql(written)} GROUP BY 1,2,3 ORDER BY 2,1`
    expect(Either.isLeft(result) && (result.left as { _tag?: string })._tag).toBe("StaleAssignment")
    expect(rows.filter((r) => r.member === "g1-daemon")).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 40_000)

it.live("slots of another membership are refused also when an assignment of this membership is passed beside them", () =>
  Effect.gen(function*() {
    // A review: `fenced` checked only the assignment's owner when both were given, and the slots
    // (which decide then) of group G passed under H's member, whose slots had the same numbers.
    const sql = yield* SqlClient.SqlClient
    const g = yield* Membership.make({ groupId: randomGroupId("owner-slots-g"), ...fast })
    const h = yield* Membership.make({ groupId: randomGroupId("owner-slots-h"), ...fast })
    yield* waitForEffect(Effect.zipWith(g.owned, h.owned, (x, y) => x.slots.length === 2 && y.slots.length === 2), "10 seconds", "both hold both")
    const gOwned = yield* g.owned
    const hAssignment = yield* h.guard
    const alone = yield* Effect.either(Fenced.fenced(sql`SELECT 1`, { slots: gOwned }).pipe(Effect.provideService(Membership.Membership, h)))
    const both = yield* Effect.either(
      Fenced.fenced(sql`SELECT 1`, { slots: gOwned, assignment: hAssignment }).pipe(Effect.provideService(Membership.Membership, h))
    )
    expect(Either.isLeft(alone) && (alone.left as { _tag?: string })._tag).toBe("StaleAssignment")
    expect(Either.isLeft(both) && (both.left as { _tag?: string })._tag).toBe("StaleAssignment")
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 30_000)
