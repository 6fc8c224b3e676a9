/**
 * The dashboard's HTTP server (node:http): one static page, a JSON API and Server-Sent Events.
 * Read-only: only GET and HEAD are served, and every query is a SELECT.
 *
 * Updates are pushed: every open event stream gets a fresh view when the database notifies one of
 * the groups it shows (a LISTEN connection on their channels, the one the members notify after each
 * change and each completed barrier) and, as a fallback and for the ages and leases, every second.
 *
 * @since 0.1.0
 * @internal
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Runtime from "effect/Runtime"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import pg from "pg"
import { page } from "./page.js"
import * as Queries from "./queries.js"
import { fromChangeLog, renderSvg } from "./timeline.js"

/**
 * A path segment's text, or undefined when its %-escapes are malformed (`%ZZ`): `decodeURIComponent`
 * throws there, and thrown in the request handler it ended the server (any page open in the
 * operator's browser could send such a request to 127.0.0.1: a review).
 */
const decoded = (segment: string): string | undefined => {
  try {
    return decodeURIComponent(segment)
  } catch {
    return undefined
  }
}

/**
 * @since 0.1.0
 * @internal
 */
export interface ServerOptions {
  readonly port: number
  readonly host: string
  /** The database URL, for the LISTEN connection (queries go through the `SqlClient`). */
  readonly databaseUrl: string
  /** How often every stream is refreshed without a notification (default 1 second). */
  readonly pollInterval?: Duration.DurationInput
  /** The timeline's window (default 1 hour). */
  readonly window?: Duration.DurationInput
}

/**
 * @since 0.1.0
 * @internal
 */
export interface Running {
  readonly url: string
  readonly port: number
  /** Whether the LISTEN connection is up (else updates come from polling only). */
  readonly listening: () => boolean
}

const READ_TIMEOUT = Duration.seconds(5)
const OVERVIEW = "*"

const loopbackHosts = new Set(["127.0.0.1", "::1", "localhost"])

/** The host name of a Host header (`[::1]:4100` -> `::1`). */
const hostOf = (header: string | undefined): string => {
  if (header === undefined) return ""
  const m = /^\[([^\]]+)\]|^([^:]+)/.exec(header)
  return (m?.[1] ?? m?.[2] ?? "").toLowerCase()
}

/**
 * Starts the server in the current scope (closed with it, with its streams and LISTEN connection).
 *
 * @since 0.1.0
 * @internal
 */
export const serve = (options: ServerOptions) =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<SqlClient.SqlClient>()
    // A read is never interrupted once sent (an interrupted query makes @effect/sql-pg send
    // pg_cancel_backend(pid), and behind PgBouncer that pid is the pooler's, maybe some other client's
    // backend): it runs in a transaction bounded on the server (statement_timeout), in a fiber of its
    // own; the request stops waiting for it after READ_TIMEOUT.
    const readTimeoutMs = Duration.toMillis(READ_TIMEOUT)
    const bounded = <A, E>(effect: Effect.Effect<A, E, SqlClient.SqlClient>) =>
      Effect.flatMap(SqlClient.SqlClient, (sql) =>
        sql.withTransaction(
          Effect.zipRight(sql`SELECT set_config('statement_timeout', ${String(readTimeoutMs)}, true)`, effect)
        )).pipe(Effect.uninterruptible)
    const run = <A, E>(effect: Effect.Effect<A, E, SqlClient.SqlClient>): Promise<A> =>
      Runtime.runPromise(runtime)(
        Effect.forkDaemon(bounded(effect)).pipe(
          Effect.flatMap((fiber) => Effect.timeout(Fiber.join(fiber), READ_TIMEOUT))
        ) as Effect.Effect<A, unknown, SqlClient.SqlClient>
      )
    const pollMs = Duration.toMillis(Duration.decode(options.pollInterval ?? Duration.seconds(1)))
    const windowMs = Duration.toMillis(Duration.decode(options.window ?? Duration.hours(1)))
    const loopbackOnly = loopbackHosts.has(options.host)

    // --- views ---
    const overview = async () => {
      const installed = await run(Queries.installed)
      if (installed === "none") return { installed, groups: [], total: 0 }
      const list = await run(Queries.groups)
      return { installed, groups: list.groups, total: list.total }
    }
    const detail = async (groupId: string) => {
      const installed = await run(Queries.installed)
      if (installed === "none") return { installed, group: null, timeline: null }
      const group = await run(Queries.group(groupId))
      if (group === undefined) return { installed, group: null, timeline: null }
      if (installed !== "log") return { installed, group, timeline: null }
      const since = group.now - windowMs
      const rows = await run(Queries.changes(groupId, since))
      // The window's whole width when its history is older; else from a little before its first change.
      const first = rows[0]
      const from = first === undefined || first.changedAt < since
        ? since
        : Math.max(since, first.changedAt - Math.max(2_000, (group.now - first.changedAt) / 20))
      const title = from === since
        ? `${groupId}: who held which index, the last ${Math.round(windowMs / 60_000)} min`
        : `${groupId}: who held which index, since its first change in the last ${Math.round(windowMs / 60_000)} min`
      const svg = renderSvg(fromChangeLog(rows, { from, to: group.now, title }))
      return { installed, group, timeline: { svg, changes: rows.filter((r) => r.changedAt >= since).length } }
    }

    // --- event streams ---
    const streams = new Map<string, Set<http.ServerResponse>>()
    const busy = new Set<string>()
    const again = new Set<string>()
    const push = (key: string): void => {
      const subscribers = streams.get(key)
      if (subscribers === undefined || subscribers.size === 0) return
      if (busy.has(key)) {
        again.add(key)
        return
      }
      busy.add(key)
      const view = key === OVERVIEW ? overview() : detail(key)
      view.then(
        (data) => ({ ...data, live: listening ? "listen" : "poll", sentAt: Date.now() }),
        (error) => ({ error: String((error as Error)?.message ?? error), sentAt: Date.now() })
      ).then((data) => {
        const text = `data: ${JSON.stringify(data)}\n\n`
        for (const res of streams.get(key) ?? []) res.write(text)
      }).finally(() => {
        busy.delete(key)
        if (again.delete(key)) push(key)
      })
    }
    const pushAll = () => {
      for (const key of streams.keys()) push(key)
    }

    // --- LISTEN: the channels of the groups on screen ---
    let listening = false
    let client: pg.Client | undefined
    let closed = false
    const channels = new Map<string, string>() // channel -> group id
    const listened = new Set<string>()
    let overviewGroups: ReadonlyArray<string> = []
    const connect = () => {
      if (closed) return
      const c = new pg.Client({ connectionString: options.databaseUrl, application_name: "modulo-group-ui/listen" })
      client = c
      const lost = () => {
        if (client !== c) return
        client = undefined
        listening = false
        listened.clear()
        c.end().catch(() => undefined)
        if (!closed) setTimeout(connect, 2_000).unref()
      }
      c.on("error", lost)
      c.on("end", lost)
      c.on("notification", (n) => {
        const groupId = channels.get(n.channel)
        if (groupId !== undefined) push(groupId)
        push(OVERVIEW)
      })
      c.connect().then(() => {
        listening = true
        return syncChannels()
      }).catch(lost)
    }
    const syncChannels = async () => {
      const c = client
      if (c === undefined || !listening) return
      const wanted = new Map<string, string>()
      const groupsShown = new Set([...streams.keys()].filter((k) => k !== OVERVIEW && (streams.get(k)?.size ?? 0) > 0))
      if ((streams.get(OVERVIEW)?.size ?? 0) > 0) for (const g of overviewGroups.slice(0, 200)) groupsShown.add(g)
      for (const g of groupsShown) wanted.set(Queries.channelFor(g), g)
      for (const [ch, g] of wanted) channels.set(ch, g)
      // Channel names are `mg_` + 32 hex digits (escaped anyway, as the library's notifier does).
      for (const ch of wanted.keys()) {
        if (!listened.has(ch)) {
          listened.add(ch)
          await c.query(`LISTEN ${pg.escapeIdentifier(ch)}`)
        }
      }
      for (const ch of [...listened]) {
        if (!wanted.has(ch)) {
          listened.delete(ch)
          channels.delete(ch)
          await c.query(`UNLISTEN ${pg.escapeIdentifier(ch)}`)
        }
      }
    }
    connect()

    // The fallback (and the clock of the ages): every stream, every `pollMs`.
    const timer = setInterval(() => {
      pushAll()
      if ((streams.get(OVERVIEW)?.size ?? 0) > 0) {
        run(Queries.groups).then((list) => {
          overviewGroups = list.groups.map((g) => g.groupId)
        }, () => undefined)
      }
      syncChannels().catch(() => undefined)
    }, pollMs)

    // --- HTTP ---
    const json = (res: http.ServerResponse, status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" })
      res.end(JSON.stringify(body))
    }
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
      res.setHeader("x-content-type-options", "nosniff")
      res.setHeader("referrer-policy", "no-referrer")
      // Bound to loopback: answer only requests addressed to it (a page elsewhere cannot reach the
      // dashboard through a DNS name that resolves to 127.0.0.1).
      if (loopbackOnly && !loopbackHosts.has(hostOf(req.headers.host))) return json(res, 403, { error: "forbidden host" })
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.setHeader("allow", "GET, HEAD")
        return json(res, 405, { error: "read-only" })
      }
      const url = new URL(req.url ?? "/", "http://localhost")
      const path = url.pathname
      if (path === "/") {
        res.writeHead(200, {
          "content-type": "text/html; charset=utf-8",
          "cache-control": "no-store",
          "content-security-policy":
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'"
        })
        return res.end(page)
      }
      if (path === "/api/groups") {
        return void overview().then((d) => json(res, 200, d), (e) => json(res, 503, { error: String(e?.message ?? e) }))
      }
      const api = /^\/api\/groups\/([^/]+)(\/timeline\.svg)?$/.exec(path)
      if (api !== null) {
        const groupId = decoded(api[1]!)
        if (groupId === undefined) return json(res, 400, { error: "malformed %-escape in the path" })
        return void detail(groupId).then((d) => {
          if (api[2] === undefined) return json(res, d.group === null ? 404 : 200, d)
          if (d.timeline === null) return json(res, 404, { error: "no timeline" })
          res.writeHead(200, { "content-type": "image/svg+xml; charset=utf-8", "cache-control": "no-store" })
          res.end(d.timeline.svg)
        }, (e) => json(res, 503, { error: String(e?.message ?? e) }))
      }
      const events = /^\/events(?:\/([^/]+))?$/.exec(path)
      if (events !== null) {
        const key = events[1] === undefined ? OVERVIEW : decoded(events[1])
        if (key === undefined) return json(res, 400, { error: "malformed %-escape in the path" })
        res.writeHead(200, {
          "content-type": "text/event-stream; charset=utf-8",
          "cache-control": "no-store",
          connection: "keep-alive"
        })
        res.write(`retry: 1000\n\n`)
        const set = streams.get(key) ?? new Set()
        streams.set(key, set)
        set.add(res)
        req.on("close", () => {
          set.delete(res)
          if (set.size === 0) streams.delete(key)
        })
        push(key)
        syncChannels().catch(() => undefined)
        return
      }
      return json(res, 404, { error: "not found" })
    }

    const server = http.createServer(handler)
    const address = yield* Effect.async<AddressInfo, Error>((resume) => {
      server.once("error", (e) => resume(Effect.fail(e)))
      server.listen(options.port, options.host, () => resume(Effect.succeed(server.address() as AddressInfo)))
    })
    yield* Effect.addFinalizer(() =>
      Effect.async<void>((resume) => {
        closed = true
        clearInterval(timer)
        for (const set of streams.values()) for (const res of set) res.end()
        client?.end().catch(() => undefined)
        server.close(() => resume(Effect.void))
        server.closeAllConnections()
      })
    )
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address
    return { url: `http://${host}:${address.port}/`, port: address.port, listening: () => listening } satisfies Running
  })
