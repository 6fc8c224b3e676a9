/**
 * Durations on the command line: short forms (`250ms`, `2s`, `1m`, `1m30s`) and Effect's
 * (`250 millis`, `2 seconds`).
 *
 * @internal
 */
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"

const shortUnits: Record<string, (n: number) => Duration.Duration> = {
  ns: (n) => Duration.nanos(BigInt(Math.round(n))),
  us: (n) => Duration.nanos(BigInt(Math.round(n * 1000))),
  "µs": (n) => Duration.nanos(BigInt(Math.round(n * 1000))),
  ms: Duration.millis,
  s: Duration.seconds,
  m: Duration.minutes,
  h: Duration.hours,
  d: Duration.days
}

// \u00b5s is µs, escaped: the bundle is ASCII (cli/bundle.mjs).
const shortPart = /(\d+(?:\.\d+)?)\s*(ns|us|\u00b5s|ms|s|m|h|d)/y
const effectForm = /^\d+(?:\.\d+)?\s+[a-z]+$/

const parseShort = (text: string): Duration.Duration | undefined => {
  const compact = text.replace(/\s+/g, "")
  let total = Duration.zero
  let at = 0
  let parts = 0
  shortPart.lastIndex = 0
  while (at < compact.length) {
    shortPart.lastIndex = at
    const match = shortPart.exec(compact)
    if (match === null) return undefined
    total = Duration.sum(total, shortUnits[match[2]!]!(Number(match[1])))
    at = shortPart.lastIndex
    parts++
  }
  return parts > 0 ? total : undefined
}

/**
 * Parses one duration; `Left` carries a message for a person.
 *
 * @internal
 */
export const parse = (input: string): Either.Either<Duration.Duration, string> => {
  const text = input.trim().toLowerCase()
  let duration: Duration.Duration | undefined = parseShort(text)
  if (duration === undefined && effectForm.test(text)) {
    try {
      duration = Duration.decode(text as Duration.DurationInput)
    } catch {
      duration = undefined
    }
  }
  if (duration === undefined || !Duration.isFinite(duration)) {
    return Either.left(`${JSON.stringify(input)} is not a duration (use e.g. 250ms, 2s, 1m or "250 millis")`)
  }
  if (Duration.toMillis(duration) <= 0) {
    return Either.left(`${JSON.stringify(input)} must be greater than zero`)
  }
  // The library takes no duration under 1 ms, and the command's own loops (`--work-interval`, the
  // demo's `--batch-interval`) ran flat out below it: `--work-interval 100ns` printed tens of
  // thousands of lines a second and starved the member's renewals until it fenced (a review).
  if (Duration.toMillis(duration) < 1) {
    return Either.left(`${JSON.stringify(input)} is shorter than 1ms`)
  }
  return Either.right(duration)
}

/**
 * A `--name <duration>` option with a default, validated while the command line is parsed.
 *
 * @internal
 */
export const option = (name: string, fallback: string, description: string): Options.Options<Duration.Duration> =>
  Options.text(name).pipe(
    Options.withPseudoName("duration"),
    Options.withDescription(`${description} (default ${fallback})`),
    Options.withDefault(fallback),
    Options.mapEffect((text) =>
      Either.match(parse(text), {
        onLeft: (reason) => Effect.fail(ValidationError.invalidValue(HelpDoc.p(`Invalid value for --${name}: ${reason}`))),
        onRight: Effect.succeed
      })
    )
  )

/**
 * An optional `--name <duration>` option: `undefined` when absent (the library's default applies).
 *
 * @internal
 */
export const optionalOption = (name: string, description: string): Options.Options<Duration.Duration | undefined> =>
  Options.text(name).pipe(
    Options.withPseudoName("duration"),
    Options.withDescription(description),
    Options.optional,
    Options.mapEffect((text) =>
      text._tag === "None"
        ? Effect.succeed(undefined)
        : Either.match(parse(text.value), {
          onLeft: (reason) =>
            Effect.fail(ValidationError.invalidValue(HelpDoc.p(`Invalid value for --${name}: ${reason}`))),
          onRight: Effect.succeed
        })
    )
  )

/**
 * Milliseconds as `850ms`, `2.4s`, `3m 5s`.
 *
 * @internal
 */
export const formatMillis = (ms: number): string => {
  // A time set by hand to infinity reaches here as a difference that is not finite.
  if (!Number.isFinite(ms)) return "not a finite time"
  const abs = Math.abs(ms)
  const sign = ms < 0 ? "-" : ""
  if (abs < 1000) return `${sign}${Math.round(abs)}ms`
  if (abs < 60_000) return `${sign}${(abs / 1000).toFixed(1)}s`
  const minutes = Math.floor(abs / 60_000)
  const seconds = Math.round((abs % 60_000) / 1000)
  if (minutes < 60) return `${sign}${minutes}m ${seconds}s`
  return `${sign}${Math.floor(minutes / 60)}h ${minutes % 60}m`
}
