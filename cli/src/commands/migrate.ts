/**
 * `modulo-group migrate`: applies the schema, or repairs a damaged one.
 *
 * @since 0.1.0
 * @internal
 */
import type { Option } from "effect"
import * as Effect from "effect/Effect"
import { Migrations } from "modulo-group"
import * as Database from "../Database.js"
import { failsIfInterrupted, writeOut } from "./shared.js"

/**
 * `migrate`: applies pending migrations and repairs a damaged schema (missing tables or columns:
 * every migration is re-applied, in order, under the migration lock), in one transaction.
 *
 * It exits 0 only once the schema is in place: a failure exits 1 with its message, and so does
 * SIGINT/SIGTERM before the transaction committed (it is rolled back), so `migrate && deploy`
 * never deploys onto a missing schema.
 *
 * @since 0.1.0
 * @internal
 */
export const migrate = (options: { readonly databaseUrl: Option.Option<string> }) =>
  Effect.suspend(() => {
    let inPlace = false
    return Effect.gen(function*() {
      const database = yield* Database.resolve(options.databaseUrl)
      const where = Database.redact(database.url)
      const done = yield* Migrations.repair.pipe(Effect.provide(Database.layer(database.url)))
      inPlace = true
      const version = `now at version ${Migrations.schemaVersion}`
      yield* writeOut(
        done.missing.length > 0
          ? `${where}: repaired the damaged schema (it lacked ${done.missing.join(", ")}): re-applied ${
            done.applied.join(", ")
          }; ${version}`
          : done.applied.length > 0
          ? `${where}: applied ${done.applied.join(", ")}; ${version}`
          : `${where}: already at version ${Migrations.schemaVersion}, nothing to do`
      )
    }).pipe(
      // Interrupted (Ctrl-C, SIGTERM) before the schema was in place: that is a failure here.
      failsIfInterrupted(
        "migrate was interrupted before the schema was in place (nothing was applied); run `modulo-group migrate` again",
        () => inPlace
      )
    )
  })
