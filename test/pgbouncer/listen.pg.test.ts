/**
 * LISTEN behind PgBouncer. In transaction mode LISTEN is accepted but nothing is delivered: the
 * notifier detects it (its self-test), says so once, and the members poll; with `listenUrl` the
 * LISTEN connection goes straight to PostgreSQL and notifications work again. In session mode the
 * self-test passes and the pooled connection is used.
 */
import { PgClient } from "@effect/sql-pg"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Exit, Layer, Logger, Redacted, Scope } from "effect"
import * as Membership from "../../src/Membership.js"
import * as MembershipConfig from "../../src/MembershipConfig.js"
import type { MembershipConfigInput } from "../../src/MembershipConfig.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, randomGroupId } from "../support/Database.js"
import { exactCover, makeRecorder } from "../support/Recorder.js"
import * as Bouncer from "./pgbouncer.js"
import { waitFor as waitForIn } from "../support/Wait.js"

const installed = Bouncer.pgbouncerBinary() !== undefined
if (!installed) console.log(Bouncer.skipMessage)

let transaction: Bouncer.PgBouncer | undefined
let session: Bouncer.PgBouncer | undefined

const client = (url: () => string) =>
  Layer.unwrapEffect(Effect.sync(() => PgClient.layer({ url: Redacted.make(url()), applicationName: "modulo-group-test" })))

/** The store with a notifier the test watches, over a `PgClient` at `url`. */
const storeOver = (url: () => string, options: Notifier.Options = {}) =>
  PgMembershipStore.layerUsingNotifier().pipe(
    Layer.provideMerge(Notifier.layerWith(options)),
    Layer.provideMerge(client(url))
  )

/** Every log line at WARN or above, in order. */
const collectWarnings = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    if (logLevel._tag === "Warning" || logLevel._tag === "Error") {
      lines.push((Array.isArray(message) ? message : [message]).map(String).join(" "))
    }
  })
  return { lines, layer: Logger.add(logger) }
}

// A long heartbeat: a join that converges well under it was announced by a notification.
const slow = { heartbeat: "3 seconds", lease: "10 seconds", fenceMargin: "2 seconds", statementTimeout: "2 seconds" } as const

const waitFor = (done: () => boolean, max: Duration.DurationInput = Duration.seconds(15)) => waitForIn(done, max)

const setup = (prefix: string, base: Partial<MembershipConfigInput> = slow) =>
  Effect.gen(function*() {
    const groupId = randomGroupId(prefix)
    const rec = yield* makeRecorder
    const join = () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const m = yield* Membership.make({ groupId, ...base }).pipe(Scope.extend(scope))
        yield* rec.track(m).pipe(Scope.extend(scope))
        yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
        return m
      })
    return { rec, join }
  })

/** Three members, then a fourth: how long until all four work at [k/4]. */
const joinLatency = (prefix: string) =>
  Effect.gen(function*() {
    const { join, rec } = yield* setup(prefix)
    yield* Effect.forEach(Array.from({ length: 3 }), join, { concurrency: "unbounded" })
    yield* waitFor(() => exactCover(rec.working(), 3), Duration.seconds(20))
    const took = yield* Effect.zipRight(join(), waitFor(() => exactCover(rec.working(), 4), Duration.seconds(20)))
    expect(rec.violations).toEqual([])
    return took
  })

it.effect("MODULO_GROUP_LISTEN_URL is read, kept redacted, and must be a postgres:// URL", () =>
  Effect.gen(function*() {
    const fromEnv = (env: Record<string, string>) =>
      MembershipConfig.fromEnv({ groupId: "g" }).pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)), { pathDelim: "_" }))
      )
    const ok = yield* fromEnv({ MODULO_GROUP_LISTEN_URL: "postgres://u:secret@db:5432/app" })
    expect(Redacted.isRedacted(ok.listenUrl)).toBe(true)
    expect(Redacted.value(ok.listenUrl!)).toBe("postgres://u:secret@db:5432/app")
    expect(String(ok.listenUrl)).not.toContain("secret")
    expect((yield* fromEnv({})).listenUrl).toBeUndefined()
    const bad = yield* Effect.flip(MembershipConfig.make({ groupId: "g", listenUrl: "mysql://u:secret@db/app" }))
    expect(bad._tag).toBe("InvalidConfig")
    expect(bad.message).toContain("listenUrl")
    expect(bad.message).not.toContain("secret")
  }))

describe.skipIf(!installed)("LISTEN behind PgBouncer", () => {
  beforeAll(async () => {
    transaction = await Bouncer.start(databaseUrl(), { poolMode: "transaction", poolSize: 4 })
    session = await Bouncer.start(databaseUrl(), { poolMode: "session", poolSize: 20 })
  })
  afterAll(async () => {
    await transaction?.stop()
    await session?.stop()
  })

  it.live("transaction mode without listenUrl: detected, said once (naming listenUrl), then polling", () => {
    const warnings = collectWarnings()
    return Effect.gen(function*() {
      const took = yield* joinLatency("bouncer-poll")
      const hub = yield* Notifier.Notifier
      expect(hub.pollOnly).toMatch(/did not arrive within 1000 ms/)
      expect(hub.backendPid).toBeUndefined()
      // Polling: the others learn of the join from a heartbeat (3 s), not at once.
      expect(took).toBeGreaterThan(300)
      expect(took).toBeLessThan(3_000 + 2_000)
      console.log(`transaction mode, polling: a join converged in ${took} ms (heartbeat 3 s)`)
      // A second store (another notifier) on the same target in this process: still one warning.
      yield* Effect.scoped(Effect.gen(function*() {
        const other = yield* Layer.build(Notifier.layerWith({ selfTestMs: 1_000 }))
        const scope = yield* Effect.scope
        const hub2 = (yield* Effect.provide(Notifier.Notifier, other))
        yield* Scope.extend(hub2.wakeups(randomGroupId("bouncer-poll-2")), scope)
        yield* waitFor(() => hub2.pollOnly !== undefined)
      }))
      const said = warnings.lines.filter((l) => l.includes("notifications cannot work"))
      expect(said).toHaveLength(1)
      expect(said[0]).toContain(`127.0.0.1:${transaction!.port}/`)
      expect(said[0]).toContain("listenUrl")
      expect(said[0]).toContain("polling")
    }).pipe(
      Effect.scoped,
      Effect.provide(storeOver(() => transaction!.url, { selfTestMs: 1_000 })),
      Effect.provide(warnings.layer)
    )
  })

  it.live("transaction mode with listenUrl (direct): notifications work, a join converges at once", () => {
    const warnings = collectWarnings()
    return Effect.gen(function*() {
      const took = yield* joinLatency("bouncer-listen-url")
      const hub = yield* Notifier.Notifier
      expect(hub.pollOnly).toBeUndefined()
      expect(hub.backendPid).toBeDefined()
      expect(took).toBeLessThan(1_000)
      console.log(`transaction mode, listenUrl: a join converged in ${took} ms (heartbeat 3 s)`)
      expect(warnings.lines.filter((l) => l.includes("notifications cannot work"))).toEqual([])
    }).pipe(
      Effect.scoped,
      Effect.provide(storeOver(() => transaction!.url, { listenUrl: Redacted.make(databaseUrl()) })),
      Effect.provide(warnings.layer)
    )
  })

  it.live("session mode: the self-test passes and notifications go through the pooler", () =>
    Effect.gen(function*() {
      const took = yield* joinLatency("bouncer-session")
      const hub = yield* Notifier.Notifier
      expect(hub.pollOnly).toBeUndefined()
      expect(hub.connects).toBeGreaterThan(0)
      expect(took).toBeLessThan(1_000)
    }).pipe(Effect.scoped, Effect.provide(storeOver(() => session!.url))))

  it.live("PgMembershipStore.layer passes listenUrl to its notifier", () =>
    Effect.gen(function*() {
      const took = yield* joinLatency("bouncer-layer")
      expect(took).toBeLessThan(1_000)
    }).pipe(
      Effect.scoped,
      Effect.provide(
        Layer.unwrapEffect(Effect.sync(() =>
          PgMembershipStore.layer({ listenUrl: databaseUrl() }).pipe(Layer.provideMerge(client(() => transaction!.url)))
        ))
      )
    ))
})
