/**
 * G6, a review of 6435ba0: a fenced block of group B nested in a fenced body of group A handed its
 * targets to A (in the process) only when its own exit was a success.
 * But B's savepoint is kept (makeWithTransaction sends nothing at a savepoint's success) in an
 * uninterruptible region, and an interruption that reaches B's fiber there (the app gives up on the
 * helper: a race, a timeout, `Fiber.interrupt`) is reported when that region ends: B's exit is then an
 * interruption although its write stays in A's transaction. `nestedIn` handed nothing over, A's `SET
 * CONSTRAINTS ALL IMMEDIATE` runs B's two queued checks there and then (B still live), A's `fenceEnd`
 * queued only A's own check, and A's COMMIT committed B's write whatever B's lease was by then. Now
 * every fence records its target in the transaction (`Statements.fencedTargetsSetting`), which a
 * kept savepoint keeps whatever the fiber's exit, and A's last statement queues a check for each.
 *
 * The window is the uninterruptible tail of B's savepoint (after its body and `fenceEnd`, before the
 * savepoint's mask ends). Effect's scheduler pauses a fiber there whenever its op count reaches
 * `maxOpsBeforeYield` at that point; other fibers run meanwhile. The test makes that pause certain
 * (as test/fenced/support.ts `holdingMarked` does for the send of a statement): a scheduler that
 * yields once on demand, asked for it by a tracer at the end of B's `sql.transaction` span (which
 * ends inside that tail, with B's success). The app's own fiber, waiting on its deadline, runs in the
 * pause and interrupts the fiber it forked for B.
 *
 * Interleaving: A's lease 60 s, B's 400 ms. A: BEGIN, steps 1-4; body forks B: SAVEPOINT, B's steps
 * 1-4, B's write, B's fenceEnd (live); B's savepoint kept; B's fiber pauses in the tail; A's body
 * interrupts it (B's exit: interrupted, nothing handed over); A's SET CONSTRAINTS ALL IMMEDIATE (B's
 * checks run, live); A's fenceEnd (A's row only); the client stalls 700 ms before COMMIT (B's lease
 * ends, read on another connection); COMMIT (before the fix: B's write committed ~300-450 ms past B's lease).
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, Fiber, Scheduler, Tracer } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture, proxy, stallingBeforeCommit, stallingThenReading } from "./support.js"


it.live("G6: a nested fenced block interrupted after its savepoint was kept: the outer COMMIT checks it, nothing past its lease", () =>
  Effect.gen(function*() {
    const a = yield* fixture("int-tail-outer")
    const b = yield* fixture("int-tail-inner")
    const sql = a.sql

    // The client stalls 700 ms before COMMIT; B's lease is read on another connection just before.
    const { client: stalling, leaseAtCommit } = stallingThenReading(sql, "700 millis", b.memberId)

    // Effect's scheduler, except that it yields once when asked (as it does every maxOpsBeforeYield ops).
    let yieldNext = false
    const scheduler: Scheduler.Scheduler = {
      shouldYield: (fiber) => {
        if (yieldNext) {
          yieldNext = false
          return 0
        }
        return Scheduler.defaultScheduler.shouldYield(fiber)
      },
      scheduleTask: (task, priority) => Scheduler.defaultScheduler.scheduleTask(task, priority)
    }
    // The tracer: once armed (by B's body), the next `sql.transaction` span to end with a success is
    // B's savepoint, ended in its uninterruptible tail: the app's deadline passes then, and the fiber
    // is paused right after.
    const deadline = yield* Deferred.make<void>()
    let armed = false
    const base = yield* Effect.tracer
    const tracer = Tracer.make({
      span: (name, parent, context, links, startTime, kind, options) => {
        const span = base.span(name, parent, context, links, startTime, kind, options)
        if (name !== "sql.transaction") return span
        return proxy<Tracer.Span>(span, {
          end: (endTime, exit) => {
            span.end(endTime, exit)
            if (armed && Exit.isSuccess(exit)) {
              armed = false
              Deferred.unsafeDone(deadline, Exit.void)
              yieldNext = true
            }
          }
        })
      },
      context: (f, fiber) => base.context(f, fiber)
    })

    yield* b.setLease(400)
    let innerExit: Exit.Exit<unknown, unknown> | undefined
    const result = yield* Effect.either(
      Fenced.fencedWith(
        a.target,
        Effect.gen(function*() {
          // A helper's fenced write to group B, in a fiber of its own, given up at the app's deadline.
          const inner = yield* Effect.fork(
            Fenced.fencedWith(b.target, Effect.zipRight(b.insert("in fenced body"), Effect.sync(() => (armed = true))), {
              timeout: "3 seconds"
            })
          )
          yield* Deferred.await(deadline)
          innerExit = yield* Fiber.interrupt(inner)
          yield* a.insert("outer")
        }),
        { timeout: "3 seconds" }
      ).pipe(
        Effect.provideService(SqlClient.SqlClient, stalling),
        Effect.withScheduler(scheduler),
        Effect.withTracer(tracer)
      )
    )

    // The nested block was reported interrupted (the app treats its write as not done)...
    expect(innerExit !== undefined && Exit.isInterrupted(innerExit)).toBe(true)
    // ... and the COMMIT was sent after B's lease had ended on the database clock.
    expect(leaseAtCommit.length).toBe(1)
    expect(leaseAtCommit[0]!).toBeLessThan(0)
    // G6: nothing fenced for B commits after B's lease ended (either A's COMMIT fails, or B's write is
    // not in it). On 6435ba0: A committed, B's write with it, ~300 ms past B's lease.
    const nestedNotes = yield* b.notes
    yield* Effect.logInfo(
      `B's lease at COMMIT: ${leaseAtCommit[0]} ms; outer: ${Either.isRight(result) ? "committed" : "failed"}; B's rows: ${nestedNotes}`
    )
    expect(nestedNotes).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 30_000)

// Control (passes): the same, but the app joins the helper's fiber instead of interrupting it. B ends
// well, its target stays recorded, A's fenceEnd queues B's check again, and A's COMMIT fails (MGF01).
it.live("control: the same nested block joined, not interrupted: A's COMMIT fails, B's write not committed", () =>
  Effect.gen(function*() {
    const a = yield* fixture("int-tail-outer-ctl")
    const b = yield* fixture("int-tail-inner-ctl")
    const sql = a.sql
    const stalling = stallingBeforeCommit(sql, "700 millis")
    yield* b.setLease(400)
    const result = yield* Effect.either(
      Fenced.fencedWith(
        a.target,
        Effect.gen(function*() {
          const inner = yield* Effect.fork(Fenced.fencedWith(b.target, b.insert("in fenced body"), { timeout: "3 seconds" }))
          yield* Fiber.join(inner)
          yield* a.insert("outer")
        }),
        { timeout: "3 seconds" }
      ).pipe(Effect.provideService(SqlClient.SqlClient, stalling))
    )
    expect(Either.isLeft(result)).toBe(true)
    expect(yield* b.notes).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 30_000)
