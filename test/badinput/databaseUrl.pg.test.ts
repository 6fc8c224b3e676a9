/**
 * Bad-input catalogue: the database URL. Extends test/Membership.pg.test.ts (refused connection,
 * missing schema, newer schema with migrations on) and test/cli/errors.test.ts (malformed and
 * refused URLs): a wrong password, a missing database, a host that accepts and never answers, a
 * server that hangs up, something that is not PostgreSQL, a URL `pg` cannot parse, and a schema
 * newer than the library with migrations off and from the CLI. Each fails in bounded time with an
 * error that says what is wrong, never a hang, a defect or a password in the message.
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Layer, Redacted } from "effect"
import * as net from "node:net"
import { afterAll, beforeAll, describe, it as vit } from "vitest"
import * as Membership from "../../src/Membership.js"
import * as PgMembership from "../../src/PgMembership.js"
import * as Migrations from "../../src/Migrations.js"
import { assertBuilt, run } from "../cli/support.js"
import { databaseUrl, PgLive, randomGroupId } from "../support/Database.js"
import { fast, freshDatabase, serverChecksPasswords, urlWith } from "../faults/support.js"

const SECRET = "s3cr3t-Pa55word-that-must-never-be-printed"
/** Under trust auth (the CI machine's own PostgreSQL) a wrong password logs in: nothing to test. */
const checksPasswords = await serverChecksPasswords()

/** Builds a member layer over a PgClient on `url`; returns the failure (and how long it took). */
const tryMember = (url: string, input: Partial<Membership.MembershipService["config"]> & { migrate?: boolean } = {}) =>
  Effect.gen(function*() {
    const started = Date.now()
    const exit = yield* Effect.exit(Effect.scoped(Layer.build(
      PgMembership.layer({ groupId: randomGroupId("url"), ...fast, startupTimeout: "2 seconds", ...input }).pipe(
        Layer.provide(PgClient.layer({ url: Redacted.make(url), connectTimeout: "2 seconds" }))
      )
    )))
    const ms = Date.now() - started
    expect(Exit.isFailure(exit), "the layer must fail").toBe(true)
    if (!Exit.isFailure(exit)) throw new Error("unreachable")
    // A failure, not a defect (a bug) nor an interruption.
    expect(Cause.isFailType(exit.cause) || Cause.failures(exit.cause).length > 0, Cause.pretty(exit.cause)).toBe(true)
    expect(Cause.defects(exit.cause).length, Cause.pretty(exit.cause)).toBe(0)
    const error = Cause.squash(exit.cause) as { _tag?: string; message?: string; cause?: { message?: string } }
    // The app's PgClient layer fails first ("PgClient: Failed to connect"), the server's reason in its cause.
    const text = `${error.message ?? ""} ${error.cause?.message ?? ""} ${Cause.pretty(exit.cause)}`
    expect(text).not.toContain(SECRET)
    return { error, text, ms }
  })

/** A TCP server on loopback that does `onSocket` with every connection. */
const fakeServer = (onSocket: (socket: net.Socket) => void) =>
  Effect.acquireRelease(
    Effect.async<{ port: number; server: net.Server; sockets: Set<net.Socket> }>((resume) => {
      const sockets = new Set<net.Socket>()
      const server = net.createServer((socket) => {
        sockets.add(socket)
        socket.on("error", () => undefined)
        socket.on("close", () => sockets.delete(socket))
        onSocket(socket)
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ port: (server.address() as net.AddressInfo).port, server, sockets })))
    }),
    ({ server, sockets }) =>
      Effect.async<void>((resume) => {
        for (const s of sockets) s.destroy()
        server.close(() => resume(Effect.void))
      })
  )

it.live.skipIf(!checksPasswords)("a wrong password fails at once (not retried for the startup timeout) and is not printed", () =>
  Effect.gen(function*() {
    const { text, ms } = yield* tryMember(urlWith({ password: SECRET }))
    expect(text).toMatch(/password authentication failed/)
    expect(ms).toBeLessThan(5_000)
  }))

it.live("an unknown user fails at once", () =>
  Effect.gen(function*() {
    const { text, ms } = yield* tryMember(urlWith({ user: "nobody_here", password: SECRET }))
    expect(text).toMatch(/password authentication failed|role .* does not exist/)
    expect(ms).toBeLessThan(5_000)
  }))

it.live("a missing database fails at once, naming it", () =>
  Effect.gen(function*() {
    const { text, ms } = yield* tryMember(urlWith({ database: "no_such_database_here" }))
    expect(text).toMatch(/database "no_such_database_here" does not exist/)
    expect(ms).toBeLessThan(5_000)
  }))

it.live("a host that accepts and never answers fails after the connect timeout, not never", () =>
  Effect.gen(function*() {
    const { port } = yield* fakeServer(() => undefined)
    const { ms } = yield* tryMember(urlWith({ port, password: SECRET }))
    expect(ms).toBeGreaterThanOrEqual(1_500)
    expect(ms).toBeLessThan(10_000)
  }).pipe(Effect.scoped), 30_000)

it.live("a server that hangs up at once fails in bounded time", () =>
  Effect.gen(function*() {
    const { port } = yield* fakeServer((socket) => socket.destroy())
    const { ms } = yield* tryMember(urlWith({ port, password: SECRET }))
    expect(ms).toBeLessThan(10_000)
  }).pipe(Effect.scoped), 30_000)

it.live("something that is not PostgreSQL (an HTTP server) fails in bounded time", () =>
  Effect.gen(function*() {
    const { port } = yield* fakeServer((socket) =>
      socket.once("data", () => socket.end("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
    )
    const { ms } = yield* tryMember(urlWith({ port, password: SECRET }))
    expect(ms).toBeLessThan(10_000)
  }).pipe(Effect.scoped), 30_000)

it.live("a URL pg cannot use (bad port, not a URL) fails, never hangs or dies", () =>
  Effect.gen(function*() {
    for (const url of [`postgres://postgres:${SECRET}@127.0.0.1:99999/db`, `postgres://postgres:${SECRET}@[::1/db`]) {
      const { ms } = yield* tryMember(url)
      expect(ms).toBeLessThan(10_000)
    }
  }), 40_000)

it.live("a schema newer than the library is refused with migrations off too", () =>
  Effect.gen(function*() {
    const db = yield* freshDatabase
    yield* Effect.gen(function*() {
      yield* Migrations.run
      const sql = yield* SqlClient.SqlClient
      yield* sql`INSERT INTO modulo_group.schema_migrations (version, name) VALUES (${Migrations.schemaVersion + 1}, 'future')`
    }).pipe(Effect.provide(db.layer))
    const { error } = yield* tryMember(db.url, { migrate: false })
    expect(error._tag).toBe("SchemaMismatch")
    expect(error.message).toMatch(/newer than this library supports .*upgrade modulo-group/)
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 30_000)

it.live("a schema that is older (a version row missing) is refused with migrations off", () =>
  Effect.gen(function*() {
    const db = yield* freshDatabase
    yield* Effect.gen(function*() {
      yield* Migrations.run
      const sql = yield* SqlClient.SqlClient
      yield* sql`DELETE FROM modulo_group.schema_migrations`
    }).pipe(Effect.provide(db.layer))
    const { error } = yield* tryMember(db.url, { migrate: false })
    expect(error._tag).toBe("SchemaMismatch")
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 30_000)

describe("the CLI with a bad database (child processes)", () => {
  const USAGE = 2
  const FAILURE = 1
  const env = { ...process.env, DATABASE_URL: databaseUrl() }
  const group = randomGroupId("cli-url")
  let silent: net.Server
  let silentPort = 0
  const newer = { name: "", url: "" }

  beforeAll(async () => {
    assertBuilt()
    silent = net.createServer((socket) => socket.on("error", () => undefined))
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve))
    silentPort = (silent.address() as net.AddressInfo).port
    // A database whose schema is newer than this library.
    await Effect.runPromise(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      newer.name = `mg_${randomGroupId("newer").replace(/-/g, "_")}`
      yield* sql`CREATE DATABASE ${sql(newer.name)}`
      newer.url = urlWith({ database: newer.name })
      yield* Effect.gen(function*() {
        yield* Migrations.run
        const sql2 = yield* SqlClient.SqlClient
        yield* sql2`INSERT INTO modulo_group.schema_migrations (version, name) VALUES (99, 'future')`
      }).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(newer.url) })), Effect.scoped)
    }).pipe(Effect.provide(PgLive), Effect.scoped))
  }, 60_000)

  afterAll(async () => {
    silent?.close()
    if (newer.name !== "") {
      await Effect.runPromise(
        Effect.flatMap(SqlClient.SqlClient, (sql) => sql`DROP DATABASE IF EXISTS ${sql(newer.name)} WITH (FORCE)`).pipe(
          Effect.provide(PgLive),
          Effect.scoped,
          Effect.ignore
        )
      )
    }
  })

  const oneLine = (stderr: string): string => {
    const lines = stderr.split("\n").filter((l) => l.trim() !== "")
    expect(lines, `one line on stderr, got:\n${stderr}`).toHaveLength(1)
    expect(stderr).not.toMatch(/^\s+at /m)
    expect(stderr).not.toContain(SECRET)
    return lines[0]!
  }

  vit.skipIf(!checksPasswords)("a wrong password: exit 1, one line, the password shown as ***", async () => {
    const r = await run(["join", group], { ...env, DATABASE_URL: urlWith({ password: SECRET }) })
    expect(r.code).toBe(FAILURE)
    expect(oneLine(r.stderr)).toMatch(/^modulo-group: cannot connect to the database at postgres:\/\/[^:]+:\*\*\*@.*password authentication failed/)
    expect(r.stdout).not.toContain(SECRET)
  }, 60_000)

  vit("a missing database: exit 1, one line naming it, the password shown as ***", async () => {
    const r = await run(["join", group, "--database-url", urlWith({ database: "nodb_here" })], env)
    expect(r.code).toBe(FAILURE)
    const line = oneLine(r.stderr)
    expect(line).toMatch(/database "nodb_here" does not exist/)
    const password = decodeURIComponent(new URL(databaseUrl()).password)
    if (password !== "") expect(line).not.toContain(password)
  }, 60_000)

  vit("a host that never answers: exit 1 after the 5 s connect timeout", async () => {
    const r = await run(["join", group], { ...env, DATABASE_URL: urlWith({ port: silentPort, password: SECRET }) })
    expect(r.code).toBe(FAILURE)
    expect(oneLine(r.stderr)).toMatch(/^modulo-group: cannot connect to the database at .*:\*\*\*@127\.0\.0\.1:\d+\//)
    expect(r.ms).toBeLessThan(20_000)
  }, 60_000)

  vit("a schema newer than the CLI: exit 1, one line that says to upgrade", async () => {
    const r = await run(["join", group], { ...env, DATABASE_URL: newer.url })
    expect(r.code).toBe(FAILURE)
    expect(oneLine(r.stderr)).toMatch(/newer than this library supports .*upgrade modulo-group/)
    const s = await run(["migrate"], { ...env, DATABASE_URL: newer.url })
    expect(s.code).toBe(FAILURE)
    expect(oneLine(s.stderr)).toMatch(/newer than this library supports/)
  }, 60_000)

  vit("a URL with a bad %-escape or port: exit 2, nothing run", async () => {
    for (const url of [`postgres://u:%zz${SECRET}@127.0.0.1/db`, `postgres://u:${SECRET}@127.0.0.1:99999/db`]) {
      const r = await run(["status", group], { ...env, DATABASE_URL: url })
      expect([USAGE, FAILURE]).toContain(r.code)
      oneLine(r.stderr)
    }
  }, 60_000)
})
