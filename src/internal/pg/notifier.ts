/**
 * The notifier: a scoped service that holds one LISTEN connection for a store, shared by every member
 * (and every group) that uses the store. It connects when the first group subscribes, closes when the
 * last one leaves, and is released with the service's scope at the latest.
 *
 * Not `PgClient.listen`: it swallows its connection's errors, so a killed backend would go silent
 * forever. Here a dead connection ('error'/'end', or a failed health check) is replaced at once and
 * every subscriber is woken, since notifications may have been lost meanwhile.
 *
 * The health check is not periodic (that would cost a transaction per process every interval, more
 * than the heartbeats of a small process): it runs when a heartbeat saw a new epoch and no
 * notification at all arrived on that channel within a grace period after it, the one symptom of a
 * connection that died silently.
 *
 * Payloads are never read: any role that can connect can notify any channel, so a notification is
 * only a reason to ask the database sooner. What arrives proves the connection alive, nothing more.
 *
 * Behind a connection pooler in transaction mode (PgBouncer's `pool_mode = transaction`), LISTEN is
 * accepted but useless: the LISTEN runs on whichever server connection the pooler lends for that one
 * statement, and a notification that reaches that server connection later, while it is not lent to
 * this client, is dropped by the pooler. Such a connection is detected when it is opened: its
 * `BackendKeyData` pid (the pooler's) differs from `pg_backend_pid()` (the server's), and then a
 * notification sent from a second connection does not arrive within `selfTestMs`. The notifier then
 * says so once (a warning naming `listenUrl`), closes the connection and never tries again: members
 * find every change by polling, which is correct on its own (G7), only slower. A direct connection
 * (the pids agree) pays nothing for this; a pooler in session mode passes the test and is used.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import type { Scope } from "effect"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import * as Stream from "effect/Stream"
import { randomBytes } from "node:crypto"
import pg from "pg"
import type { Wakeup } from "../../MembershipStore.js"
import { channelFor } from "./constants.js"

const toClientConfig = (config: PgClient.PgClientConfig): pg.ClientConfig => ({
  ...(config.url ? { connectionString: Redacted.value(config.url) } : {}),
  ...(config.host !== undefined ? { host: config.host } : {}),
  ...(config.port !== undefined ? { port: config.port } : {}),
  ...(config.database !== undefined ? { database: config.database } : {}),
  ...(config.username !== undefined ? { user: config.username } : {}),
  ...(config.password !== undefined ? { password: Redacted.value(config.password) } : {}),
  ...(config.ssl !== undefined ? { ssl: config.ssl } : {}),
  application_name: "modulo-group/listen",
  keepAlive: true,
  keepAliveInitialDelayMillis: 5_000,
  connectionTimeoutMillis: 5_000
})

/** The LISTEN connection's settings when it has a URL of its own (`listenUrl`). */
const toListenConfig = (url: string, config: PgClient.PgClientConfig): pg.ClientConfig => ({
  connectionString: url,
  // Settings a URL cannot carry come from the app's client.
  ...(config.ssl !== undefined ? { ssl: config.ssl } : {}),
  application_name: "modulo-group/listen",
  keepAlive: true,
  keepAliveInitialDelayMillis: 5_000,
  connectionTimeoutMillis: 5_000
})

/** Where a connection goes, without credentials, for messages: `host:port/database`. */
const describeTarget = (config: pg.ClientConfig): string => {
  if (typeof config.connectionString === "string") {
    try {
      const u = new URL(config.connectionString)
      return `${u.hostname}${u.port === "" ? "" : `:${u.port}`}${u.pathname}`
    } catch {
      return "(unparseable URL)"
    }
  }
  return `${config.host ?? "localhost"}:${config.port ?? 5432}/${config.database ?? ""}`
}

/** The listen connection's self-test failed: what the notifier says, once. */
export const pollOnlyMessage = (target: string, reason: string): string =>
  `modulo-group: notifications cannot work through ${target} (${reason}; a connection pooler in ` +
  `transaction mode, such as PgBouncer's pool_mode = transaction?). Members find changes by polling, ` +
  `once a heartbeat: correct, only slower. Set listenUrl (MODULO_GROUP_LISTEN_URL, join --listen-url) ` +
  `to a direct connection to PostgreSQL, or to a session-mode pool, to get notifications back.`

/**
 * `lost`: why the connection was dropped, given to one subscriber only, and only the first time
 * until it is back, so a process logs it once; `restored`: it is back after such a loss (to one
 * subscriber too).
 */
type Waker = (wakeup: Wakeup) => void

/** The LISTEN connection: the hub's own, or the pool's (shared). */
type Conn = pg.Client | pg.PoolClient

// The tail of each connection's queries. pg 8 queues a query sent while another is queued, warning
// that pg 9 will not; the hub's connection gets queries from several places at once (its set-up,
// LISTEN and UNLISTEN as groups come and go, the health check), so they go in turn.
const tails = new WeakMap<Conn, Promise<unknown>>()

/** Runs `query` on `client` once the queries sent to it before have ended (however they ended). */
const inTurn = <A>(client: Conn, query: (client: Conn) => Promise<A>): Promise<A> => {
  const result = (tails.get(client) ?? Promise.resolve()).then(() => query(client))
  tails.set(client, result.catch(() => {}))
  return result
}

/**
 * The LISTEN connection's state machine, driven by `pg.Client` callbacks and timers. Private to one
 * `Notifier`, which closes it with its scope.
 */
class ListenHub {
  private client: Conn | undefined
  private generation = 0
  private readonly channels = new Map<string, Set<Waker>>()
  private reconnectTimer: NodeJS.Timeout | undefined
  /** The generation whose health check is in flight, if any. */
  private probing: number | undefined
  /** Per channel: the highest epoch a heartbeat has seen (undefined until a baseline). */
  private readonly seen = new Map<string, number>()
  /** Per channel: a grace period running since a heartbeat saw a new epoch. */
  private readonly pending = new Map<string, NodeJS.Timeout>()
  private backoff = 50
  /** Times the connection was (re)established; read by tests. */
  connects = 0
  /** Backend pid of the live connection, if any; read by tests. */
  backendPid: number | undefined

  /** Health checks run so far; read by tests. */
  probes = 0

  /** Why notifications cannot work over this connection (the self-test failed): the hub then stays closed. */
  pollOnly: string | undefined

  /** LISTEN is set up on a live connection: notifications reach the members. */
  listening = false

  /** Whether the connection-loss reason was handed out since the last connect (said once). */
  private lossReported = false
  /** Shared: a connection is being borrowed from the pool to set it up. */
  private borrowing = false

  constructor(
    private readonly config: pg.ClientConfig,
    private readonly graceMs: number,
    private readonly selfTestMs: number,
    private readonly onPollOnly: (reason: string) => void,
    /**
     * LISTEN on this pool's connection (a pool of one) instead of a connection of the hub's own: one
     * connection per process for statements and notifications. The pool owns the connection; the
     * hub only borrows it (`pool.connect`) to send LISTEN and UNLISTEN, never inside anyone's
     * transaction, and hears its notifications between the statements of others.
     */
    private readonly pool?: pg.Pool | undefined
  ) {}

  /**
   * Runs `query` on the listening connection: directly on a connection of the hub's own; borrowed
   * from the pool when shared (if the pool lends another connection, the listening one is gone).
   */
  private onListening(generation: number, query: (client: Conn) => Promise<unknown>): Promise<void> {
    const client = this.client
    if (client === undefined) return Promise.resolve()
    if (this.pool === undefined) return inTurn(client, query).then(() => {})
    return this.pool.connect().then(async (lent) => {
      if ((lent as Conn) !== client) {
        lent.release()
        if (generation === this.generation) this.drop(generation, "the pool replaced its connection")
        return
      }
      try {
        await query(lent)
        lent.release()
      } catch (error) {
        lent.release(error instanceof Error ? error : undefined)
        throw error
      }
    })
  }

  /**
   * A heartbeat (the database, not a notification) saw `epoch` on `channel`. The first one sets the
   * baseline; a later, higher one starts a grace period that any notification on the channel ends;
   * if none arrives, the connection is checked.
   */
  observed(channel: string, epoch: number) {
    if (this.backendPid === undefined || !this.channels.has(channel)) return
    const known = this.seen.get(channel)
    this.seen.set(channel, Math.max(known ?? epoch, epoch))
    // A grace period already running is not restarted: steady changes with no notification must
    // still end in a check.
    if (known === undefined || epoch <= known || this.pending.has(channel)) return
    const generation = this.generation
    const timer = setTimeout(() => {
      this.pending.delete(channel)
      this.probe(generation)
    }, this.graceMs)
    timer.unref()
    this.pending.set(channel, timer)
  }

  /** Something arrived on `channel`: the connection is alive. Its payload is not read. */
  private heard(channel: string) {
    clearTimeout(this.pending.get(channel))
    this.pending.delete(channel)
  }

  /** Forget the baselines: after a reconnect the next heartbeat sets new ones. */
  private resetAnnouncements() {
    for (const timer of this.pending.values()) clearTimeout(timer)
    this.pending.clear()
    this.seen.clear()
  }

  add(channel: string, wake: Waker) {
    let set = this.channels.get(channel)
    if (set === undefined) {
      set = new Set()
      this.channels.set(channel, set)
      if (this.pollOnly !== undefined) return void set.add(wake)
      const generation = this.generation
      this.onListening(generation, (client) => client.query(`LISTEN ${pg.escapeIdentifier(channel)}`)).catch(
        (error: unknown) => this.drop(generation, error instanceof Error ? error.message : "LISTEN failed")
      )
    }
    set.add(wake)
    if (this.client === undefined && this.reconnectTimer === undefined && this.pollOnly === undefined && !this.borrowing) {
      this.connect()
    }
  }

  remove(channel: string, wake: Waker) {
    const set = this.channels.get(channel)
    if (set === undefined) return
    set.delete(wake)
    if (set.size > 0) return
    this.channels.delete(channel)
    this.seen.delete(channel)
    clearTimeout(this.pending.get(channel))
    this.pending.delete(channel)
    if (this.channels.size === 0) return this.close()
    this.onListening(this.generation, (client) => client.query(`UNLISTEN ${pg.escapeIdentifier(channel)}`)).catch(
      () => {}
    )
  }

  private wakeAll(lost?: string, restored?: boolean) {
    let first = true
    const listening = this.listening
    for (const set of this.channels.values()) {
      for (const wake of set) {
        wake(first ? { lost, restored, listening } : { listening })
        first = false
      }
    }
  }

  private connect() {
    this.reconnectTimer = undefined
    const generation = ++this.generation
    const onDead = (error?: unknown) =>
      this.drop(generation, error instanceof Error ? error.message : "the connection ended")
    const listen = (client: Conn) => {
      this.client = client
      client.on("error", onDead)
      client.on("end", onDead)
      client.on("notification", (msg) => {
        this.heard(msg.channel)
        const set = this.channels.get(msg.channel)
        if (set !== undefined) for (const wake of set) wake({ payload: msg.payload, listening: true })
      })
    }
    const ready = async (client: Conn) => {
      const res = await inTurn(client, (c) => c.query<{ pid: number }>("SELECT pg_backend_pid() AS pid"))
      // Not the server's pid: a pooler answered the startup. Does a notification get through it?
      const pooled = (client as unknown as { processID?: number }).processID !== res.rows[0]?.pid
      if (pooled) {
        const failed = await this.selfTest(client)
        if (generation !== this.generation) return false
        if (failed !== undefined) {
          this.giveUp(generation, failed)
          return false
        }
      }
      for (const channel of this.channels.keys()) await inTurn(client, (c) => c.query(`LISTEN ${pg.escapeIdentifier(channel)}`))
      if (generation !== this.generation) return false
      this.backendPid = res.rows[0]?.pid
      return true
    }
    const established = () => {
      this.connects++
      this.backoff = 50
      const restored = this.lossReported
      this.lossReported = false
      this.listening = true
      this.resetAnnouncements()
      this.wakeAll(undefined, restored)
    }
    if (this.pool === undefined) {
      const client = new pg.Client(this.config)
      listen(client)
      client
        .connect()
        .then(async () => {
          if (await ready(client)) established()
        })
        .catch(onDead)
      return
    }
    // Shared: borrow the pool's connection to set it up, then give it back; it stays open in the pool.
    this.borrowing = true
    this.pool.connect().then(
      async (client) => {
        this.borrowing = false
        if (generation !== this.generation) return client.release()
        listen(client)
        try {
          const ok = await ready(client)
          client.release()
          if (ok) established()
        } catch (error) {
          client.release(error instanceof Error ? error : undefined)
          onDead(error)
        }
      },
      (error: unknown) => {
        this.borrowing = false
        // No connection to set up (refused, timed out): try again later, as after a loss.
        if (generation !== this.generation) return
        this.scheduleReconnect(error instanceof Error ? error.message : "no connection")
      }
    )
  }

  /**
   * LISTEN on a channel of its own, NOTIFY it from a second connection, wait up to `selfTestMs`.
   * Returns why notifications cannot work, or undefined when one arrived. A failure to connect or
   * to notify is thrown (the connection is then retried as usual), not taken for a verdict.
   */
  private async selfTest(client: Conn): Promise<string | undefined> {
    const channel = `mg_selftest_${randomBytes(8).toString("hex")}`
    let arrived!: () => void
    const heard = new Promise<void>((resolve) => (arrived = resolve))
    const listener = (msg: pg.Notification) => {
      if (msg.channel === channel) arrived()
    }
    client.on("notification", listener)
    let timer: NodeJS.Timeout | undefined
    try {
      await inTurn(client, (c) => c.query(`LISTEN ${pg.escapeIdentifier(channel)}`))
      const sender = new pg.Client(this.config)
      sender.on("error", () => {})
      try {
        await sender.connect()
        await sender.query("SELECT pg_notify($1, 'self-test')", [channel])
      } finally {
        await sender.end().catch(() => {})
      }
      const timedOut = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), this.selfTestMs)
        timer.unref()
      })
      const outcome = await Promise.race([heard, timedOut])
      return outcome === "timeout"
        ? `a notification sent to the LISTEN connection did not arrive within ${this.selfTestMs} ms`
        : undefined
    } finally {
      clearTimeout(timer)
      client.off("notification", listener)
      // Best effort: behind a transaction-mode pooler this may reach another server connection.
      await inTurn(client, (c) => c.query(`UNLISTEN ${pg.escapeIdentifier(channel)}`)).catch(() => {})
    }
  }

  /** Notifications cannot work over this connection: close it for good and say so once. */
  private giveUp(generation: number, reason: string) {
    if (generation !== this.generation) return
    this.pollOnly = reason
    this.listening = false
    this.close()
    this.onPollOnly(reason)
  }

  // Catches a connection that died silently (no FIN): a query that does not come back.
  private probe(generation: number) {
    if (generation !== this.generation || this.client === undefined || this.probing === generation) return
    this.probing = generation
    this.probes++
    const done = () => {
      clearTimeout(timeout)
      if (this.probing === generation) this.probing = undefined
    }
    const timeout = setTimeout(() => {
      done()
      this.drop(generation, "health check got no answer in 5 s")
    }, 5_000)
    timeout.unref()
    this.onListening(generation, (client) => client.query("SELECT 1")).then(done, (error: unknown) => {
      done()
      this.drop(generation, error instanceof Error ? error.message : "health check failed")
    })
  }

  private drop(generation: number, reason: string) {
    if (generation !== this.generation || this.client === undefined) return
    const client = this.client
    this.client = undefined
    this.listening = false
    this.backendPid = undefined
    this.generation++
    this.resetAnnouncements()
    client.removeAllListeners("notification")
    client.removeAllListeners("end")
    if (this.pool === undefined) {
      client.removeAllListeners()
      client.on("error", () => {})
      ;(client as pg.Client).end().catch(() => {})
    } else {
      // The pool's connection: the pool closes it if it is broken, and keeps its own error listener.
      client.removeAllListeners("error")
      client.on("error", () => {})
    }
    this.scheduleReconnect(reason)
  }

  /**
   * Reconnects after a loss or a failed attempt, with capped exponential backoff and jitter (so that
   * many processes refused at once do not come back at once). Wakes everyone: notifications may have
   * been lost meanwhile. The reason goes to one subscriber, the first time only, until it is back.
   */
  private scheduleReconnect(reason: string) {
    if (this.channels.size === 0) return
    this.wakeAll(this.lossReported ? undefined : reason)
    this.lossReported = true
    this.reconnectTimer = setTimeout(() => this.connect(), this.backoff / 2 + Math.random() * (this.backoff / 2))
    this.backoff = Math.min(this.backoff * 2, 5_000)
  }

  close() {
    clearTimeout(this.reconnectTimer)
    this.reconnectTimer = undefined
    this.resetAnnouncements()
    const client = this.client
    this.client = undefined
    this.listening = false
    this.backendPid = undefined
    this.generation++
    if (client === undefined) return
    if (this.pool === undefined) {
      client.removeAllListeners()
      client.on("error", () => {})
      ;(client as pg.Client).end().catch(() => {})
      return
    }
    client.removeAllListeners("notification")
    client.removeAllListeners("end")
    client.removeAllListeners("error")
    client.on("error", () => {})
    // Best effort: the connection goes on serving the pool, without the group's channels.
    this.pool.connect().then(
      (lent) => {
        if ((lent as Conn) !== client) return lent.release()
        lent.query("UNLISTEN *").then(() => lent.release(), (error: unknown) => lent.release(error as Error))
      },
      () => {}
    )
  }
}

/**
 * @since 0.1.0
 * @category models
 */
export interface NotifierService {
  /** Wake-ups on the group's channel for as long as the scope lives. */
  readonly wakeups: (groupId: string) => Effect.Effect<Stream.Stream<Wakeup>, never, Scope.Scope>
  /**
   * A heartbeat of `groupId` saw `epoch`: if no notification at all arrives on the group's channel
   * within a grace period after a new epoch, the connection is checked (see `ListenHub.observed`).
   * Nothing when nobody in this store listens to the group.
   */
  readonly observed: (groupId: string, epoch: number) => Effect.Effect<void>
  /** Times the connection was (re)established; for tests. */
  readonly connects: number
  /** Backend pid of the live connection, if any; for tests that kill it. */
  readonly backendPid: number | undefined
  /** Health checks run so far; for tests. */
  readonly probes: number
  /**
   * Why notifications cannot work over the LISTEN connection (its self-test failed: a pooler in
   * transaction mode), once detected; members then poll. Undefined otherwise.
   */
  readonly pollOnly: string | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * The LISTEN connection's own URL (a direct connection to PostgreSQL when the app's `PgClient`
   * goes through a pooler in transaction mode). Default: the app's `PgClient` settings.
   */
  readonly listenUrl?: string | Redacted.Redacted<string> | undefined
  /** How long the self-test of a pooled connection waits for its notification. Default 2 seconds. */
  readonly selfTestMs?: number | undefined
  /**
   * LISTEN on the connection of this `pg` pool (the one the app's `PgClient` was made from, with
   * `PgClient.layerFromPool`) instead of a connection of the notifier's own: one connection for
   * statements and notifications. Only for a pool of one connection (`max: 1`) that does not close
   * it when idle (`idleTimeoutMillis: 0`); ignored otherwise, and when `listenUrl` is set.
   */
  readonly listenPool?: ListenPool | undefined
}

/**
 * A node-postgres `Pool`, as `listenPool` takes it. Typed by the two fields the store checks before
 * it uses the pool (a `pg.Pool` is one) so that the library's declarations need no `@types/pg`.
 *
 * @since 0.1.0
 * @category models
 */
export interface ListenPool {
  readonly options: { readonly max?: number | undefined; readonly idleTimeoutMillis?: number | null | undefined }
  readonly connect: () => Promise<unknown>
}

// One warning per process and connection target, however many stores (members) detect it.
const warned = new Set<string>()

/**
 * The store's notifier. `PgMembershipStore.layer` provides its own; build one with `layer` to share
 * it, or to watch it in tests.
 *
 * @since 0.1.0
 * @category tags
 */
export class Notifier extends Context.Tag("modulo-group/PgNotifier")<Notifier, NotifierService>() {}

/**
 * A notifier over the app's `PgClient` connection settings, or over `options.listenUrl` (its own
 * connection, not one of the pool's: a LISTEN connection is held for the notifier's lifetime).
 * Released with the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeWith = (
  options: Options = {}
): Effect.Effect<NotifierService, never, PgClient.PgClient | Scope.Scope> =>
  Effect.gen(function*() {
    const client = yield* PgClient.PgClient
    const runtime = yield* Effect.runtime<never>()
    const listenUrl = options.listenUrl === undefined
      ? undefined
      : Redacted.isRedacted(options.listenUrl)
      ? Redacted.value(options.listenUrl)
      : options.listenUrl
    const config = listenUrl === undefined ? toClientConfig(client.config) : toListenConfig(listenUrl, client.config)
    const target = describeTarget(config)
    const onPollOnly = (reason: string) => {
      if (warned.has(target)) return
      warned.add(target)
      Runtime.runFork(runtime)(Effect.logWarning(pollOnlyMessage(target, reason)))
    }
    // Killed backends are noticed at once ('error'/'end'); the health check is for silent deaths. A
    // notification normally arrives within milliseconds of its commit; a second is ample.
    // Anything else that claims these two fields would fail at its first `connect` (LISTEN is
    // sent on what it lends), and the store then polls: it is a pg.Pool or no pool.
    const pool = options.listenPool as pg.Pool | undefined
    const shared = listenUrl === undefined && pool !== undefined && pool.options.max === 1 &&
        pool.options.idleTimeoutMillis === 0
      ? pool
      : undefined
    const hub = yield* Effect.acquireRelease(
      Effect.sync(() => new ListenHub(config, 1_000, options.selfTestMs ?? 2_000, onPollOnly, shared)),
      (hub) => Effect.sync(() => hub.close())
    )
    const service: NotifierService = {
      wakeups: (groupId) =>
        Effect.gen(function*() {
          // Sliding: a flood of notifications costs a few queued wake-ups, which the member coalesces.
          const queue = yield* Effect.acquireRelease(Queue.sliding<Wakeup>(4), Queue.shutdown)
          const channel = channelFor(groupId)
          const wake = (wakeup: Wakeup) => {
            Queue.unsafeOffer(queue, wakeup)
          }
          yield* Effect.acquireRelease(
            Effect.sync(() => hub.add(channel, wake)),
            () => Effect.sync(() => hub.remove(channel, wake))
          )
          return Stream.fromQueue(queue)
        }),
      observed: (groupId, epoch) => Effect.sync(() => hub.observed(channelFor(groupId), epoch)),
      get connects() {
        return hub.connects
      },
      get backendPid() {
        return hub.backendPid
      },
      get probes() {
        return hub.probes
      },
      get pollOnly() {
        return hub.pollOnly
      }
    }
    return service
  })

/**
 * A notifier over the app's `PgClient` connection settings (`makeWith` with no options).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<NotifierService, never, PgClient.PgClient | Scope.Scope> = makeWith()

/**
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Notifier, never, PgClient.PgClient> = Layer.scoped(Notifier, make)

/**
 * A notifier with `options` (its own `listenUrl`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerWith = (options: Options = {}): Layer.Layer<Notifier, never, PgClient.PgClient> =>
  Layer.scoped(Notifier, makeWith(options))
