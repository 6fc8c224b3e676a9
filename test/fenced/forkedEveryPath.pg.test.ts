/**
 * A fiber the fenced body forked, writing after the body returned or after the body was stopped by the
 * fence's timeout, through every path of the SqlClient (a plain statement, `.values`, `.raw`,
 * `.withoutTransform`, `.unprepared`, `sql.withTransaction`, `sql.stream`): each refused, nothing
 * commits (a review; it held).
 */
import { expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { PgLive } from "../support/Database.js"
import { fixture } from "./support.js"
import { Stream } from "effect"

for (const ending of ["returns", "times out"] as const) {
  it.live(`forked writes after the body ${ending}: every path refused, nothing commits`, () =>
    Effect.gen(function*() {
      const t = yield* fixture(`holds-${ending.replace(" ", "-")}`)
      const sql = t.sql
      const ins = (n: string) => `INSERT INTO ${t.table} (note) VALUES ('${n}')`
      const go = yield* Deferred.make<void>()
      const results: Array<string> = []
      const attempt = (name: string, e: Effect.Effect<unknown, unknown>) =>
        Effect.exit(e).pipe(Effect.tap((x) => Effect.sync(() => results.push(`${name}:${x._tag}`))))
      const forked = Effect.gen(function*() {
        yield* Deferred.await(go)
        yield* attempt("plain", sql.unsafe(ins("plain")))
        yield* attempt("values", sql.unsafe(ins("values")).values)
        yield* attempt("raw", sql.unsafe(ins("raw")).raw)
        yield* attempt("withoutTransform", sql.unsafe(ins("wt")).withoutTransform)
        yield* attempt("unprepared", sql.unsafe(ins("unprepared")).unprepared)
        yield* attempt("withTransaction", sql.withTransaction(sql.unsafe(ins("withTransaction"))))
        yield* attempt("stream", Stream.runDrain(sql.unsafe(`${ins("stream")} RETURNING note`).stream))
      })
      let f: Fiber.RuntimeFiber<unknown, unknown> | undefined
      const r = yield* Effect.either(Fenced.fencedWith(t.target, Effect.gen(function*() {
        yield* t.insert("fenced")
        f = yield* Effect.forkDaemon(forked)
        if (ending === "times out") yield* Effect.sleep("2 seconds")
      }), { timeout: "300 millis" }))
      yield* Deferred.succeed(go, undefined)
      yield* Fiber.await(f!)
      const notes = yield* t.notes
      expect(results.every((x) => x.endsWith("Failure"))).toBe(true)
      expect(notes).toEqual(ending === "returns" ? ["fenced"] : [])
      expect(r._tag).toBe(ending === "returns" ? "Right" : "Left")
    }).pipe(Effect.scoped, Effect.provide(PgLive)), 30_000)
}
