/**
 * Which database a command talks to: `--database-url`, else `DATABASE_URL`, else the embedded
 * PostgreSQL shared by every command of this user (see `embedded/SharedServer.ts`).
 *
 * @since 0.1.0
 * @internal
 */
import type { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Cause, Duration, Effect, Layer, Option, Redacted } from "effect"
import type { CliError } from "./CliError.js"
import { describe, ExitCodes, fail } from "./CliError.js"

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
  try {
    const parsed = new URL(url)
    if (parsed.password !== "") parsed.password = "***"
    return parsed.toString()
  } catch {
    return url.replace(/\/\/[^@/]*@/, "//***@")
  }
}

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
  if (Option.isSome(flag) && flag.value !== "") {
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
