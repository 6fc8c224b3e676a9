/**
 * Security: no string-built SQL in src/, and group ids reach the database only as bound parameters.
 *
 * Static: every call in src/ that sends raw text to a database (`.unsafe`, `.query`,
 * `.executeUnprepared`, `.executeRaw`, `.literal`) has a constant string as its text, or is one of
 * the known, reviewed exceptions below. Everything else is a `sql` tagged template, whose
 * interpolations are parameters (or fragments that are tagged templates themselves).
 *
 * Dynamic: members with a hostile group id run while every SQL text sent by `pg` is recorded; the
 * group id never appears in any text, and LISTEN/UNLISTEN name only `mg_` + 32 hex digits.
 */
import { expect, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import pg from "pg"
import ts from "typescript"
import { exactCover } from "../support/Recorder.js"
import { randomGroupId } from "../support/Database.js"
import { makeGroup, StoreLive, waitFor } from "../faults/support.js"

const srcDir = fileURLToPath(new URL("../../src/", import.meta.url))
// The command-line tool's package (named from src/: `../cli/src/...`).
const cliSrcDir = fileURLToPath(new URL("../../cli/src/", import.meta.url))

/** Reviewed exceptions: file, the exact argument text, and why it is safe. */
const exceptions: ReadonlyArray<{ readonly file: string; readonly arg: string; readonly why: string }> = [
  {
    file: "internal/pg/statements.ts",
    arg: "text",
    why: "applyMigration: the shipped migration files (Migrations.sqlOf), by a name from a constant list"
  },
  {
    file: "internal/pg/transaction.ts",
    arg: "`SAVEPOINT ${savepoint}`",
    why: "a savepoint name of the module's own: modulo_group_, 8 hex digits of a random UUID, a counter"
  },
  {
    file: "internal/pg/transaction.ts",
    arg: "`ROLLBACK TO SAVEPOINT ${savepoint}`",
    why: "the same savepoint"
  },
  {
    file: "internal/pg/transaction.ts",
    arg: "statement",
    why: "endTransaction's `send`: constants of the module only (ROLLBACK AND CHAIN, the RESETs, the backend's own termination, a DO block raising the fixed SQLSTATE savepointLostSqlState)"
  },
  {
    file: "internal/pg/noCancel.ts",
    arg: "sql",
    why: "uninterruptibleConnection passes on, unchanged, the SQL and parameters @effect/sql compiled for the connection it wraps"
  },
  { file: "internal/pg/notifier.ts", arg: "`LISTEN ${pg.escapeIdentifier(channel)}`", why: "channel = mg_ + md5 hex (channelFor)" },
  { file: "internal/pg/notifier.ts", arg: "`UNLISTEN ${pg.escapeIdentifier(channel)}`", why: "the same channel" },
  {
    file: "../cli/src/ui/server.ts",
    arg: "`LISTEN ${pg.escapeIdentifier(ch)}`",
    why: "the dashboard's LISTEN: channel = mg_ + md5 hex (channelFor), escaped"
  },
  { file: "../cli/src/ui/server.ts", arg: "`UNLISTEN ${pg.escapeIdentifier(ch)}`", why: "the same channel" },
  {
    file: "../cli/src/embedded/ThrowawayServer.ts",
    arg: "`CREATE DATABASE ${client.escapeIdentifier(databaseName)}`",
    why: "a test/demo server; an identifier cannot be a parameter, and it is escaped"
  },
  {
    file: "../cli/src/embedded/SharedServer.ts",
    arg: "`CREATE DATABASE ${client.escapeIdentifier(state.database)}`",
    why: "the embedded server's database name, from the CLI's own state file, escaped"
  }
]

const rawMethods = new Set(["unsafe", "query", "executeUnprepared", "executeRaw", "executeValues", "literal", "raw"])

const sourceFiles = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(path.join(dir, e.name)) : e.name.endsWith(".ts") ? [path.join(dir, e.name)] : []
  )

interface Finding {
  readonly file: string
  readonly line: number
  readonly call: string
  readonly arg: string
}

/** Every raw-text call whose first argument is not a constant string. */
const rawCalls = (file: string): Array<Finding> => {
  const text = fs.readFileSync(file, "utf8")
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true)
  const found: Array<Finding> = []
  const visit = (node: ts.Node) => {
    if (ts.isCallExpression(node) && ts.isPropertyAccessExpression(node.expression)) {
      const method = node.expression.name.text
      const first = node.arguments[0]
      if (rawMethods.has(method) && first !== undefined) {
        const constant = ts.isStringLiteral(first) || ts.isNoSubstitutionTemplateLiteral(first)
        // `.query` of things that are not SQL clients (e.g. a URL's) would show up here; none exist today.
        if (!constant) {
          found.push({
            file: path.relative(srcDir, file),
            line: source.getLineAndCharacterOfPosition(node.getStart()).line + 1,
            call: node.expression.getText(source),
            arg: first.getText(source)
          })
        }
      }
    }
    ts.forEachChild(node, visit)
  }
  visit(source)
  return found
}

it("src/ and cli/src/ send no string-built SQL except the reviewed exceptions", () => {
  const files = [...sourceFiles(srcDir), ...sourceFiles(cliSrcDir)]
  expect(files.length).toBeGreaterThan(10)
  const findings = files.flatMap(rawCalls)
  const unexpected = findings.filter((f) => !exceptions.some((e) => e.file === f.file && e.arg === f.arg))
  expect(unexpected.map((f) => `${f.file}:${f.line} ${f.call}(${f.arg})`)).toEqual([])
  // Every exception still exists (a stale list would hide a new one with the same text elsewhere).
  for (const e of exceptions) {
    expect(findings.some((f) => f.file === e.file && f.arg === e.arg), `${e.file}: ${e.arg}`).toBe(true)
  }
})

it("the scanner catches string-built SQL (it is not vacuous)", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mg-scan-"))
  const file = path.join(dir, "Bad.ts")
  fs.writeFileSync(
    file,
    [
      "declare const sql: any, client: any, groupId: string",
      "sql.unsafe(`SELECT * FROM t WHERE g = '${groupId}'`)",
      "client.query(\"SELECT \" + groupId)",
      "sql.unsafe(\"SELECT 1\")",
      "sql`SELECT ${groupId}`"
    ].join("\n")
  )
  try {
    expect(rawCalls(file).map((f) => f.call)).toEqual(["sql.unsafe", "client.query"])
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

it.live("a hostile group id never appears in any SQL text; LISTEN names only a hashed channel", () =>
  Effect.gen(function*() {
    const groupId = `x'); DELETE FROM modulo_group.members; NOTIFY "evil"; --${randomGroupId("sqltext")}`
    const texts: Array<string> = []
    const original = pg.Client.prototype.query
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        pg.Client.prototype.query = function(this: pg.Client, ...args: Array<unknown>) {
          const config = args[0]
          texts.push(typeof config === "string" ? config : String((config as { text?: unknown })?.text ?? ""))
          return (original as (...a: Array<unknown>) => unknown).apply(this, args)
        } as typeof original
      }),
      () => Effect.sync(() => (pg.Client.prototype.query = original))
    )
    const { join, rec } = yield* makeGroup(groupId)
    const members = yield* Effect.forEach([1, 2, 3], () => join(), { concurrency: "unbounded" })
    yield* waitFor(() => exactCover(rec.working(), 3), Duration.seconds(20))
    yield* members[0]!.close
    yield* waitFor(() => exactCover(rec.working(), 2), Duration.seconds(20))
    expect(texts.length).toBeGreaterThan(10)
    const withId = texts.filter((t) => t.includes(groupId) || t.includes("DELETE FROM modulo_group.members;"))
    expect(withId).toEqual([])
    const listens = texts.filter((t) => /^\s*(UN)?LISTEN\b/i.test(t))
    expect(listens.length).toBeGreaterThan(0)
    for (const l of listens) expect(l).toMatch(/^(UN)?LISTEN "mg_[0-9a-f]{32}"$/)
    expect(rec.violations).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)
