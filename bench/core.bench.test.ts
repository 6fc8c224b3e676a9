/**
 * Core figures: convergence after a join and after a graceful leave for 8 in-process members
 * (median of 20 trials), and steady-state database transactions per member per second.
 * Run: npm run bench (prints a table).
 */
import { PgClient } from "@effect/sql-pg"
import { it } from "@effect/vitest"
import { Duration, Effect, Exit, Layer, Redacted, Scope } from "effect"
import * as Membership from "../src/Membership.js"
import * as PgMembershipStore from "../src/PgMembershipStore.js"
import { exactCover, makeRecorder } from "../test/support/Recorder.js"
import { benchDatabase, median, percentile, xactCommits } from "./support/Database.js"

const TRIALS = Number(process.env["BENCH_TRIALS"] ?? 20)

const waitFor = (done: () => boolean, max = 30_000) =>
  Effect.gen(function*() {
    const start = performance.now()
    while (!done()) {
      if (performance.now() - start > max) return yield* Effect.dieMessage("did not converge")
      yield* Effect.sleep(Duration.millis(1))
    }
    return performance.now() - start
  })

it.live("core: convergence and steady-state cost, 8 in-process members", () =>
  Effect.gen(function*() {
    const db = yield* Effect.promise(() => benchDatabase("modulo_group_bench_core"))
    yield* Effect.addFinalizer(() => Effect.promise(() => db.close()))
    const Pg = PgClient.layer({ url: Redacted.make(db.url), maxConnections: 20, idleTimeout: "1 hour" })
    const rows: Array<string> = [`database: ${db.server}`]

    for (const notifications of [true, false]) {
      const result = yield* Effect.gen(function*() {
        const rec = yield* makeRecorder
        const cfg = { groupId: `bench-${notifications}`, heartbeat: "1 second", lease: "10 seconds", notifications } as const
        const join = Effect.gen(function*() {
          const scope = yield* Scope.make()
          const m = yield* Membership.make(cfg).pipe(Scope.extend(scope))
          yield* rec.track(m).pipe(Scope.extend(scope))
          return scope
        })
        const scopes = yield* Effect.forEach(Array.from({ length: 8 }), () => join)
        yield* waitFor(() => exactCover(rec.working(), 8))
        const joins: Array<number> = []
        const leaves: Array<number> = []
        for (let i = 0; i < TRIALS; i++) {
          const t0 = performance.now()
          const extra = yield* join
          yield* waitFor(() => exactCover(rec.working(), 9))
          joins.push(performance.now() - t0)
          yield* Effect.sleep(Duration.millis(Math.random() * 300)) // out of phase with heartbeats
          const t1 = performance.now()
          yield* Scope.close(extra, Exit.void)
          yield* waitFor(() => exactCover(rec.working(), 8))
          leaves.push(performance.now() - t1)
          yield* Effect.sleep(Duration.millis(Math.random() * 300))
        }
        let steady = NaN
        if (notifications) {
          // Steady state: nothing changes for 20 s; count commits in the dedicated database.
          yield* Effect.sleep(Duration.seconds(2))
          const c0 = yield* Effect.promise(() => xactCommits(db.url))
          yield* Effect.sleep(Duration.seconds(20))
          const c1 = yield* Effect.promise(() => xactCommits(db.url))
          steady = (c1 - c0 - 2) / 8 / 20 // minus the two counter queries themselves
        }
        yield* Effect.forEach(scopes, (s) => Scope.close(s, Exit.void))
        if (rec.violations.length > 0) return yield* Effect.dieMessage(rec.violations.join("\n"))
        return { joins, leaves, steady }
      }).pipe(Effect.scoped, Effect.provide(PgMembershipStore.layer().pipe(Layer.provideMerge(Pg))))
      const f = (xs: Array<number>) => `median ${median(xs).toFixed(1)} ms, p95 ${percentile(xs, 95).toFixed(1)} ms`
      rows.push(`notifications ${notifications ? "on " : "off"}: join ${f(result.joins)}; leave ${f(result.leaves)} (${TRIALS} trials)`)
      if (notifications) rows.push(`steady state (heartbeat 1 s): ${result.steady.toFixed(3)} transactions per member per second`)
    }
    console.log(["", "== modulo-group core benchmark: 8 members in one process, heartbeat 1 s, lease 10 s ==", ...rows, ""].join("\n"))
  }).pipe(Effect.scoped))
