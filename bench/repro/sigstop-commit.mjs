// A process stopped (SIGSTOP) with its join's COMMIT about to go out, continued after a pause: does
// its join come back as it committed? Each trial is a child process (this file, `child` argument)
// that joins a second member to a group over a store with a 500 ms statement timeout and stops
// itself just before the join's COMMIT is sent; the parent continues it after `stop` ms (the attempt
// began a few ms earlier, so a stop near 480 ms lets the bound fire on SIGCONT before the COMMIT's
// answer is read, while the server's idle-in-transaction timeout of 500 ms has not yet ended the
// session). Prints, per trial, what the caller was told and the group's epoch afterwards; a "lost"
// trial is one told "timed out" whose join committed (epoch 2). Runs against a build (default
// dist/src; MG_BUILD=/path/to/other/build/src to compare).
//
//   npm run build && DATABASE_URL=postgres://... node bench/repro/sigstop-commit.mjs [trials=10]
import { spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import * as path from "node:path"
import * as readline from "node:readline"
import { fileURLToPath, pathToFileURL } from "node:url"

const build = path.resolve(process.env.MG_BUILD ?? fileURLToPath(new URL("../../dist/src", import.meta.url)))

if (process.argv[2] === "child") {
  const { SqlClient } = await import("@effect/sql")
  const { PgClient } = await import("@effect/sql-pg")
  const { Effect, Either, Layer, Redacted } = await import("effect")
  const Store = await import(pathToFileURL(path.join(build, "PgMembershipStore.js")).href)
  const Notifier = await import(pathToFileURL(path.join(build, "internal/pg/notifier.js")).href)
  let armed = false
  const program = Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const store = yield* Store.make({
      statementTimeout: "500 millis",
      onStatement: (operation, step) =>
        armed && operation === "join" && step === "commit"
          ? Effect.sync(() => {
            process.stdout.write(`STOPPING ${process.pid}\n`)
            process.kill(process.pid, "SIGSTOP")
          })
          : Effect.void
    })
    const other = yield* Store.make()
    const groupId = `repro-sigstop-${randomUUID().slice(0, 8)}`
    const info = (name) => ({ memberId: randomUUID(), name, host: "h", pid: process.pid })
    yield* other.join(groupId, info("a"), 10_000)
    armed = true
    const joined = yield* Effect.either(store.join(groupId, info("b"), 10_000))
    armed = false
    // The stopped session may have been ended by the server: its pooled connection fails once.
    const [g] = yield* Effect.retry(sql`SELECT epoch FROM modulo_group.groups WHERE group_id = ${groupId}`, { times: 3 })
    yield* Effect.retry(sql`DELETE FROM modulo_group.groups WHERE group_id = ${groupId}`, { times: 3 })
    console.log(`RESULT ${JSON.stringify({ told: Either.isLeft(joined) ? joined.left.message : `joined in epoch ${joined.right.epoch}`, epoch: Number(g.epoch) })}`)
  }).pipe(
    Effect.scoped,
    Effect.provide(Notifier.layer.pipe(Layer.provideMerge(PgClient.layer({ url: Redacted.make(process.env.DATABASE_URL) }))))
  )
  await Effect.runPromise(program)
  process.exit(0)
}

const trials = Number(process.argv[2] ?? 10)
const stops = [476, 480, 484, 488, 492]
const trial = (stopMs) =>
  new Promise((resolve) => {
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url), "child"], { stdio: ["ignore", "pipe", "inherit"] })
    let result
    readline.createInterface({ input: child.stdout }).on("line", (line) => {
      const stopping = /^STOPPING (\d+)/.exec(line)
      if (stopping) setTimeout(() => process.kill(Number(stopping[1]), "SIGCONT"), stopMs)
      if (line.startsWith("RESULT ")) result = JSON.parse(line.slice(7))
    })
    child.on("exit", () => resolve(result))
  })
const counts = { joined: 0, lost: 0, notCommitted: 0, other: 0 }
for (let i = 0; i < trials; i++) {
  const stopMs = stops[i % stops.length]
  const r = await trial(stopMs)
  const kind = r === undefined
    ? "other"
    : r.told.startsWith("joined") && r.epoch === 2
    ? "joined"
    : /timed out/.test(r.told) && r.epoch === 2
    ? "lost"
    : r.epoch === 1
    ? "notCommitted"
    : "other"
  counts[kind]++
  console.log(JSON.stringify({ stopMs, ...r, kind }))
}
console.log(JSON.stringify({ build, trials, ...counts }))
