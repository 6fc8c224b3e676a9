/**
 * G6, a review of 6919cb7 ("fenced without slots in slots mode is refused"). The refusal was
 * decided by the mode of the `Membership` found in the context, and a slots-mode work run
 * (`whileOwning`, `whileOwningAll`) marks nothing on its fiber (`currentRunAssignment` is set for
 * modulo runs only: workRunner.ts `startOne`; `startSlotOne`/`startSetOne` set nothing). So inside
 * slots member B's run, a plain `fenced(write)` under another group's modulo member A (the app is a
 * member of both) is neither refused (A is in modulo mode) nor checked against the run (no marker):
 * it is fenced to A's lease, epoch and index, which partition nothing of B's slots. In a modulo run
 * the same calls are refused ("this call is in a work run of member X ... but fences member Y":
 * test/fenced/runOtherMember.pg.test.ts, the re-provided case; runJoin.pg.test.ts, a joined fiber).
 *
 * A gets into B's run two ways: "re-provided" (`Effect.provideService(Membership, a)` inside the run,
 * e.g. a write helper built with the app's context) and "joined fiber" (B's run joins a fiber forked
 * in A's run: Effect's join hands the joined fiber's context, so its `Membership`, to the joiner).
 *
 * Interleaving: B1 works slots 0-3; each slot's run forks a daemon (a run's forked fiber that
 * outlives the run is in fenced's scope: docs/fencing.md) that writes its slot's row every 100 ms
 * through plain `fenced`; B2 joins, B1 stops and releases slots 2 and 3, B2 holds and starts them.
 * B1's daemons keep committing "fenced" writes of slots 2 and 3 beside B2 (at 049d2f6: 10 of 10 runs
 * re-provided, 5 of 5 joined fiber, 4-9 writes per slot over the 0.8-1.0 s watched after B2 started,
 * no refusal). Fixed: a slots-run marker (`currentSlotsRun`, workRunner.ts), set on slot runs and kept
 * on joins; `fenced` refuses a call in such a run under another membership unless it passes that
 * membership's `assignment` or `slots`.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Layer, Scope } from "effect"
import * as Fenced from "../../src/Fenced.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { waitForEffect } from "../support/Wait.js"

const fast = { heartbeat: "200 millis", lease: "2 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const
const StoreLive = PgMembershipStore.layerUsingNotifier().pipe(Layer.provideMerge(Notifier.layer), Layer.provideMerge(PgLive))

for (const via of ["re-provided", "joined fiber"] as const)
it.live(`G6: a slots-mode run's plain fenced under another group's modulo Membership (${via}) is refused, not fenced to that member`, () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const groupA = randomGroupId("ambient-modulo")
    const groupB = randomGroupId("slots-b")
    const table = `writes_${groupB.replace(/-/g, "_")}`
    yield* Effect.acquireRelease(
      sql`CREATE TABLE ${sql(table)} (who text, slot int, generation bigint, at timestamptz DEFAULT clock_timestamp())`,
      () => Effect.orDie(sql`DROP TABLE IF EXISTS ${sql(table)}`)
    )
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    // The app's Membership: a modulo-mode member of group A.
    const a = yield* Membership.make({ groupId: groupA, ...fast }).pipe(Scope.extend(scope))
    yield* a.awaitAssigned
    // "joined fiber": a fiber of A's work run (a shared helper fiber the app keeps), which B's slot
    // work joins: the join carries A's context (its \`Membership\`) into B's fiber (the run marker of a
    // modulo run is kept on a join; a slots-mode run has none).
    const shared = yield* Deferred.make<Fiber.RuntimeFiber<void>>()
    yield* a.whileAssigned(() =>
      Effect.flatMap(Effect.fork(Effect.void), (f) => Effect.zipRight(Deferred.succeed(shared, f), Effect.never))
    ).pipe(Scope.extend(scope))
    // B1: slots mode, group B, its own handle (as `Membership.join` gives it).
    const b1 = yield* Membership.join(groupB, { slots: 4, ...fast }).pipe(Scope.extend(scope))
    const refusals: Array<string> = []
    yield* b1.whileOwning((owned) =>
      Effect.gen(function*() {
        // The app's slot work: a writer fiber it forks (outlives the run), fenced plainly.
        const write = Fenced.fenced(sql`INSERT INTO ${sql(table)} (who, slot, generation) VALUES ('b1', ${owned.slot}, ${owned.generation})`)
        yield* Effect.forkDaemon(Effect.zipRight(
          via === "joined fiber" ? Effect.flatMap(Deferred.await(shared), Fiber.join) : Effect.void,
          Effect.forever(
            // "re-provided": the app's Membership (A) provided inside the run (as the second case of
            // test/fenced/runOtherMember.pg.test.ts does in modulo mode, where it is refused), e.g. a
            // write helper built once with the app's context.
            (via === "re-provided" ? write.pipe(Effect.provideService(Membership.Membership, a)) : write).pipe(
              Effect.catchAll((e) => Effect.sync(() => void refusals.push(`${e._tag}: ${e.message}`))),
              Effect.zipRight(Effect.sleep(Duration.millis(100)))
            )
          )
        ))
        return yield* Effect.never
      })
    ).pipe(Effect.provideService(Membership.Membership, b1), Scope.extend(scope))
    yield* waitForEffect(Effect.map(b1.owned, (o) => o.slots.length === 4), "10 seconds", "b1 works four slots")
    yield* Effect.sleep(Duration.millis(300))

    // B2 joins group B; B1 gives up two slots, B2 starts them.
    const scope2 = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope2, Exit.void))
    const b2 = yield* Membership.join(groupB, { slots: 4, ...fast }).pipe(Scope.extend(scope2))
    const started = new Map<number, number>()
    yield* b2.whileOwning((owned) =>
      Effect.zipRight(
        Effect.flatMap(sql<{ t: number }>`SELECT extract(epoch FROM clock_timestamp()) * 1000 AS t`, ([r]) =>
          Effect.sync(() => void started.set(owned.slot, Number(r!.t)))),
        Effect.never
      )
    ).pipe(Scope.extend(scope2))
    yield* waitForEffect(Effect.map(b2.owned, (o) => o.slots.length === 2), "10 seconds", "b2 works two slots")
    yield* Effect.sleep(Duration.seconds(1))
    const b2slots = (yield* b2.owned).slots
    const late = yield* sql<{ slot: number; n: string; last_ms: number }>`
      SELECT slot, count(*) AS n,
             (max(extract(epoch FROM at) * 1000) - ${Math.min(...b2slots.map((s) => started.get(s)!))})::float8 AS last_ms
        FROM ${sql(table)}
       WHERE who = 'b1' AND slot = ANY(${`{${b2slots.join(",")}}`}::int[])
         AND extract(epoch FROM at) * 1000 > ${Math.min(...b2slots.map((s) => started.get(s)!))}
       GROUP BY slot ORDER BY slot`
    console.log("b2 works", b2slots, "; b1's fenced writes of those slots after b2 started them:", late,
      "; b1's refusals:", refusals.length, refusals.slice(0, 2))
    // G6: no fenced write of a slot commits once the slot has moved to another member (the plain
    // fenced of a slots-mode run must be refused, as it is under B's own Membership).
    expect(late).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)
