/**
 * One PostgreSQL for the whole test run: `DATABASE_URL` when set, otherwise an
 * embedded PostgreSQL 18 started here and removed at teardown, so `npm test`
 * needs no database installed.
 */
import pg from "pg"
import type { TestProject } from "vitest/node"
import { removeDataDir, startThrowaway } from "../../cli/src/embedded/index.js"

/** The URL without its password, for logs. */
const redact = (url: string): string => {
  try {
    const parsed = new URL(url)
    if (parsed.password !== "") parsed.password = "***"
    return parsed.toString()
  } catch {
    return "(unparseable DATABASE_URL)"
  }
}

/** Fails the run early, with a plain message, when the database is unreachable. */
const serverVersion = async (url: string): Promise<string> => {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 })
  client.on("error", () => undefined)
  try {
    await client.connect()
    const result = await client.query<{ server_version: string }>("SHOW server_version")
    return result.rows[0]?.server_version ?? "unknown"
  } catch (cause) {
    throw new Error(`cannot query the test database at ${redact(url)}: ${String(cause)}`, { cause })
  } finally {
    await client.end().catch(() => undefined)
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env["DATABASE_URL"]
  let url: string
  let teardown = async (): Promise<void> => {}

  if (external !== undefined && external !== "") {
    url = external
    const version = await serverVersion(url)
    console.log(`[modulo-group tests] database: DATABASE_URL ${redact(url)} (PostgreSQL ${version})`)
  } else {
    const startedAt = performance.now()
    const server = await startThrowaway()
    teardown = async () => {
      try {
        await server.stop()
      } finally {
        await removeDataDir(server.dataDir)
      }
    }
    url = server.url
    try {
      const version = await serverVersion(url)
      const seconds = ((performance.now() - startedAt) / 1000).toFixed(1)
      console.log(
        `[modulo-group tests] database: embedded PostgreSQL ${version} on 127.0.0.1:${server.port} (started in ${seconds}s; set DATABASE_URL to use another)`
      )
    } catch (cause) {
      await teardown()
      throw cause
    }
  }

  project.provide("databaseUrl", url)
  // For child processes the tests spawn (CLI runs), which cannot `inject`.
  process.env["DATABASE_URL_RESOLVED"] = url
  return teardown
}
