/**
 * What the migration tests share: raw connections to a database of their own, a logger that keeps
 * the library's messages, and the wait for the migration to block on a lock.
 */
import { Effect, Logger } from "effect"
import pg from "pg"
import { waitForEffect } from "../support/Wait.js"

/** A raw connection to `url`, closed with the scope. */
export const connect = (url: string, applicationName: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const client = new pg.Client({ connectionString: url, application_name: applicationName })
      client.on("error", () => undefined)
      await client.connect()
      return client
    }),
    (client) => Effect.promise(() => client.end().catch(() => undefined))
  )

export const query = (client: pg.Client, text: string) => Effect.tryPromise(() => client.query(text))

/** A logger that keeps every message in `logs`. */
export const capturedLogs = () => {
  const logs: Array<string> = []
  const capture = Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ message }) => {
      logs.push(Array.isArray(message) ? message.join(" ") : String(message))
    })
  )
  return { logs, capture }
}

/** Until a backend of `applicationName` waits for a lock (seen from `watcher`). */
export const untilWaitingForLock = (watcher: pg.Client, applicationName: string, what: string) =>
  waitForEffect(
    Effect.map(
      query(
        watcher,
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock' AND application_name = '${applicationName}'`
      ),
      (r) => (r.rows[0].n as number) > 0
    ),
    "10 seconds",
    what
  )
