// modulo-group members in one OS process, driven by the benchmark over stdin/stdout: one member
// (a process member) or many (fiber members sharing one pool, as an app with several members per
// process runs them). Plain JavaScript over the built library, no TypeScript loader needed:
//
//   npm run build && MG_BENCH='{"url":"postgres://...","config":{"groupId":"g"}}' node bench/member.mjs
//   then type `join` (and `leave <id>`, `stats`, ...)
//
// MODULO_GROUP_LIB overrides where the library is loaded from (the bench points it at a snapshot
// of src/ it transpiles at start, so that concurrent rebuilds of dist/ cannot change it mid-run).
//
// stdin, one command a line:
//   join                one member joins
//   grow <n>            n members join at once
//   leave <id>          graceful leave (scope closed); `leave` alone: every member, then exit
//   crash <id>          the member's database calls never return from now on (it hangs like a
//                       killed process; its row stays until its lease expires); its work stops
//                       when it fences itself
//   stats [gc]          counters (after a GC with `gc`, if node runs with --expose-gc)
// stdout, JSON Lines; `t` in absolute ms (performance.timeOrigin + performance.now(), comparable
// across processes on one machine):
//   {"k":"ready"}                                    loaded, pool warm, no member yet
//   {"k":"joining","m":id,"t":..}                    a join begins
//   {"k":"start"|"end","m":id,"e":epoch,"i":index,"n":size,"t":..}   work intervals
//   {"k":"slot-start"|"slot-end","m":id,"s":slot,"g":generation,"t":..}   per-slot work intervals,
//                                                    instead, when the config has `slots` (whileOwning)
//   {"k":"left","m":id,"t":..}
//   {"k":"stats","statements":..,"transactions":..,"rss":..,"heap":..,"members":..,"calls":{..},"busy":..,"cpuMs":..,"loopP99Ms":..}
//   {"k":"call","op":"join"|"heartbeat"|..,"t":..,"ms":..,"e":epoch,"all":allAcked}   each store call
//                                                    as it ends (`t`: its start), only with MG_BENCH_TRACE=1
//   {"k":"statement","t":..,"ms":..,"text":..}      each statement as it ends (`t`: its start), and
//   {"k":"step","op":..,"step":..,"t":..}            the store's steps, and {"k":"notification","t":..}
//                                                    each notification's arrival, only with MG_BENCH_STATEMENTS=1
//                                                    (the notifications alone with MG_BENCH_STATEMENTS=notifications)
// SIGTERM/SIGINT: every member leaves, then the process exits.
// MG_BENCH_LOG=warning: the library's warnings and errors on stderr (otherwise errors only, on stdout,
// where the driver skips them).
// MG_BENCH_WARM=1: before `ready`, one member joins a scratch group of its own, works, and leaves
// (bench/processJoin.mjs `warm`: a join in a process that has run the library's code before).
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Deferred, Effect, Exit, Layer, Logger, LogLevel, ManagedRuntime, Redacted, Scope } from "effect"
import { monitorEventLoopDelay } from "node:perf_hooks"
import * as readline from "node:readline"
import pg from "pg"

const lib = await import(process.env.MODULO_GROUP_LIB ?? new URL("../dist/src/index.js", import.meta.url).href)
const { Membership, MembershipStore, PgMembershipStore } = lib

const options = JSON.parse(process.env.MG_BENCH ?? "{}")
const now = () => performance.timeOrigin + performance.now()
const emit = (o) => process.stdout.write(`${JSON.stringify(o)}\n`)

// Every statement this process sends (pool and LISTEN connection), counted at the driver, and the
// transactions they make: a statement outside BEGIN ... COMMIT/ROLLBACK is one on its own.
let statements = 0
const traceStatements = process.env.MG_BENCH_STATEMENTS === "1"
const traceNotifications = traceStatements || process.env.MG_BENCH_STATEMENTS === "notifications"
let transactions = 0
const inTransaction = new WeakSet()
const query = pg.Client.prototype.query
pg.Client.prototype.query = function(...args) {
  statements++
  const text = typeof args[0] === "string" ? args[0] : args[0]?.text ?? ""
  if (/^\s*(BEGIN|START TRANSACTION)\b/i.test(text)) {
    inTransaction.add(this)
    transactions++
  } else if (/^\s*(COMMIT|ROLLBACK|END)\s*;?\s*$/i.test(text)) inTransaction.delete(this)
  else if (!inTransaction.has(this)) transactions++
  if (!traceStatements) return query.apply(this, args)
  // MG_BENCH_STATEMENTS=1: each statement as it ends, `t` its start (callback and promise forms).
  const t0 = now()
  const said = () => emit({ k: "statement", t: t0, ms: Math.round((now() - t0) * 10) / 10, text: text.replace(/\s+/g, " ").trim().slice(0, 70) })
  const last = args.length - 1
  if (typeof args[last] === "function") {
    const callback = args[last]
    args[last] = (err, res) => {
      said()
      return callback(err, res)
    }
    return query.apply(this, args)
  }
  const result = query.apply(this, args)
  if (typeof result?.then === "function") result.then(said, said)
  return result
}
// MG_BENCH_STATEMENTS=1 or =notifications: each notification as it arrives (any channel, any payload).
if (traceNotifications) {
  const clientEmit = pg.Client.prototype.emit
  pg.Client.prototype.emit = function(event, ...rest) {
    if (event === "notification") emit({ k: "notification", t: now() })
    return clientEmit.call(this, event, ...rest)
  }
}

// Changes that found the group's lock busy (the store's `onStatement` step "busy").
let busy = 0

// `onePool`: one connection for statements and notifications, as a `modulo-group join` process
// (cli/src/Database.ts `memberPool`): a pool of one, never closed for idleness, given to the store as
// `listenPool`. Otherwise a pool of `maxConnections` (default 2) and a LISTEN connection of its own.
const onePool = options.onePool === true
  ? new pg.Pool({ connectionString: options.url, max: 1, idleTimeoutMillis: 0, application_name: "modulo-group-bench-member" })
  : undefined
onePool?.on("error", () => {})

const runtime = ManagedRuntime.make(
  // The store's statement timeout is its own option (PgMembership.layer passes the config's on).
  PgMembershipStore.layer({
    migrate: false,
    statementTimeout: options.config?.statementTimeout,
    listenPool: onePool,
    onStatement: (operation, step) =>
      step === "busy" || traceStatements
        ? Effect.sync(() => {
          if (step === "busy") busy++
          // MG_BENCH_STATEMENTS=1: the store's steps too (each just before its statement is sent).
          if (traceStatements) emit({ k: "step", t: now(), op: operation, step })
        })
        : Effect.void
  }).pipe(
    Layer.provideMerge(
      onePool !== undefined
        ? PgClient.layerFromPool({ acquire: Effect.succeed(onePool) })
        : PgClient.layer({
          url: Redacted.make(options.url),
          maxConnections: options.maxConnections ?? 2,
          idleTimeout: "1 hour",
          applicationName: "modulo-group-bench-member"
        })
    ),
    // MG_BENCH_LOG=warning: the library's warnings too, on stderr (stdout carries the events).
    Layer.provideMerge(process.env.MG_BENCH_LOG === "warning"
      ? Layer.merge(Logger.minimumLogLevel(LogLevel.Warning), Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.logfmtLogger)))
      : Logger.minimumLogLevel(LogLevel.Error))
  )
)

// Store calls of every member here, for diagnosis (each one on stdout with MG_BENCH_TRACE=1).
const trace = process.env.MG_BENCH_TRACE === "1"
const counts = () => ({ calls: 0, failures: 0, ms: 0, maxMs: 0 })
const calls = { join: counts(), heartbeat: counts(), reap: counts(), leave: counts() }

// A member's view of the store: timed; hangs once the member has crashed.
const storeFor = (base, member) => {
  const wrap = (op, call) =>
    Effect.suspend(() => {
      if (member.crashed) return Effect.never
      const t0 = performance.now()
      return call().pipe(
        Effect.onExit((exit) =>
          Effect.sync(() => {
            const c = calls[op]
            const ms = performance.now() - t0
            if (trace) {
              const view = exit._tag === "Success" ? (op === "heartbeat" ? exit.value?.value : exit.value) : undefined
              emit({ k: "call", op, t: now() - ms, ms: Math.round(ms * 10) / 10, e: view?.epoch, all: view?.allAcked })
            }
            c.calls++
            c.ms += ms
            c.maxMs = Math.max(c.maxMs, ms)
            if (exit._tag === "Failure") c.failures++
          })
        )
      )
    })
  return {
    ...base,
    join: (...a) => wrap("join", () => base.join(...a)),
    heartbeat: (...a) => wrap("heartbeat", () => base.heartbeat(...a)),
    reap: (...a) => wrap("reap", () => base.reap(...a)),
    leave: (...a) => wrap("leave", () => base.leave(...a))
  }
}

const members = new Map()

const join = () =>
  runtime.runPromise(Effect.gen(function*() {
    const t = now()
    const scope = yield* Scope.make()
    const member = { crashed: false, scope, id: undefined }
    const base = yield* MembershipStore.MembershipStore
    const service = yield* Membership.make(options.config).pipe(
      Effect.provideService(MembershipStore.MembershipStore, storeFor(base, member)),
      Scope.extend(scope)
    )
    const id = service.memberId
    member.id = id
    members.set(id, member)
    emit({ k: "joining", m: id, t })
    if (options.config?.slots !== undefined) {
      // Slots mode: one work interval per slot (whileOwning).
      const slotMark = (k, o) => Effect.sync(() => emit({ k, m: id, s: o.slot, g: o.generation, t: now() }))
      yield* service.whileOwning((o) =>
        Effect.acquireRelease(slotMark("slot-start", o), () => slotMark("slot-end", o)).pipe(
          Effect.zipRight(Effect.never),
          Effect.scoped
        )
      ).pipe(Scope.extend(scope))
      return
    }
    const mark = (k, a) => Effect.sync(() => emit({ k, m: id, e: a.epoch, i: a.index, n: a.size, t: now() }))
    yield* service.whileAssigned((a) =>
      Effect.acquireRelease(mark("start", a), () => mark("end", a)).pipe(Effect.zipRight(Effect.never), Effect.scoped)
    ).pipe(Scope.extend(scope))
  }))

const leave = async (id) => {
  const member = members.get(id)
  if (member === undefined) return
  members.delete(id)
  await runtime.runPromise(Scope.close(member.scope, Exit.void))
  emit({ k: "left", m: id, t: now() })
}

const crash = (id) => {
  const member = members.get(id)
  if (member === undefined) return
  members.delete(id)
  member.crashed = true
  // Reclaim its fibers; its leave hangs until the leave timeout, as a dead process's would.
  void runtime.runPromise(Scope.close(member.scope, Exit.void)).catch(() => undefined)
}

let exiting
const exit = () =>
  (exiting ??= (async () => {
    await Promise.all([...members.keys()].map(leave))
    await runtime.dispose()
    process.exit(0)
  })())

// Event-loop delay since the previous `stats` (a busy loop delays every member's timers and replies).
const loop = monitorEventLoopDelay({ resolution: 10 })
loop.enable()

const stats = (withGc) => {
  if (withGc && globalThis.gc) {
    globalThis.gc()
    globalThis.gc()
  }
  const m = process.memoryUsage()
  const cpu = process.cpuUsage()
  emit({
    k: "stats",
    statements,
    transactions,
    rss: m.rss,
    heap: m.heapUsed,
    members: members.size,
    calls,
    busy,
    cpuMs: (cpu.user + cpu.system) / 1000,
    loopP99Ms: loop.percentile(99) / 1e6
  })
  loop.reset()
}

const fatal = (e) => {
  console.error(e)
  process.exit(1)
}

// Warm the pool (and migrate-check): a member that joins already has its connection.
await runtime.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT 1`))
if (process.env.MG_BENCH_WARM === "1") {
  await runtime.runPromise(Effect.gen(function*() {
    const scope = yield* Scope.make()
    const service = yield* Membership.make({ ...options.config, groupId: `${options.config.groupId}-warm-${process.pid}` }).pipe(
      Scope.extend(scope)
    )
    const working = yield* Deferred.make()
    yield* service.whileAssigned(() => Deferred.succeed(working, undefined)).pipe(Scope.extend(scope))
    yield* Deferred.await(working)
    yield* Scope.close(scope, Exit.void)
  }))
}
emit({ k: "ready" })

process.on("SIGTERM", exit)
process.on("SIGINT", exit)
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const [command, arg] = line.trim().split(/\s+/)
  switch (command) {
    case "join":
      return void join().catch(fatal)
    case "grow":
      for (let i = 0; i < Number(arg); i++) void join().catch(fatal)
      return
    case "leave":
      return void (arg === undefined ? exit() : leave(arg).catch(fatal))
    case "crash":
      return crash(arg)
    case "stats":
      return stats(arg === "gc")
  }
})
// The parent died: leave.
process.stdin.on("end", exit)
