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
 */
import { PgClient } from "@effect/sql-pg"
import type { Scope } from "effect"
import { Context, Effect, Layer, Queue, Redacted, Stream } from "effect"
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

/** `lost`: why the connection was dropped, given to one subscriber only, so a process logs it once. */
type Waker = (lost?: string) => void

/**
 * The LISTEN connection's state machine, driven by `pg.Client` callbacks and timers. Private to one
 * `Notifier`, which closes it with its scope.
 */
class ListenHub {
  private client: pg.Client | undefined
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

  constructor(private readonly config: pg.ClientConfig, private readonly graceMs: number) {}

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
      this.client?.query(`LISTEN ${pg.escapeIdentifier(channel)}`).catch((error: unknown) =>
        this.drop(this.generation, error instanceof Error ? error.message : "LISTEN failed")
      )
    }
    set.add(wake)
    if (this.client === undefined && this.reconnectTimer === undefined) this.connect()
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
    this.client?.query(`UNLISTEN ${pg.escapeIdentifier(channel)}`).catch(() => {})
    if (this.channels.size === 0) this.close()
  }

  private wakeAll(lost?: string) {
    let first = true
    for (const set of this.channels.values()) {
      for (const wake of set) {
        wake(first ? lost : undefined)
        first = false
      }
    }
  }

  private connect() {
    this.reconnectTimer = undefined
    const generation = ++this.generation
    const client = new pg.Client(this.config)
    this.client = client
    const onDead = (error?: unknown) =>
      this.drop(generation, error instanceof Error ? error.message : "the connection ended")
    client.on("error", onDead)
    client.on("end", onDead)
    client.on("notification", (msg) => {
      this.heard(msg.channel)
      const set = this.channels.get(msg.channel)
      if (set !== undefined) for (const wake of set) wake()
    })
    client
      .connect()
      .then(async () => {
        const res = await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")
        for (const channel of this.channels.keys()) await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`)
        if (generation !== this.generation) return
        this.backendPid = res.rows[0]?.pid
        this.connects++
        this.backoff = 50
        this.resetAnnouncements()
        this.wakeAll()
      })
      .catch(onDead)
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
    this.client.query("SELECT 1").then(done, (error: unknown) => {
      done()
      this.drop(generation, error instanceof Error ? error.message : "health check failed")
    })
  }

  private drop(generation: number, reason: string) {
    if (generation !== this.generation || this.client === undefined) return
    const client = this.client
    this.client = undefined
    this.backendPid = undefined
    this.generation++
    this.resetAnnouncements()
    client.removeAllListeners()
    client.on("error", () => {})
    client.end().catch(() => {})
    if (this.channels.size === 0) return
    // Wake everyone: notifications may have been lost while the connection was down.
    this.wakeAll(reason)
    this.reconnectTimer = setTimeout(() => this.connect(), this.backoff)
    this.backoff = Math.min(this.backoff * 2, 2_000)
  }

  close() {
    clearTimeout(this.reconnectTimer)
    this.reconnectTimer = undefined
    this.resetAnnouncements()
    const client = this.client
    this.client = undefined
    this.backendPid = undefined
    this.generation++
    if (client !== undefined) {
      client.removeAllListeners()
      client.on("error", () => {})
      client.end().catch(() => {})
    }
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
}

/**
 * The store's notifier. `PgMembershipStore.layer` provides its own; build one with `layer` to share
 * it, or to watch it in tests.
 *
 * @since 0.1.0
 * @category tags
 */
export class Notifier extends Context.Tag("modulo-group/PgNotifier")<Notifier, NotifierService>() {}

/**
 * A notifier over the app's `PgClient` connection settings (its own connection, not one of the
 * pool's: a LISTEN connection is held for the notifier's lifetime). Released with the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<NotifierService, never, PgClient.PgClient | Scope.Scope> = Effect.gen(function*() {
  const client = yield* PgClient.PgClient
  // Killed backends are noticed at once ('error'/'end'); the health check is for silent deaths. A
  // notification normally arrives within milliseconds of its commit; a second is ample.
  const hub = yield* Effect.acquireRelease(
    Effect.sync(() => new ListenHub(toClientConfig(client.config), 1_000)),
    (hub) => Effect.sync(() => hub.close())
  )
  return {
    wakeups: (groupId) =>
      Effect.gen(function*() {
        // Sliding: a flood of notifications costs a few queued wake-ups, which the member coalesces.
        const queue = yield* Effect.acquireRelease(Queue.sliding<Wakeup>(4), Queue.shutdown)
        const channel = channelFor(groupId)
        const wake = (lost?: string) => {
          Queue.unsafeOffer(queue, lost === undefined ? {} : { lost })
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
    }
  }
})

/**
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Notifier, never, PgClient.PgClient> = Layer.scoped(Notifier, make)
