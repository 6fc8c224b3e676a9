/**
 * The PostgreSQL wiring, in one place: `Membership` over the app's `PgClient`, with the store
 * (`PgMembershipStore`: its schema checked or migrated first), the config, and this process's host
 * name and pid for the member rows.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { PgMembership, Work } from "modulo-group"
 *
 * const program = Work.runEvery("5 seconds", (tick) => Effect.log(`items with id % ${tick.size} = ${tick.index}`)).pipe(
 *   Effect.zipRight(Effect.never),
 *   Effect.scoped,
 *   Effect.provide(PgMembership.layer({ groupId: "jobs" }))
 * )
 * ```
 *
 * @since 0.1.0
 */
import type { SqlClient } from "@effect/sql"
import type { PgClient } from "@effect/sql-pg"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as os from "node:os"
import * as Membership from "./Membership.js"
import * as MembershipConfig from "./MembershipConfig.js"
import type { DatabaseUnavailable, InvalidConfig, InvalidGroupId, SchemaMismatch } from "./MembershipError.js"
import type { MembershipStore } from "./MembershipStore.js"
import * as PgMembershipStore from "./PgMembershipStore.js"

/**
 * This Node process's host name and pid, for the member rows and the default name.
 *
 * @since 0.1.0
 * @category layers
 */
export const nodeIdentity: Layer.Layer<never> = Layer.succeed(MembershipConfig.MemberIdentity, {
  host: os.hostname(),
  pid: process.pid,
  newMemberId: Effect.sync(() => globalThis.crypto.randomUUID())
})

/**
 * The store over the app's `PgClient`, set up by `config` (migrations, startup and statement
 * timeouts, the LISTEN connection's `listenUrl`, or `listenPool` to LISTEN on the pool's one
 * connection), for `Membership.join` to share between groups.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerStore = (
  config:
    & Pick<
      MembershipConfig.MembershipConfigInput,
      "migrate" | "startupTimeout" | "statementTimeout" | "listenUrl"
    >
    & Pick<PgMembershipStore.Options, "listenPool"> = {}
): Layer.Layer<MembershipStore, DatabaseUnavailable | SchemaMismatch, PgClient.PgClient | SqlClient.SqlClient> =>
  PgMembershipStore.layer({
    migrate: config.migrate,
    startupTimeout: config.startupTimeout,
    statementTimeout: config.statementTimeout,
    listenUrl: config.listenUrl,
    listenPool: config.listenPool
  })

const wire = (config: MembershipConfig.ResolvedConfig) =>
  Membership.layer.pipe(
    Layer.provide(Layer.mergeAll(layerStore(config), Layer.succeed(MembershipConfig.MembershipConfig, config)))
  )

/**
 * A member over the app's `PgClient`: validates the config (bad config fails before any database
 * call), readies the schema, then joins. Also provides the Node host name and pid to the member.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  input: MembershipConfig.MembershipConfigInput
): Layer.Layer<
  Membership.Membership,
  InvalidConfig | InvalidGroupId | DatabaseUnavailable | SchemaMismatch,
  PgClient.PgClient | SqlClient.SqlClient
> => Layer.unwrapEffect(Effect.map(MembershipConfig.make(input), wire)).pipe(Layer.provide(nodeIdentity))

/**
 * Like `layer`, with the config read from the environment (`MODULO_GROUP_*`, see
 * `MembershipConfig.config`), then `overrides`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFromEnv = (
  overrides: Partial<MembershipConfig.MembershipConfigInput> = {}
): Layer.Layer<
  Membership.Membership,
  InvalidConfig | InvalidGroupId | DatabaseUnavailable | SchemaMismatch,
  PgClient.PgClient | SqlClient.SqlClient
> => Layer.unwrapEffect(Effect.map(MembershipConfig.fromEnv(overrides), wire)).pipe(Layer.provide(nodeIdentity))
