/**
 * One LISTEN connection per PgClient, shared by every member in the process.
 *
 * Not `PgClient.listen`: it swallows its connection's errors, so a killed backend would go silent
 * forever. Here a dead connection ('error'/'end', or a failed health check) is replaced at once and
 * every subscriber is woken, since notifications may have been lost meanwhile.
 */
import type { PgClient } from "@effect/sql-pg"
import { Effect, Queue, Redacted, Stream } from "effect"
import { createHash } from "node:crypto"
import pg from "pg"
import { parseWakeup, type Wakeup } from "../MembershipStore.js"

/** Channel names are hashed: group ids never reach an identifier. */
export const channelFor = (groupId: string): string => `mg_${createHash("md5").update(groupId, "utf8").digest("hex")}`

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
type Waker = (payload: string | undefined, lost?: string) => void

class ListenHub {
  private client: pg.Client | undefined
  private generation = 0
  private readonly channels = new Map<string, Set<Waker>>()
  private reconnectTimer: NodeJS.Timeout | undefined
  private healthTimer: NodeJS.Timeout | undefined
  private backoff = 50
  /** Times the connection was (re)established; read by tests. */
  connects = 0
  /** Backend pid of the live connection, if any; read by tests. */
  backendPid: number | undefined

  constructor(private readonly config: pg.ClientConfig, private readonly healthEveryMs: number) {}

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
    this.client?.query(`UNLISTEN ${pg.escapeIdentifier(channel)}`).catch(() => {})
    if (this.channels.size === 0) this.close()
  }

  private wakeAll(lost?: string) {
    let first = true
    for (const set of this.channels.values()) {
      for (const wake of set) {
        wake(undefined, first ? lost : undefined)
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
      const set = this.channels.get(msg.channel)
      if (set !== undefined) for (const wake of set) wake(msg.payload)
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
        this.scheduleHealth(generation)
        this.wakeAll()
      })
      .catch(onDead)
  }

  // Catches a connection that died silently (no FIN): a query that does not come back.
  private scheduleHealth(generation: number) {
    clearTimeout(this.healthTimer)
    this.healthTimer = setTimeout(() => {
      if (generation !== this.generation || this.client === undefined) return
      const timeout = setTimeout(() => this.drop(generation, "health check got no answer in 5 s"), 5_000)
      this.client.query("SELECT 1").then(
        () => {
          clearTimeout(timeout)
          this.scheduleHealth(generation)
        },
        (error: unknown) => {
          clearTimeout(timeout)
          this.drop(generation, error instanceof Error ? error.message : "health check failed")
        }
      )
    }, this.healthEveryMs)
    this.healthTimer.unref()
  }

  private drop(generation: number, reason: string) {
    if (generation !== this.generation || this.client === undefined) return
    const client = this.client
    this.client = undefined
    this.backendPid = undefined
    this.generation++
    clearTimeout(this.healthTimer)
    client.removeAllListeners()
    client.on("error", () => {})
    client.end().catch(() => {})
    if (this.channels.size === 0) return
    // Wake everyone: notifications may have been lost while the connection was down.
    this.wakeAll(reason)
    this.reconnectTimer = setTimeout(() => this.connect(), this.backoff)
    this.backoff = Math.min(this.backoff * 2, 2_000)
  }

  private close() {
    clearTimeout(this.reconnectTimer)
    this.reconnectTimer = undefined
    clearTimeout(this.healthTimer)
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

const hubs = new WeakMap<PgClient.PgClient, ListenHub>()

/** The hub of a client (created on first use); exposed for tests that kill its backend. */
export const hubFor = (client: PgClient.PgClient): ListenHub => {
  let hub = hubs.get(client)
  if (hub === undefined) {
    // Killed backends are noticed at once ('error'/'end'); this slow probe is for silent deaths.
    hub = new ListenHub(toClientConfig(client.config), 30_000)
    hubs.set(client, hub)
  }
  return hub
}

/** Wake-ups on the group's channel for as long as the scope lives. */
export const wakeups = (client: PgClient.PgClient, groupId: string) =>
  Effect.gen(function*() {
    const queue = yield* Effect.acquireRelease(Queue.sliding<Wakeup>(16), Queue.shutdown)
    const hub = hubFor(client)
    const channel = channelFor(groupId)
    const wake = (payload: string | undefined, lost?: string) => {
      Queue.unsafeOffer(queue, lost === undefined ? parseWakeup(payload) : { epoch: undefined, ready: false, lost })
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => hub.add(channel, wake)),
      () => Effect.sync(() => hub.remove(channel, wake))
    )
    return Stream.fromQueue(queue)
  })
