/**
 * Which database a command talks to: `--database-url`, else `DATABASE_URL`, else the embedded
 * PostgreSQL shared by every command of this user (see `embedded/SharedServer.ts`).
 *
 * @since 0.1.0
 * @internal
 */
import type { SqlClient } from "@effect/sql"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type { CliError } from "./CliError.js"
import { describe, ExitCodes, fail } from "./CliError.js"
import pg from "pg"

/**
 * @since 0.1.0
 * @internal
 */
export interface Resolved {
  readonly url: string
  readonly source: "flag" | "env" | "embedded"
}

/**
 * The URL with its password hidden, for messages.
 *
 * @since 0.1.0
 * @internal
 */
export const redact = (url: string): string => {
  let parsed: URL | undefined
  try {
    parsed = new URL(url)
  } catch {
    parsed = undefined
  }
  if (parsed !== undefined && (parsed.protocol === "postgres:" || parsed.protocol === "postgresql:")) {
    if (parsed.password !== "") parsed.password = "***"
    return hidePasswordParameters(parsed.toString())
  }
  // Not a URL, or not one of ours: `user:password@` may follow a scheme with or without `//`, or no
  // scheme at all (`admin:secret@host/db` parses with the scheme `admin:`), and a password may hold
  // a `/`. Everything between the user's `:` and the last `@` before the query is hidden.
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url)?.[0] ?? ""
  const rest = url.slice(scheme.length)
  const end = rest.search(/[?#]/)
  const at = (end < 0 ? rest : rest.slice(0, end)).lastIndexOf("@")
  const userinfo = at < 0 ? "" : rest.slice(0, at)
  const colon = userinfo.indexOf(":")
  const hidden = colon < 0 ? rest : `${userinfo.slice(0, colon)}:***${rest.slice(at)}`
  return hidePasswordParameters(scheme + hidden)
}

/** `password=` (and `sslpassword=`) in a URL's query, hidden. */
const hidePasswordParameters = (url: string): string => url.replace(/([?&](?:ssl)?password=)[^&#]*/gi, "$1***")

/**
 * Accepts `postgres://` and `postgresql://` URLs only: `pg` reads anything else as a database name
 * or a socket path and would connect somewhere unexpected.
 *
 * @since 0.1.0
 * @internal
 */
export const validate = (url: string): Effect.Effect<string, CliError> =>
  Effect.suspend(() => {
    const bad = (why: string) =>
      Effect.fail(
        fail(
          `invalid database URL ${JSON.stringify(redact(url))}: ${why} (expected postgres://user:password@host:port/database)`,
          undefined,
          ExitCodes.usage
        )
      )
    let parsed: URL
    try {
      parsed = new URL(url)
    } catch {
      // The URL parser rejects a port above 65535 like any malformed URL: name the port.
      const port = /^[a-z][a-z0-9+.-]*:\/\/(?:[^@/?#]*@)?(?:\[[^\]/?#]*\]|[^:/?#]*):(\d+)(?:[/?#]|$)/i.exec(url)?.[1]
      if (port !== undefined && Number(port) > 65_535) return bad(`port ${port} is out of range (0 to 65535)`)
      return bad("it is not a URL")
    }
    if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
      return bad(`unsupported scheme ${JSON.stringify(parsed.protocol.replace(/:$/, ""))}`)
    }
    try {
      decodeURIComponent(parsed.username)
      decodeURIComponent(parsed.password)
      decodeURIComponent(parsed.pathname)
    } catch {
      return bad("it has a malformed %-escape")
    }
    return Effect.succeed(url)
  })

/**
 * Resolves the database of a command, starting the embedded server when nothing is configured.
 *
 * @since 0.1.0
 * @internal
 */
export const resolve = (flag: Option.Option<string>): Effect.Effect<Resolved, CliError> => {
  if (Option.isSome(flag)) {
    // Given empty (`--database-url "$URL"` with URL unset): refused, not read as "no flag". It fell
    // back to DATABASE_URL or the embedded server, where the other members of the group were not: two
    // groups of one name in two databases, the same indices worked twice (a review).
    if (flag.value === "") {
      return Effect.fail(fail(
        "--database-url is empty (a shell variable that is not set?): give a postgres:// URL, or leave the option " +
          "out to use DATABASE_URL or the embedded server",
        undefined,
        ExitCodes.usage
      ))
    }
    return Effect.map(validate(flag.value), (url) => ({ url, source: "flag" as const }))
  }
  const env = process.env["DATABASE_URL"]
  if (env !== undefined && env !== "") {
    return Effect.map(validate(env), (url) => ({ url, source: "env" as const }))
  }
  // Imported only when needed: the embedded server's code (and its Node modules) stays out of a
  // command that has a URL.
  return Effect.promise(() => import("./embedded/SharedServer.js")).pipe(
    Effect.flatMap((Embedded) => Embedded.ensure),
    Effect.map((server) => ({ url: server.url, source: "embedded" as const }))
  )
}

/**
 * A `PgClient` on `url`; an unreachable server, a bad password or a missing database fail with one
 * line that names the (redacted) URL.
 *
 * @since 0.1.0
 * @internal
 */
export const layer = (
  url: string,
  options: { readonly connectTimeout?: Duration.DurationInput } = {}
): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, CliError> =>
  PgClient.layer({
    url: Redacted.make(url),
    applicationName: "modulo-group-cli",
    connectTimeout: options.connectTimeout ?? Duration.seconds(5)
  }).pipe(
    Layer.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause)
        ? Layer.failCause(cause as Cause.Cause<never>)
        : Layer.fail(fail(`cannot connect to the database at ${redact(url)}: ${describe(Cause.squash(cause))}`, cause))
    )
  )

// A server that is up but will not take this connection now: too many clients (also a role's or a
// database's connection limit), starting up or shutting down; or PgBouncer in front of it at its
// `max_client_conn` (its own errors are all 08P01, in English). Worth waiting for; anything else at
// start (nothing listening, a bad password, a missing database, PgBouncer unable to reach the server)
// fails at once.
const busyCodes = new Set(["53300", "57P03"])
const poolerRefusal = /no more connections allowed/
const busyServer = (error: unknown): string | undefined => {
  let e: unknown = error
  for (let depth = 0; depth < 6 && e !== undefined && e !== null; depth++) {
    const { code, message } = e as { code?: unknown; message?: unknown }
    const busy = typeof code === "string" &&
      (busyCodes.has(code) || (code === "08P01" && poolerRefusal.test(String(message))))
    if (busy) return `${String(message)} (${code})`
    e = (e as { cause?: unknown }).cause
  }
  return undefined
}

/**
 * How long a statement of a `join` process may go unanswered before its connection is taken for
 * dead: twice the statement timeout and a second. Every statement the library sends is bounded on
 * the server (`statement_timeout`, `lock_timeout` set local to its transaction or statement, at most
 * the statement timeout), so one still unanswered by then is on a connection the network dropped
 * (half-open: no FIN, no RST ever reaches the client).
 *
 * @since 0.1.0
 * @internal
 */
export const deadAfterMillis = (statementTimeout: Duration.DurationInput): number =>
  Math.min(2 * Duration.toMillis(Duration.decode(statementTimeout)) + 1_000, 2 ** 31 - 1)

/**
 * The idle time after which the kernel probes a connection (TCP keepalive): a connection whose peer
 * is gone while no statement is outstanding (the LISTEN connection between notifications, the
 * pool's idle connection) then fails on its own instead of at its next statement.
 */
const keepAliveInitialDelayMillis = 10_000

/** A `pg` client as the watchdog reads it: its socket, which `pg-pool` also destroys on a connect timeout. */
interface Socketed {
  readonly connection?: { readonly stream?: { readonly destroy: (error?: Error) => void } }
}

type AnyQuery = (this: unknown, ...args: Array<unknown>) => unknown

/**
 * Watches every connection of `pool` once armed: a statement sent on a connection that has had no
 * answer to any statement for `deadAfterMillis(statementTimeout)` (`boundMs`) gets its socket
 * destroyed, so that the client fails its statements (the caller sees an error, `pg-pool` discards the client, the LISTEN hub reconnects) and
 * the next statement opens a new connection. Said once per connection on stderr, and once more when
 * the pool has a connection again. A statement is timed from when it was sent or, queued behind
 * another on the same connection, from the last answer on it: each one is bounded on the server
 * once it runs, so a connection that answers nothing for `boundMs` is dead. Cursors (`Submittable`
 * queries) are not watched: nothing in a `join` process uses one.
 */
const watchStatements = (pool: pg.Pool, statementTimeout: Duration.Duration) => {
  const boundMs = deadAfterMillis(statementTimeout)
  let armed = false
  let closed: number | undefined = undefined
  pool.on("connect", (client) => {
    // A dead socket is reported to the statements on it (they fail with its error); an 'error' event
    // between the owners' listeners must never be an uncaught exception.
    client.on("error", () => {})
    if (closed !== undefined) {
      process.stderr.write(
        `modulo-group: connected to the database again, ${((performance.now() - closed) / 1000).toFixed(1)} s after the dead connection was closed\n`
      )
      closed = undefined
    }
    let inFlight = 0
    let progress = 0
    let timer: NodeJS.Timeout | undefined = undefined
    let dead = false
    const schedule = (ms: number) => {
      timer = setTimeout(() => check(false), ms)
      timer.unref()
    }
    let confirming = false
    const check = (confirmed: boolean) => {
      timer = undefined
      if (inFlight === 0 || dead) return
      const waited = performance.now() - progress
      if (waited < boundMs) return schedule(boundMs - waited)
      if (!confirmed) {
        // Timers run before I/O: an answer that came while this process was paused or busy past the
        // bound (SIGSTOP, a long synchronous task) is read first, and then the connection is alive.
        confirming = true
        setImmediate(() => {
          confirming = false
          if (timer === undefined) check(true)
        })
        return
      }
      dead = true
      closed = performance.now()
      const waitedS = (waited / 1000).toFixed(1)
      process.stderr.write(
        `modulo-group: a statement got no answer from the database in ${waitedS} s, and the server ends every ` +
          `statement of a member within the statement timeout (${Duration.format(statementTimeout)}): the ` +
          `connection is dead (half-open: the network dropped it, and the client was never told); closed it, and ` +
          `the next statement opens a new one\n`
      )
      ;(client as unknown as Socketed).connection?.stream?.destroy(
        new Error(`closed by modulo-group: no answer in ${waitedS} s, past the statement timeout`)
      )
    }
    const begin = () => {
      if (inFlight++ > 0) return
      progress = performance.now()
      if (timer === undefined && !confirming) schedule(boundMs)
    }
    const answered = () => {
      inFlight--
      progress = performance.now()
    }
    const query = client.query as unknown as AnyQuery
    const watched: AnyQuery = function(this: unknown, ...args) {
      const config = args[0] as { readonly submit?: unknown } | null | undefined
      if (!armed || dead || config === null || config === undefined || typeof config.submit === "function") {
        return query.apply(this, args)
      }
      begin()
      let done = false
      const finish = () => {
        if (done) return
        done = true
        answered()
      }
      try {
        const at = args.findIndex((arg, i) => i > 0 && typeof arg === "function")
        if (at !== -1) {
          const callback = args[at] as AnyQuery
          args[at] = function(this: unknown, ...results: Array<unknown>) {
            finish()
            return callback.apply(this, results)
          }
          return query.apply(this, args)
        }
        const result = query.apply(this, args)
        if (typeof (result as PromiseLike<unknown> | undefined)?.then === "function") {
          ;(result as PromiseLike<unknown>).then(finish, finish)
        } else {
          finish()
        }
        return result
      } catch (error) {
        finish()
        throw error
      }
    }
    ;(client as unknown as { query: AnyQuery }).query = watched
  })
  return Effect.sync(() => {
    armed = true
  })
}

/**
 * The `pg` pool of a `join` process: `maxConnections` statement connections (default 1), opened
 * at start and never closed for idleness, so that a member holds its connections for its life
 * instead of opening them again under load. With one, the member's notifications use it too
 * (`listenPool`): one connection per process. Opening waits while the server refuses connections
 * because it is full or starting (`53300`, `57P03`), or PgBouncer refuses clients (`08P01`, its
 * `max_client_conn`): retried with capped exponential backoff and
 * jitter, said once on stderr, then once more when connected; any other failure is the usual one-line
 * error. Ended with the scope.
 *
 * Its connections use TCP keepalive, and once `watch` has run (after the store's start: its
 * migrations wait for the migration lock as long as it takes) a statement unanswered for
 * `deadAfterMillis(statementTimeout)` has its connection closed (see `watchStatements`).
 *
 * @since 0.1.0
 * @internal
 */
export const memberPool = (
  url: string,
  options: { readonly maxConnections?: number | undefined; readonly statementTimeout: Duration.DurationInput }
) =>
  Effect.gen(function*() {
    const statementTimeout = Duration.decode(options.statementTimeout)
    let watch: Effect.Effect<void> = Effect.void
    const pool = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const pool = new pg.Pool({
          connectionString: url,
          max: Math.max(1, options.maxConnections ?? 1),
          idleTimeoutMillis: 0,
          connectionTimeoutMillis: 5_000,
          keepAlive: true,
          keepAliveInitialDelayMillis,
          application_name: "modulo-group-cli"
        })
        // An idle connection that dies (a killed backend) is replaced on demand; never a crash.
        pool.on("error", () => {})
        watch = watchStatements(pool, statementTimeout)
        return pool
      }),
      (pool) => Effect.promise(() => pool.end()).pipe(Effect.interruptible, Effect.timeoutOption(1_000))
    )
    let refused: { readonly since: number; readonly reason: string } | undefined = undefined
    let delay = 100
    while (true) {
      // Opening a connection is the check (no statement: one round trip fewer before the first event).
      const result = yield* Effect.either(Effect.tryPromise(() => pool.connect().then((client) => client.release())))
      if (result._tag === "Right") break
      const reason = busyServer(result.left.error)
      if (reason === undefined) {
        return yield* Effect.fail(
          fail(`cannot connect to the database at ${redact(url)}: ${describe(result.left.error)}`, result.left)
        )
      }
      if (refused === undefined) {
        refused = { since: Date.now(), reason }
        yield* Effect.logWarning(`modulo-group: the database refuses connections (${reason}); retrying with backoff`)
      }
      yield* Effect.sleep(Duration.millis(delay / 2 + Math.random() * (delay / 2)))
      delay = Math.min(delay * 2, 5_000)
    }
    if (refused !== undefined) {
      yield* Effect.logWarning(
        `modulo-group: connected to the database after ${((Date.now() - refused.since) / 1000).toFixed(1)} s of refusals`
      )
    }
    return { pool, watch }
  })

/**
 * A `PgClient` over a pool made by `memberPool` (which owns its lifecycle).
 *
 * @since 0.1.0
 * @internal
 */
export const layerFromPool = (pool: pg.Pool): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, CliError> =>
  PgClient.layerFromPool({ acquire: Effect.succeed(pool) }).pipe(
    Layer.catchAllCause((cause) =>
      Cause.isInterruptedOnly(cause)
        ? Layer.failCause(cause as Cause.Cause<never>)
        : Layer.fail(fail(`cannot use the database: ${describe(Cause.squash(cause))}`, cause))
    )
  )
