/**
 * What the read-only commands (`status`, `groups`) and `migrate` share: bounded reads, the schema
 * check, and plain-text output.
 *
 * @since 0.1.0
 * @internal
 */
import type { SqlClient } from "@effect/sql"
import type * as Statement from "@effect/sql/Statement"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { type MembershipError, Migrations } from "modulo-group"
import { Exit as CliExit, ExitCodes, fail } from "../CliError.js"

/** Columns padded to their widest cell, two spaces apart; the last one unpadded. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")
  return [line(header), ...rows.map(line)].join("\n")
}

const READ_TIMEOUT = Duration.seconds(5)

/** Every read of `status` and `groups` is bounded: a view of a stuck database says so. */
export const bounded = <A, E, R>(what: string, effect: Effect.Effect<A, E, R>) =>
  Effect.timeoutFail(effect, {
    duration: READ_TIMEOUT,
    onTimeout: () => fail(`reading ${what} timed out after ${Duration.format(READ_TIMEOUT)}`)
  })

/**
 * Whether the schema can be read: `false` when it is not installed (nobody has joined yet); fails
 * with `SchemaMismatch` when it is another version or damaged (a table or column missing).
 */
export const schemaReady: Effect.Effect<boolean, MembershipError.SchemaMismatch | MembershipError.DatabaseUnavailable, SqlClient.SqlClient> = Effect.gen(function*() {
  const found = yield* Migrations.installedVersion
  if (found === 0) return false
  yield* Migrations.check
  return true
})

/**
 * Text from a row, for the terminal: its control characters as `?`. Anyone who can write the tables
 * can put an escape sequence in a group id, a name or a host (the library refuses them in what it
 * writes), and one printed as it is drives the operator's terminal.
 */
// eslint-disable-next-line no-control-regex
export const printable = (text: string): string => text.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?")

/** A time from a row as ISO 8601, or `null` when it is not a finite time (`infinity`, set by hand). */
export const isoOrNull = (time: Date): string | null => (Number.isNaN(time.getTime()) ? null : time.toISOString())

/** Milliseconds for JSON output, whole (the database's clock arithmetic gives fractions); null stays null. */
export const wholeMs = (ms: number | null | undefined): number | null =>
  ms == null ? null : Number.isFinite(ms) ? Math.round(ms) : ms

/** As `isoOrNull`, for text. */
export const timeText = (time: Date): string => isoOrNull(time) ?? "not a finite time"

/** A bigint column (a string from `pg`) or an int as a number. */
export const num = (v: unknown): number => (typeof v === "number" ? v : Number(v))

/** Why there is nothing to show before anyone joined. */
export const NOT_INSTALLED = "the modulo_group schema is not installed yet (any `join`, or `modulo-group migrate`, installs it)"

/** Writes `text` to stdout, ending with one newline. */
export const writeOut = (text: string) =>
  Effect.sync(() => {
    process.stdout.write(text.endsWith("\n") ? text : `${text}\n`)
  })

/** A TCP port option (`--port`, `--metrics-port`): 0 to 65535, else a usage error naming the flag. */
export const checkPort = (flag: string, port: number) =>
  Number.isSafeInteger(port) && port >= 0 && port <= 65_535
    ? Effect.void
    : Effect.fail(fail(`${flag} must be between 0 and 65535, got ${port}`, undefined, ExitCodes.usage))

/**
 * A server's address: not empty, which Node takes for every interface (an adversarial review: an
 * empty `--metrics-host` served the metrics on every interface without a word); every interface is
 * `0.0.0.0` or `::`, said as such.
 *
 * @since 0.1.0
 * @internal
 */
export const checkHost = (flag: string, host: string) =>
  host.trim() !== ""
    ? Effect.void
    : Effect.fail(fail(`${flag} is empty (for every interface give 0.0.0.0 or ::)`, undefined, ExitCodes.usage))

/**
 * A command that must not exit 0 when interrupted (Ctrl-C, SIGTERM) before it is `done` (default:
 * never done): it says `message` on stderr and exits 1, where an interrupted command exits 0. A
 * defect, not a failure: an interrupted fiber's exit keeps defects but drops failures.
 *
 * @since 0.1.0
 * @internal
 */
export const failsIfInterrupted = (message: string, done: () => boolean = () => false) =>
<A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(Effect.exit(restore(effect)), (exit) => {
      if (Exit.isSuccess(exit) || !Cause.isInterruptedOnly(exit.cause) || done()) return exit
      return Effect.zipRight(
        Effect.sync(() => {
          process.stderr.write(`modulo-group: ${message}\n`)
        }),
        Effect.die(new CliExit({ code: ExitCodes.failure }))
      )
    }))

/**
 * A command that reads and prints once (`status`, `groups`): interrupted before it printed, it says
 * so and exits 1, as `migrate` does, not 0 with nothing printed, which a script could not tell from an
 * answer (an adversarial review).
 *
 * @since 0.1.0
 * @internal
 */
export const printsOnce = (command: string) => failsIfInterrupted(`${command} was interrupted before it printed its answer`)

/**
 * Milliseconds from one timestamp to another as float8, in SQL: not finite (Infinity, NaN) when either
 * is infinite (set by hand), where a subtraction of timestamps failed ("cannot subtract infinite
 * timestamps") and hid the whole group behind a database error (a review).
 */
export const msBetween = (sql: SqlClient.SqlClient, from: Statement.Fragment, to: Statement.Fragment): Statement.Fragment =>
  sql`(((extract(epoch FROM ${to}))::float8 OPERATOR(pg_catalog.-) (extract(epoch FROM ${from}))::float8) OPERATOR(pg_catalog.*) 1000::float8)`
