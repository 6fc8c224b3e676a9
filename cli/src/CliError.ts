/**
 * Errors of the command-line tool, how they are shown (one line on stderr; the full cause with
 * `--verbose`), and the exit codes.
 *
 * @since 0.1.0
 * @internal
 */
import * as ValidationError from "@effect/cli/ValidationError"
import * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as HashMap from "effect/HashMap"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"

/**
 * Exit codes: 0 success (also after Ctrl-C / SIGTERM, except for `migrate` before the schema is in
 * place), 1 runtime failure, 2 bad input.
 *
 * @since 0.1.0
 * @internal
 */
export const ExitCodes = { ok: 0, failure: 1, usage: 2 } as const

/**
 * A failure already explained to the user in one line.
 *
 * @since 0.1.0
 * @internal
 */
export class CliError extends Data.TaggedError("CliError")<{
  readonly message: string
  readonly exitCode: number
  readonly cause?: unknown
}> {}

/**
 * The process must exit with `code`; the reason has been printed.
 *
 * @since 0.1.0
 * @internal
 */
export class Exit extends Data.TaggedError("Exit")<{ readonly code: number }> {}

/**
 * @since 0.1.0
 * @internal
 */
export const fail = (message: string, cause?: unknown, exitCode: number = ExitCodes.failure) =>
  new CliError({ message, exitCode, cause })

/**
 * The most useful text of an error from `pg`, Node's net stack or Effect, with its SQLSTATE.
 *
 * @since 0.1.0
 * @internal
 */
export const describe = (error: unknown): string => {
  const seen = new Set<unknown>()
  let current: unknown = error
  // Walk down `cause` chains (SqlError -> pg error) to the most specific message.
  let best: string | undefined = undefined
  while (current !== undefined && current !== null && !seen.has(current)) {
    seen.add(current)
    const e = current as { message?: unknown; code?: unknown; errors?: unknown; cause?: unknown }
    if (Array.isArray(e.errors) && e.errors.length > 0) {
      // AggregateError (e.g. ECONNREFUSED on both ::1 and 127.0.0.1): its own message is empty.
      const parts = [...new Set(e.errors.map((x) => describe(x)))]
      return parts.join("; ")
    }
    if (typeof e.message === "string" && e.message.length > 0) {
      best = typeof e.code === "string" && /^[0-9A-Z]{5}$/.test(e.code) ? `${e.message} (SQLSTATE ${e.code})` : e.message
    }
    current = e.cause
  }
  return best ?? String(error)
}

/**
 * The one-line message of an error as `report` prints it (without the `modulo-group: ` prefix), and
 * its exit code.
 *
 * @since 0.1.0
 * @internal
 */
export const knownMessage = (error: unknown): { message: string; code: number } => {
  const tag = (error as { _tag?: unknown })?._tag
  const message = (error as { message?: unknown })?.message
  const text = typeof message === "string" && message.length > 0 ? message : String(error)
  switch (tag) {
    case "CliError":
      return { message: text, code: (error as CliError).exitCode }
    case "InvalidConfig":
    case "InvalidGroupId":
      return { message: text, code: ExitCodes.usage }
    case "DatabaseUnavailable":
    case "SchemaMismatch":
    case "StoreError":
      return { message: text, code: ExitCodes.failure }
    case "SqlError":
      return { message: `database error: ${describe(error)}`, code: ExitCodes.failure }
    default:
      return { message: `unexpected error: ${describe(error)}`, code: ExitCodes.failure }
  }
}

const write = (text: string) => {
  process.stderr.write(text.endsWith("\n") ? text : `${text}\n`)
}

/**
 * Prints a failure in one line (plus the full cause with `verbose`) and fails with `Exit`.
 * Interruption (Ctrl-C, SIGTERM) passes through untouched: it is a normal way to stop.
 *
 * @since 0.1.0
 * @internal
 */
export const report = (verbose: boolean) =>
<A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, Exit, R> =>
  Effect.catchAllCause(effect, (cause) => {
    if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause as Cause.Cause<never>)
    const failure = Option.orElse(Cause.failureOption(cause), () => Cause.dieOption(cause))
    const error = Option.getOrElse(failure, () => new Error("interrupted"))
    if (error instanceof Exit) return Effect.fail(error)
    const { code, message } = knownMessage(error)
    return Effect.sync(() => {
      write(`modulo-group: ${message}`)
      if (verbose) write(Cause.pretty(cause, { renderErrorCause: true }))
      else if (Option.isSome(Cause.dieOption(cause))) write("(run with --verbose for details)")
    }).pipe(Effect.zipRight(Effect.fail(new Exit({ code }))))
  })

/**
 * The exit code for how the program ended (`runMain`'s teardown).
 *
 * @since 0.1.0
 * @internal
 */
export const exitCodeOf = (cause: Cause.Cause<unknown>): number => {
  if (Cause.isInterruptedOnly(cause)) return ExitCodes.ok
  // A command that must not exit 0 when interrupted (`migrate`) dies with `Exit`: an interrupted
  // fiber's cause keeps defects and drops failures.
  const died = Cause.dieOption(cause)
  if (Option.isSome(died) && died.value instanceof Exit) return died.value.code
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    if (failure.value instanceof Exit) return failure.value.code
    // @effect/cli has printed its own message (missing argument, unknown option, bad value).
    if (ValidationError.isValidationError(failure.value)) return ExitCodes.usage
  }
  return ExitCodes.failure
}

/**
 * A logger that writes to stderr (stdout is reserved for the command's output, e.g. JSON Lines):
 * one short line per message, or timestamped lines with annotations and causes when verbose.
 *
 * @since 0.1.0
 * @internal
 */
export const stderrLogger = (verbose: boolean) =>
  Logger.make(({ annotations, cause, date, logLevel, message }) => {
    const text = (Array.isArray(message) ? message : [message]).map((m) => (typeof m === "string" ? m : describe(m))).join(
      " "
    )
    if (!verbose) {
      // The library's own messages begin with its name for an app's logs: said once here.
      write(`modulo-group: ${logLevel.label.toLowerCase()}: ${text.replace(/^modulo-group: /, "")}`)
      return
    }
    const notes = HashMap.isEmpty(annotations)
      ? ""
      : " " + [...annotations].map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ")
    write(`${date.toISOString()} ${logLevel.label} ${text}${notes}`)
    if (!Cause.isEmpty(cause)) write(Cause.pretty(cause, { renderErrorCause: true }))
  })

/**
 * Routes logs to stderr: warnings and errors by default, everything from debug up with `--verbose`.
 *
 * @since 0.1.0
 * @internal
 */
export const withLogging = (verbose: boolean) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  effect.pipe(
    Effect.provide(Logger.replace(Logger.defaultLogger, stderrLogger(verbose))),
    Logger.withMinimumLogLevel(verbose ? LogLevel.Debug : LogLevel.Warning)
  )
