/**
 * G3 (and with it G2), an adversarial review: a rider's late view started work that nothing watched.
 *
 * A plain join waiting for its store's turn is a rider: the change whose turn it is inserts its row
 * (its lease starts then, on the database clock) and hands it its view after the commit, and the rider
 * returns that view only at its own turn (docs/protocol.md, "Changes of one process go together"). Its
 * turn can come several statement timeouts later: each change of the same store and group queued ahead
 * of it holds the turn for up to a statement timeout. Nothing bounds that wait but the busy budget.
 *
 * The member's deadline is right (the rider's call start + lease - margin), and a view in time starts
 * the work. But a member that joins straight into `Assigned` (its join's view shows the barrier down)
 * has nothing watching that deadline until a heartbeat later:
 * - the fence timer, which found no deadline while the member was joining, sleeps a whole heartbeat
 *   (fenceTimer.ts: `if (deadline === undefined) return yield* Effect.sleep(heartbeatMs)`), and the
 *   `Joined` step does not wake it;
 * - the lease keeper, which found the member joining, is in a heartbeat-long wait that only a join into
 *   `Awaiting` pokes (driver.ts), so no renewal moves the deadline or the lease either.
 * With heartbeat > fenceMargin (a valid configuration: lease > heartbeat + fenceMargin +
 * statementTimeout) the work runs on past the local deadline and past the lease on the database clock;
 * the other member reaps the rider and starts a new epoch beside its work.
 *
 * Interleaving (heartbeat 5 s, lease 7 s, fenceMargin 0.5 s, statementTimeout 1 s: valid, lease >
 * heartbeat + fenceMargin + statementTimeout + renewalWindow; notifications off, G7), t from M's creation:
 *   t=0     L's join has the store's turn (held at its first statement for ~0.2 s); nine static joins
 *           C1..C9 of the same store and group queue for the turn, then M's plain join (a rider).
 *           M's fence timer finds no deadline and sleeps a heartbeat (until t=5); its lease keeper,
 *           M joining, waits a heartbeat (until t=5).
 *   t~0.25  L's change takes M along: M's row is inserted (lease until t~7.25 on the database clock);
 *           L and M both acknowledge epoch E (the group forms): L starts [0/2] of E at once.
 *   t~0.3   C1..C9 take the turn one after the other, each slow on the server (< 1 s) until t=5.6.
 *   t=5     M's fence timer: still no deadline (M is joining), sleeps until t=10; its lease keeper:
 *           joining, no renewal, waits until t=10.
 *   t~5.65  M's turn: it returns L's view (E, barrier down); its deadline is t~6.5 (ahead): it starts
 *           [1/2] of E.
 *   t~6.5   M's local deadline passes: nothing looks.
 *   t~7.25  M's lease runs out on the database clock; L, renewing, sees it expired, reaps it and
 *           starts a new epoch alone ([0/1]) while M still works [1/2] of E.
 *   t=10    M's fence timer and lease keeper wake: M's work stops, ~2.7 s after its lease ran out.
 *
 * Measured before the fix: M started E at 5.64 s, L started epoch 12 alone at 7.21 s, M's work
 * ended at 10.0 s. Now the fence timer watches the deadline from the step that sets it, and the lease
 * keeper renews at once after a join into `Assigned` that leaves too little of the lease for its wait
 * (test/safety/lateJoinView.test.ts pins each): M renews at ~5.65 s, in time.
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Layer, Scope } from "effect"
import pg from "pg"
import * as Membership from "../../src/Membership.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, PgLive, randomGroupId } from "../support/Database.js"
import { makeRecorder } from "../support/Recorder.js"
import { waitFor } from "../support/Wait.js"

const timing = {
  heartbeat: "5 seconds",
  lease: "7 seconds",
  fenceMargin: "500 millis",
  statementTimeout: "1 second",
  notifications: false
} as const

it.live("a rider's view returned late starts work at once: it stops or renews before its lease runs out, no epoch beside it (G3, G2)", () =>
  Effect.gen(function*() {
    const groupId = randomGroupId("rider-late")
    const rec = yield* makeRecorder

    // The store's statement hook: L's join (the first) waits at its first statement until released;
    // the static joins queued behind it are each slow on the server (under the statement timeout)
    // until `slowUntil`.
    const gate = yield* Deferred.make<void>()
    let gateL: Deferred.Deferred<void> | undefined = gate
    let lHeld = false
    let slowUntil = 0
    const onStatement = (operation: string, step: string): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (operation !== "join" || step !== "lock") return Effect.void
        if (gateL !== undefined) {
          const g = gateL
          gateL = undefined
          lHeld = true
          return Deferred.await(g)
        }
        const left = slowUntil - Date.now()
        return left > 0 ? Effect.sleep(Duration.millis(Math.min(850, left))) : Effect.void
      })
    const storeLayer = PgMembershipStore.layer({ statementTimeout: "1 second", onStatement }).pipe(
      Layer.provideMerge(PgLive)
    )
    const ctx = yield* Layer.build(storeLayer)
    const store = yield* Effect.provide(MembershipStore, ctx)

    const member = (label: string) =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const m = yield* Membership.make({ groupId, ...timing }).pipe(Effect.provide(ctx), Scope.extend(scope))
        yield* rec.track(m, label).pipe(Scope.extend(scope))
        return { m, close: Scope.close(scope, Exit.void) }
      })

    // L's join takes the store's turn and is held at its first statement.
    const l = yield* member("L")
    yield* waitFor(() => lHeld, Duration.seconds(10), "L's join at its first statement")

    // Nine static joins of the same store and group queue for the turn behind it.
    for (let i = 0; i < 9; i++) {
      const info = { memberId: globalThis.crypto.randomUUID(), name: `c${i}`, host: "rider-late", pid: 1 }
      yield* Effect.forkDaemon(Effect.ignore(store.join(groupId, info, 1_500, { instanceId: `c${i}`, rejoinGraceMs: 0 })))
      yield* Effect.sleep(Duration.millis(15))
    }

    // M: its plain join waits for its turn behind them, a rider.
    const mCreated = Date.now()
    const m = yield* member("M")
    yield* Effect.sleep(Duration.millis(150))

    // The static joins are slow until M's fence timer and lease keeper have looked once (t=5 s).
    slowUntil = mCreated + 5_600
    yield* Deferred.succeed(gate, undefined)

    // Watch M's row on the database clock while M works.
    const c = new pg.Client({ connectionString: databaseUrl(), application_name: "rider-late-watch" })
    c.on("error", () => undefined)
    yield* Effect.promise(() => c.connect())
    const g3: Array<string> = []
    const watchUntil = mCreated + 12_000
    while (Date.now() < watchUntil) {
      const mWorking = () => rec.working().some((w) => w.member === "M")
      const before = mWorking()
      const rows = yield* Effect.promise(() =>
        c.query<{ lease: number | null; now: number }>(
          `SELECT (extract(epoch FROM m.lease_expires_at) * 1000)::float8 AS lease,
                  (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now
             FROM (SELECT 1) one LEFT JOIN modulo_group.members m ON m.member_id = $1::uuid`,
          [m.m.memberId]
        )
      )
      const after = mWorking()
      const row = rows.rows[0]!
      if (before && after) {
        if (row.lease === null) g3.push(`${Date.now() - mCreated} ms: M works, its row is gone (reaped)`)
        else if (row.lease <= row.now) g3.push(`${Date.now() - mCreated} ms: M works, its lease ran out ${Math.round(row.now - row.lease)} ms ago`)
      }
      yield* Effect.sleep(Duration.millis(20))
    }
    yield* Effect.promise(() => c.end())

    yield* Effect.forkDaemon(l.close)
    yield* Effect.forkDaemon(m.close)

    // M worked in E: the work must have stopped before its lease could run out (G3) ...
    expect(rec.marks.some((k) => k.member === "M" && k.kind === "start")).toBe(true)
    expect(g3).toEqual([])
    // ... and nobody starts a newer epoch while it works (G2).
    expect(rec.violations).toEqual([])
  }).pipe(Effect.scoped), 60_000)
