/**
 * Security: nothing prints or logs a database password. A login role with a distinctive password
 * runs the CLI (`join`, `status`, `groups`, `migrate`, with `--verbose`, so debug logs and full
 * causes are printed) through a normal run, a killed connection, a wrong password and an
 * unreachable server; and members in this process log at debug level through the same faults. The
 * password (raw and %-encoded) appears in no output.
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Cause, Duration, Effect, Layer, Logger, LogLevel, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import * as Membership from "../../src/Membership.js"
import * as PgMembership from "../../src/PgMembership.js"
import * as Migrations from "../../src/Migrations.js"
import { assertBuilt, Member, run } from "../cli/support.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { freshDatabase, serverChecksPasswords, urlWith, waitFor } from "../faults/support.js"
import { serialised } from "../support/Grants.js"

/** Under trust auth a wrong password logs in: then an absent user (with the password) is the failure. */
const checksPasswords = await serverChecksPasswords()
const refused = (url: string, role: string, password: string) => {
  const u = new URL(url)
  u.password = encodeURIComponent(`${password}-wrong`)
  if (!checksPasswords) u.username = `${role}_absent`
  return u.toString()
}

/** A role whose password is easy to find in any output, with the grants members need. */
const roleOn = Effect.acquireRelease(
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const name = `mg_leak_${randomBytes(4).toString("hex")}`
    // '@', ':' and '/' must be %-encoded in a URL: the encoded form must not leak either.
    const password = `Leak-${randomBytes(6).toString("hex")}@:/x`
    yield* sql.unsafe(`CREATE ROLE "${name}" LOGIN PASSWORD '${password}'`)
    return { name, password }
  }),
  ({ name }) => Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`DROP ROLE IF EXISTS "${name}"`)).pipe(Effect.orDie)
)

const setup = Effect.gen(function*() {
  const role = yield* roleOn
  const db = yield* freshDatabase
  yield* Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* Migrations.run
    for (
      const grant of [
        `GRANT USAGE ON SCHEMA modulo_group TO "${role.name}"`,
        `GRANT SELECT, INSERT, UPDATE, DELETE ON modulo_group.groups, modulo_group.members TO "${role.name}"`,
        `GRANT SELECT ON modulo_group.schema_migrations TO "${role.name}"`
      ]
    ) yield* sql.unsafe(serialised(grant))
  }).pipe(Effect.scoped, Effect.provide(db.layer))
  const url = new URL(urlWith({ user: role.name, password: role.password }))
  url.pathname = `/${db.name}`
  const secrets = [role.password, encodeURIComponent(role.password), role.password.slice(0, 17)]
  return { role, db, url: url.toString(), secrets }
})

const expectNoSecret = (text: string, secrets: ReadonlyArray<string>, what: string) => {
  for (const s of secrets) expect(text.includes(s), `${what} contains the password:\n${text.slice(0, 2_000)}`).toBe(false)
}

const terminate = (role: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ n: string }>`
      SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE usename = ${role}`)

it.live("the CLI never prints the password: verbose join, status, groups, migrate; killed connections; bad URLs", () =>
  Effect.gen(function*() {
    assertBuilt()
    const { url, secrets, role } = yield* setup
    const env = { ...process.env, DATABASE_URL: url }
    const group = randomGroupId("leak")
    const outputs: Array<readonly [string, string]> = []

    // A member with --verbose (debug logs, full causes), whose connections are killed twice.
    const member = new Member("leaky", group, ["--verbose", "--heartbeat", "200ms", "--lease", "3s", "--fence-margin", "1s", "--statement-timeout", "1s"], env)
    yield* Effect.addFinalizer(() => Effect.sync(() => member.kill("SIGKILL")))
    yield* Effect.promise(() => member.waitFor((e) => e.event === "work", 30_000, "a work line"))
    for (let i = 0; i < 2; i++) {
      const killed = yield* terminate(role.name)
      expect(Number(killed[0]!.n)).toBeGreaterThan(0)
      yield* Effect.sleep(Duration.millis(800))
    }
    // Its connections come back and it works again.
    const before = member.events.length
    yield* Effect.promise(() =>
      member.waitFor((e) => e.event === "work" && member.events.indexOf(e) >= before, 30_000, "work after the kills")
    )
    for (const args of [["status", group, "--verbose"], ["groups", "--verbose"], ["migrate", "--verbose"], ["status", group, "--json"]]) {
      const r = yield* Effect.promise(() => run(args, env))
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(0)
      outputs.push([`${args.join(" ")} stdout`, r.stdout], [`${args.join(" ")} stderr`, r.stderr])
    }
    member.kill("SIGTERM")
    expect((yield* Effect.promise(() => member.exited)).code).toBe(0)
    outputs.push(["join stdout", member.events.map((e) => JSON.stringify(e)).join("\n")], ["join stderr", member.stderr])
    // The killed connections were logged (so the check below looked at real error output).
    expect(member.stderr).toMatch(/terminat|connection|heartbeat failed|Connection/i)

    // Failures: a wrong password (the URL carries the real-looking one), an unreachable server.
    const wrong = refused(url, role.name, role.password)
    const unreachable = new URL(url)
    unreachable.port = "1"
    for (const [what, bad] of [["wrong password", wrong], ["unreachable", unreachable.toString()]] as const) {
      for (const args of [["join", group, "--verbose"], ["status", group, "--verbose"]]) {
        const r = yield* Effect.promise(() => run(args, { ...env, DATABASE_URL: bad }))
        expect(r.code).toBe(1)
        outputs.push([`${what} ${args.join(" ")}`, r.stdout + r.stderr])
      }
    }
    for (const [what, text] of outputs) expectNoSecret(text, secrets, what)
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 120_000)

const lines: Array<string> = []
const capture = Logger.replace(
  Logger.defaultLogger,
  Logger.make(({ annotations, cause, message }) => {
    lines.push(`${String(message)} ${Cause.pretty(cause)} ${JSON.stringify([...annotations])}`)
  })
)

it.live("members log nothing with the password, at debug level, through killed connections and a wrong password", () =>
  Effect.gen(function*() {
    const { url, secrets, role, db } = yield* setup
    const client = PgClient.layer({ url: Redacted.make(url), applicationName: "modulo-group-leak" })
    const owner = (statement: string) =>
      Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(statement)).pipe(Effect.provide(db.layer), Effect.scoped)
    yield* Effect.gen(function*() {
      const m = yield* Membership.Membership
      yield* m.awaitAssigned
      for (let i = 0; i < 2; i++) {
        yield* terminate(role.name).pipe(Effect.provide(PgLive))
        yield* Effect.sleep(Duration.millis(700))
      }
      // Killed idle connections may go unnoticed; a revoked grant makes every renewal fail, logged.
      yield* owner(serialised(`REVOKE UPDATE ON modulo_group.members FROM "${role.name}"`))
      yield* waitFor(() => lines.some((l) => /heartbeat failed/i.test(l)), Duration.seconds(10), "a logged failure")
      yield* owner(serialised(`GRANT UPDATE ON modulo_group.members TO "${role.name}"`))
      yield* m.awaitAssigned
    }).pipe(
      Effect.scoped,
      Effect.provide(PgMembership.layer({ groupId: randomGroupId("leak"), heartbeat: "200 millis", lease: "3 seconds", fenceMargin: "1 second", statementTimeout: "1 second", migrate: false })),
      Effect.provide(client)
    )
    // A wrong password: the error, its cause, and everything logged meanwhile.
    const wrong = refused(url, role.name, role.password)
    const exit = yield* Effect.exit(Effect.scoped(Layer.build(
      PgMembership.layer({ groupId: "g", startupTimeout: "1 second" }).pipe(
        Layer.provide(PgClient.layer({ url: Redacted.make(wrong) }))
      )
    )))
    expect(exit._tag).toBe("Failure")
    if (exit._tag === "Failure") lines.push(Cause.pretty(exit.cause), String((Cause.squash(exit.cause) as Error).message))
    expect(lines.length).toBeGreaterThan(0)
    expectNoSecret(lines.join("\n"), secrets, "logs")
  }).pipe(
    Effect.scoped,
    Effect.provide(capture),
    Effect.provide(PgLive),
    Logger.withMinimumLogLevel(LogLevel.Debug)
  ), 90_000)
