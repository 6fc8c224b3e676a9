/**
 * `modulo-group ui`: a read-only dashboard in the browser, served from this process (see
 * `../ui/server.ts`). Binds to 127.0.0.1 unless told otherwise.
 *
 * @since 0.1.0
 * @internal
 */
import type { Option } from "effect"
import * as Effect from "effect/Effect"
import { fail } from "../CliError.js"
import * as Database from "../Database.js"
import { serve } from "../ui/server.js"
import { checkHost, checkPort, writeOut } from "./shared.js"

/**
 * @since 0.1.0
 * @internal
 */
export interface UiOptions {
  readonly port: number
  readonly host: string
  readonly databaseUrl: Option.Option<string>
}

/**
 * Serves the dashboard until Ctrl-C or SIGTERM.
 *
 * @since 0.1.0
 * @internal
 */
export const ui = (options: UiOptions) =>
  Effect.gen(function*() {
    yield* checkPort("--port", options.port)
    yield* checkHost("--host", options.host)
    const database = yield* Database.resolve(options.databaseUrl)
    yield* Effect.scoped(Effect.gen(function*() {
      const running = yield* serve({ port: options.port, host: options.host, databaseUrl: database.url }).pipe(
        Effect.mapError((e) => fail(`cannot listen on ${options.host}:${options.port}: ${e.message}`, e))
      )
      yield* writeOut(
        `modulo-group ui: ${running.url} (read-only; database ${
          database.source === "embedded" ? "embedded PostgreSQL" : Database.redact(database.url)
        }; Ctrl-C to stop)`
      )
      return yield* Effect.never
    })).pipe(Effect.provide(Database.layer(database.url)))
  })
