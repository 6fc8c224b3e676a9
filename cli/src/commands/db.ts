/**
 * `modulo-group db status | stop | url`: the embedded PostgreSQL's lifecycle.
 *
 * @since 0.1.0
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Database from "../Database.js"
import * as Embedded from "../embedded/SharedServer.js"

const writeOut = (text: string) =>
  Effect.sync(() => {
    process.stdout.write(`${text}\n`)
  })

const envNote = (): string | undefined => {
  const env = process.env["DATABASE_URL"]
  return env !== undefined && env !== ""
    ? `note: DATABASE_URL is set (${Database.redact(env)}): commands use it, not this server`
    : undefined
}

/**
 * @since 0.1.0
 * @internal
 */
export const status = (options: { readonly json: boolean }) =>
  Effect.gen(function*() {
    const s = yield* Embedded.status
    const state = Option.getOrUndefined(s.state)
    const pm = Option.getOrUndefined(s.postmaster)
    const running = pm !== undefined
    const port = pm?.port ?? state?.port ?? null
    if (options.json) {
      return yield* writeOut(JSON.stringify({
        running,
        accepting: s.accepting,
        pid: pm?.pid ?? null,
        port,
        version: s.version ?? null,
        url: state !== undefined && port !== null ? Database.redact(Embedded.urlOf(state, port)) : null,
        dir: s.paths.base,
        stateFile: s.paths.stateFile,
        dataDir: state !== undefined ? Embedded.dataDirOf(state) : null,
        logFile: state !== undefined ? Embedded.logFileOf(state) : null
      }))
    }
    const lines: Array<string> = []
    if (state === undefined || !s.initialized) {
      lines.push(
        "embedded PostgreSQL: not set up yet",
        `  dir:   ${s.paths.base}`,
        "  the first command run without DATABASE_URL sets it up and starts it"
      )
    } else {
      lines.push(
        running
          ? `embedded PostgreSQL ${s.version}: running (pid ${pm.pid}, port ${pm.port})${
            s.accepting ? "" : ", not accepting connections"
          }`
          : `embedded PostgreSQL ${s.version}: not running (the next command without DATABASE_URL starts it)`,
        ...(port !== null ? [`  url:   ${Database.redact(Embedded.urlOf(state, port))}   (full: modulo-group db url)`] : []),
        `  data:  ${Embedded.dataDirOf(state)}`,
        `  log:   ${Embedded.logFileOf(state)}`,
        `  state: ${s.paths.stateFile}`
      )
    }
    const note = envNote()
    if (note !== undefined) lines.push(note)
    yield* writeOut(lines.join("\n"))
  })

/**
 * @since 0.1.0
 * @internal
 */
export const stop = (options: { readonly purge: boolean }) =>
  Effect.gen(function*() {
    const r = yield* Embedded.stop(options)
    switch (r._tag) {
      case "NotSetUp":
        return yield* writeOut("embedded PostgreSQL: not set up, nothing to stop")
      case "NotRunning":
        return yield* writeOut(
          r.purged
            ? `embedded PostgreSQL: not running; removed ${r.state.pgDir}`
            : "embedded PostgreSQL: not running"
        )
      case "Stopped":
        return yield* writeOut(
          `embedded PostgreSQL: stopped (pid ${r.pid}, port ${r.port}); ${
            r.purged ? `removed ${r.state.pgDir}` : `data kept in ${Embedded.dataDirOf(r.state)}`
          }`
        )
    }
  })

/**
 * Prints the full URL of the embedded server, starting it if needed: `psql "$(modulo-group db url)"`.
 *
 * @since 0.1.0
 * @internal
 */
export const url = Effect.gen(function*() {
  const ensured = yield* Embedded.ensure
  yield* writeOut(ensured.url)
})
