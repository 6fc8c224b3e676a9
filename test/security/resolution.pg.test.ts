/**
 * A guard on how every statement the library sends resolves its functions and operators, where a
 * role that may CREATE in a schema of the members' search_path (`public` before PostgreSQL 15) could
 * plant one of its own (CVE-2018-1058; docs/operations.md, "The members' search_path").
 *
 * The rule. PostgreSQL looks an unqualified function, operator or aggregate up in every schema of the
 * path, and prefers a candidate whose argument types match EXACTLY wherever it is, pg_catalog first in
 * the path or not. pg_catalog's own candidate is safe only when it is an exact match itself (then a
 * planted one of the same signature is hidden behind it). So a call is hijackable when
 *   (a) an argument reaches it through an implicit coercion (`numeric * integer` runs numeric * numeric
 *       with the integer cast: a planted `*(numeric, integer)` wins);
 *   (b) pg_catalog's function is polymorphic, takes a pseudo-type ("any", anyelement, anyarray,
 *       anycompatible…) or is VARIADIC (`json_agg(anyelement)`: a planted `json_agg(json)` wins);
 *   (c) an argument is a bind parameter sent untyped (node-postgres sends every parameter as type 0,
 *       unknown; in `$1 * interval '1 ms'` the unknown is taken for an interval and a planted
 *       `*(interval, interval)` wins; at a function's argument an unknown goes to a text overload:
 *       `right('abc', $1)` runs a planted `right(text, text)`, `pg_advisory_xact_lock_shared($1, …)` a
 *       planted `(text, integer)`). The parse tree cannot tell (an untyped `$1` and a `$1::float8` are
 *       the same Param), so this one is a rule on the text: every `$n` is written `$n::type`. It asks
 *       for more than the attack needs (`col = $1` against a text column, `hashtext($1)`: pg_catalog's
 *       is exact, or text is preferred), and is kept apart, each `$n` with the call it is an argument of.
 * A call written qualified (`pg_catalog.json_agg(…)`, `a OPERATOR(pg_catalog.*) b`, and the SQL-syntax
 * forms the grammar qualifies: `extract(… FROM …)`, `unnest(a, b)` in FROM) looks in pg_catalog only:
 * immune. Casts (`x::bigint`), GREATEST/LEAST, COALESCE, ORDER BY and the like resolve through the
 * catalogs' casts and type defaults, not by name: immune. (Each of these was tried on PostgreSQL 15
 * with functions planted in `public`; the findings are the same on 15 and 18.)
 *
 * Statements after the first of a transaction that pins `search_path` to `pg_catalog, pg_temp`
 * (every change: `pinnedSearchPath` in src/internal/pg/statements.ts) resolve in pg_catalog only and
 * are skipped. The pinning statement itself is parsed before it runs, with the session's path: it is
 * checked. Statements run inside the library's own functions (a `where` context: triggers, SECURITY
 * DEFINER functions) are skipped too: those functions pin their own path (`SET search_path`).
 *
 * How. A pool whose sessions start with `debug_print_parse=on` and `client_min_messages=log` sends
 * the parse tree of every statement back as a LOG notice; the pool's clients record each statement's
 * text and the notices it got. A representative workload runs on that pool (migrations, joins,
 * single and batched renewals, leaves, a busy leave, static members and their waiters, slots mode
 * with releases and a retake, reads, fenced transactions in both modes, the CLI's reads). Each parse
 * tree is parsed (PostgreSQL's node dump: `{NODE :field value …}`, lists in parentheses) and walked;
 * functions and operators are looked up in pg_proc / pg_operator. Each finding names the statement's
 * call site (the declaration in the library's source whose SQL text the statement matches), the node,
 * the resolved function with its argument types, why, and the text at the node's location.
 *
 * The first test checks the guard itself on statements of its own sent the same way.
 *
 * Not seen here: expressions a migration's DDL stores (column defaults, CHECKs, index expressions)
 * are resolved when the migration runs, but the parse tree of a utility statement is printed raw,
 * unresolved; and statements the workload does not reach (the list of call sites reached is printed).
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Option } from "effect"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import pg from "pg"
import { allGroups } from "../../cli/src/commands/groups.js"
import { snapshot } from "../../cli/src/commands/status.js"
import * as Queries from "../../cli/src/ui/queries.js"
import * as Ledger from "../../cli/src/demo/ledger.js"
import * as Fenced from "../../src/Fenced.js"
import { type GroupView, MembershipStore } from "../../src/MembershipStore.js"
import * as Ownership from "../../src/Ownership.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { ownDatabase, PgLive, randomGroupId } from "../support/Database.js"

// ---------------------------------------------------------------------------------------------------
// Capture: every statement a pool's clients send, with the parse trees the server sent back.

/** One statement as sent on one connection. */
interface Sent {
  readonly connection: number
  readonly text: string
  /** Sent after the pinning first statement of its transaction: resolves in pg_catalog only. */
  readonly pinned: boolean
  /** The top-level parse trees (one per statement in the text). */
  readonly trees: Array<string>
  /** Parse trees of statements run inside functions it called (skipped: they pin their own path). */
  nested: number
  done: boolean
}

const sessionOptions = "-c debug_print_parse=on -c client_min_messages=log"

/** A statement that pins its transaction's path to pg_catalog (`pinnedSearchPath`), first or alone. */
const pins = /set_config\('search_path',\s*'pg_catalog(,\s*pg_temp)?',\s*true\)/

/**
 * A pg pool on `url` whose sessions print their parse trees to the client, and a `PgClient` layer
 * over it; `sent` fills as statements run.
 */
const capturingPool = (url: string) => {
  const u = new URL(url)
  u.searchParams.set("options", sessionOptions)
  const pool = new pg.Pool({ connectionString: u.toString(), max: 6, application_name: "resolution-guard" })
  const sent: Array<Sent> = []
  let connections = 0
  pool.on("connect", (client) => {
    const connection = ++connections
    // Statements in the order the client sends them (node-postgres runs one at a time, in order).
    const queue: Array<Sent> = []
    let tx: { pinned: boolean; first: boolean } | undefined
    const original = client.query.bind(client) as (...args: Array<any>) => any
    ;(client as any).query = (...args: Array<any>) => {
      const text: string = typeof args[0] === "string" ? args[0] : String(args[0]?.text ?? "")
      let pinned = false
      if (/^\s*(BEGIN|START\s+TRANSACTION)\b/i.test(text)) {
        tx = { pinned: false, first: true }
      } else if (/^\s*(COMMIT|END|ROLLBACK|ABORT)\b/i.test(text) && !/^\s*ROLLBACK\s+TO\b/i.test(text)) {
        tx = undefined
      } else if (tx !== undefined && !/^\s*(SAVEPOINT|RELEASE)\b/i.test(text)) {
        // The first statement is parsed before its set_config runs: only the ones after it are pinned.
        pinned = tx.pinned
        if (tx.first) tx.pinned = pins.test(text)
        tx.first = false
      }
      const entry: Sent = { connection, text, pinned, trees: [], nested: 0, done: false }
      sent.push(entry)
      queue.push(entry)
      const finish = () => {
        entry.done = true
      }
      const last = args.length - 1
      if (typeof args[last] === "function") {
        const callback = args[last]
        args[last] = (...results: Array<unknown>) => {
          finish()
          return callback(...results)
        }
        return original(...args)
      }
      const result = original(...args)
      if (result !== undefined && typeof result.then === "function") {
        result.then(finish, finish)
      } else {
        finish()
      }
      return result
    }
    client.on("notice", (notice: any) => {
      if (notice.severity !== "LOG" || !String(notice.message).startsWith("parse tree")) return
      while (queue.length > 0 && queue[0]!.done) queue.shift()
      const current = queue[0]
      if (current === undefined) return
      if (notice.where !== undefined && notice.where !== "") current.nested++
      else current.trees.push(String(notice.detail ?? ""))
    })
  })
  const layer = PgClient.layerFromPool({
    acquire: Effect.acquireRelease(Effect.sync(() => pool), (p) => Effect.promise(() => p.end()))
  })
  return { sent, layer }
}

// ---------------------------------------------------------------------------------------------------
// PostgreSQL's node dump (outfuncs.c), read back.

interface PgNode {
  readonly type: string
  readonly fields: Record<string, Value>
}
type Value = PgNode | ReadonlyArray<Value> | string | null

/** Tokens as read.c's pg_strtok splits them: whitespace-separated, `(){}` alone, `\` escapes the next character. */
const tokenize = (dump: string): Array<string> => {
  const tokens: Array<string> = []
  let i = 0
  while (i < dump.length) {
    const c = dump[i]!
    if (c === " " || c === "\n" || c === "\t" || c === "\r") {
      i++
    } else if (c === "(" || c === ")" || c === "{" || c === "}") {
      tokens.push(c)
      i++
    } else {
      let token = ""
      while (i < dump.length) {
        const d = dump[i]!
        if (d === " " || d === "\n" || d === "\t" || d === "\r" || d === "(" || d === ")" || d === "{" || d === "}") break
        if (d === "\\" && i + 1 < dump.length) {
          token += dump[i + 1]
          i += 2
        } else {
          token += d
          i++
        }
      }
      tokens.push(token)
    }
  }
  return tokens
}

const parseDump = (dump: string): Value => {
  const tokens = tokenize(dump)
  let at = 0
  const value = (): Value => {
    const t = tokens[at++]
    if (t === "{") {
      const type = tokens[at++]!
      const fields: Record<string, Value> = {}
      while (at < tokens.length && tokens[at] !== "}") {
        const name = tokens[at++]!
        if (!name.startsWith(":")) continue
        if (tokens[at] === "}" || (tokens[at]?.startsWith(":") ?? false)) {
          fields[name.slice(1)] = null
          continue
        }
        fields[name.slice(1)] = value()
        // A Const's datum: `:constvalue 4 [ 1 0 0 0 ]`.
        if (tokens[at] === "[") {
          while (at < tokens.length && tokens[at] !== "]") at++
          at++
        }
      }
      at++
      return { type, fields }
    }
    if (t === "(") {
      const items: Array<Value> = []
      while (at < tokens.length && tokens[at] !== ")") items.push(value())
      at++
      return items
    }
    return t === "<>" || t === undefined ? null : t
  }
  return value()
}

const isNode = (v: Value | undefined): v is PgNode => v !== null && v !== undefined && typeof v === "object" && !Array.isArray(v)
const list = (v: Value | undefined): ReadonlyArray<Value> => (Array.isArray(v) ? v : [])
const num = (v: Value | undefined): number => (typeof v === "string" ? Number(v) : NaN)

/** Every node of a tree, depth first. */
const nodesOf = function*(v: Value): Generator<PgNode> {
  if (Array.isArray(v)) {
    for (const item of v) yield* nodesOf(item)
  } else if (isNode(v)) {
    yield v
    for (const field of Object.values(v.fields)) yield* nodesOf(field)
  }
}

// ---------------------------------------------------------------------------------------------------
// The rule.

/** CoercionForm (primnodes.h): 0 explicit call, 1 explicit cast, 2 implicit cast, 3 SQL syntax. */
const COERCE_EXPLICIT_CALL = 0
const COERCE_IMPLICIT_CAST = 2
const COERCE_SQL_SYNTAX = 3

/** An implicit coercion node, and its form's field name. */
const coercionForm: Record<string, string> = {
  FUNCEXPR: "funcformat",
  RELABELTYPE: "relabelformat",
  COERCEVIAIO: "coerceformat",
  ARRAYCOERCEEXPR: "coerceformat",
  CONVERTROWTYPEEXPR: "convertformat",
  COERCETODOMAIN: "coercionformat"
}
const isImplicitCoercion = (v: Value): v is PgNode =>
  isNode(v) && coercionForm[v.type] !== undefined && num(v.fields[coercionForm[v.type]!]) === COERCE_IMPLICIT_CAST

/** A call the walker checks: how it was resolved (a function or an operator) and its arguments. */
interface Call {
  readonly node: PgNode
  readonly kind: "function" | "operator"
  /** pg_proc oid (functions) or pg_operator oid (operators). */
  readonly oid: number
  readonly args: ReadonlyArray<Value>
  readonly location: number
  /** Qualified by the grammar itself (SQL-syntax calls such as `extract(… FROM …)`). */
  readonly syntax: boolean
}

const callOf = (node: PgNode): Call | undefined => {
  const f = node.fields
  const location = num(f["location"])
  switch (node.type) {
    case "OPEXPR":
    case "DISTINCTEXPR":
    case "NULLIFEXPR":
    case "SCALARARRAYOPEXPR":
      return { node, kind: "operator", oid: num(f["opno"]), args: list(f["args"]), location, syntax: false }
    case "FUNCEXPR": {
      const form = num(f["funcformat"])
      if (form !== COERCE_EXPLICIT_CALL && form !== COERCE_SQL_SYNTAX) return undefined
      return { node, kind: "function", oid: num(f["funcid"]), args: list(f["args"]), location, syntax: form === COERCE_SQL_SYNTAX }
    }
    case "AGGREF": {
      // Direct arguments, then the aggregated ones (TargetEntries; ORDER BY ones are resjunk).
      const aggregated = list(f["args"]).filter((te) => !(isNode(te) && te.fields["resjunk"] === "true"))
        .map((te) => (isNode(te) && te.type === "TARGETENTRY" ? te.fields["expr"] ?? null : te))
      return {
        node,
        kind: "function",
        oid: num(f["aggfnoid"]),
        args: [...list(f["aggdirectargs"]), ...aggregated],
        location,
        syntax: false
      }
    }
    case "WINDOWFUNC":
      return { node, kind: "function", oid: num(f["winfnoid"]), args: list(f["args"]), location, syntax: false }
    default:
      return undefined
  }
}

/**
 * Calls the grammar wrote qualified though they show no form of it: `unnest(a, b)` in FROM (several
 * arrays) becomes `ROWS FROM (pg_catalog.unnest(a), pg_catalog.unnest(b))`, each call at the one
 * location of the original (a `ROWS FROM` written out has its calls at their own locations).
 */
const grammarCalls = (tree: Value): Set<PgNode> => {
  const calls = new Set<PgNode>()
  for (const node of nodesOf(tree)) {
    if (node.type !== "RANGETBLENTRY") continue
    const exprs = list(node.fields["functions"]).flatMap((f) => (isNode(f) && isNode(f.fields["funcexpr"]) ? [f.fields["funcexpr"]] : []))
    if (exprs.length > 1 && exprs.every((e) => e.type === "FUNCEXPR" && e.fields["location"] === exprs[0]!.fields["location"])) {
      for (const e of exprs) calls.add(e)
    }
  }
  return calls
}

/** What pg_proc / pg_operator say of a resolved function or operator. */
interface Resolved {
  readonly name: string
  readonly schema: string
  readonly argTypes: ReadonlyArray<string>
  /** A pseudo-type argument (polymorphic, "any", …) or VARIADIC. */
  readonly polymorphic: string | undefined
}

const lookUp = (functions: ReadonlyArray<number>, operators: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const resolved = new Map<string, Resolved>()
    const procs = yield* sql<{ oid: string; name: string; schema: string; args: Array<string>; pseudo: Array<string>; variadic: string | null }>`
      SELECT p.oid::text AS oid, p.proname AS name, n.nspname AS schema,
             ARRAY(SELECT pg_catalog.format_type(t, NULL) FROM pg_catalog.unnest(p.proargtypes) WITH ORDINALITY AS a(t, i) ORDER BY i) AS args,
             ARRAY(SELECT pg_catalog.format_type(t, NULL) FROM pg_catalog.unnest(p.proargtypes) AS a(t)
                    JOIN pg_catalog.pg_type y ON y.oid = a.t WHERE y.typtype = 'p') AS pseudo,
             CASE WHEN p.provariadic <> 0 THEN pg_catalog.format_type(p.provariadic, NULL) END AS variadic
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
       WHERE p.oid = ANY (${`{${functions.join(",")}}`}::oid[])`
    for (const p of procs) {
      const why = [
        ...(p.pseudo.length > 0 ? [`pseudo-type argument ${[...new Set(p.pseudo)].join(", ")}`] : []),
        ...(p.variadic !== null ? [`VARIADIC ${p.variadic}`] : [])
      ]
      resolved.set(`function:${p.oid}`, {
        name: p.name,
        schema: p.schema,
        argTypes: p.args,
        polymorphic: why.length > 0 ? why.join(", ") : undefined
      })
    }
    const ops = yield* sql<{ oid: string; name: string; schema: string; args: Array<string>; pseudo: Array<string> }>`
      SELECT o.oid::text AS oid, o.oprname AS name, n.nspname AS schema,
             ARRAY(SELECT pg_catalog.format_type(t, NULL) FROM pg_catalog.unnest(ARRAY[o.oprleft, o.oprright]) WITH ORDINALITY AS a(t, i)
                    WHERE t <> 0 ORDER BY i) AS args,
             ARRAY(SELECT pg_catalog.format_type(t, NULL) FROM pg_catalog.unnest(ARRAY[o.oprleft, o.oprright]) AS a(t)
                    JOIN pg_catalog.pg_type y ON y.oid = a.t WHERE y.typtype = 'p') AS pseudo
        FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
       WHERE o.oid = ANY (${`{${operators.join(",")}}`}::oid[])`
    for (const o of ops) {
      resolved.set(`operator:${o.oid}`, {
        name: o.name,
        schema: o.schema,
        argTypes: o.args,
        polymorphic: o.pseudo.length > 0 ? `pseudo-type operand ${[...new Set(o.pseudo)].join(", ")}` : undefined
      })
    }
    return resolved
  })

const typeNames = (oids: ReadonlyArray<number>) =>
  Effect.map(
    Effect.flatMap(SqlClient.SqlClient, (sql) =>
      sql<{ oid: string; name: string }>`
        SELECT t.oid::text AS oid, pg_catalog.format_type(t.oid, NULL) AS name FROM pg_catalog.pg_type t
         WHERE t.oid = ANY (${`{${oids.join(",")}}`}::oid[])`),
    (rows) => new Map(rows.map((r) => [Number(r.oid), r.name]))
  )

/** The call is written qualified at its location: `pg_catalog.name(`, `OPERATOR(pg_catalog.op)`. */
const qualifiedAt = (text: string, location: number): boolean => {
  if (!(location >= 0)) return false
  const rest = text.slice(location)
  return /^"?pg_catalog"?\s*\./i.test(rest) || /^OPERATOR\s*\(\s*"?pg_catalog"?\s*\./i.test(rest)
}

/**
 * A string literal written without a type at `location`: a quote there, neither a type name before it
 * (`interval '1 ms'`) nor a cast after it (`'UTF8'::name`), which the Const's location cannot tell.
 */
const untypedLiteralAt = (text: string, location: number): boolean => {
  if (!(location >= 0) || text[location] !== "'") return false
  let end = location + 1
  while (end < text.length) {
    if (text[end] === "'" && text[end + 1] === "'") end += 2
    else if (text[end] === "'") break
    else end += 1
  }
  const castAfter = /^\s*::/.test(text.slice(end + 1))
  const typeBefore = /[A-Za-z_][A-Za-z0-9_]*\s*$/.test(text.slice(0, location)) &&
    !/\b(AND|OR|NOT|IN|IS|THEN|ELSE|WHEN|SELECT|WHERE|VALUES|AS|LIKE|BETWEEN)\s*$/i.test(text.slice(0, location))
  return !castAfter && !typeBefore
}

/** The statement's text around a location, on one line. */
const excerptAt = (text: string, location: number, before = 30, after = 50): string => {
  if (!(location >= 0)) return "(no location)"
  const from = Math.max(0, location - before)
  return `${from > 0 ? "…" : ""}${text.slice(from, location)}⟪${text.slice(location, location + after)}…`.replace(/\s+/g, " ")
}

interface Finding {
  readonly site: string
  readonly statement: string
  readonly node: string
  readonly call: string
  readonly why: string
  readonly excerpt: string
}

/** A finding on one line per fact; parameter numbers blanked (`$n`): one site's variants say the same. */
const render = (f: Finding) => `${f.node} ${f.call}: ${f.why}\n      at: ${f.excerpt.replace(/\$\d+/g, "$n")}`

/** Findings by call site, each site's once: `site (first line of its statement)` then its findings. */
const bySite = (findings: ReadonlyArray<Finding>): Array<string> => {
  const sites = new Map<string, Set<string>>()
  for (const f of findings) {
    const key = `${f.site}\n    statement: ${f.statement.replace(/\$\d+/g, "$n")}`
    const set = sites.get(f.site) ?? sites.set(f.site, new Set([key])).get(f.site)!
    set.add(`    - ${render(f)}`)
  }
  return [...sites.values()].map((lines) => [...lines].join("\n"))
}

/** The result type's field of each coercion node. */
const coercionResult: Record<string, string> = {
  FUNCEXPR: "funcresulttype",
  RELABELTYPE: "resulttype",
  COERCEVIAIO: "resulttype",
  ARRAYCOERCEEXPR: "resulttype",
  CONVERTROWTYPEEXPR: "resulttype",
  COERCETODOMAIN: "resulttype"
}

/** An implicit coercion, in words: `integer → double precision (pg_catalog.float8(integer))`. */
const describeCoercion = (arg: PgNode, resolved: Map<string, Resolved>, types: Map<number, string>): string => {
  const to = types.get(num(arg.fields[coercionResult[arg.type]!])) ?? "?"
  if (arg.type === "FUNCEXPR") {
    const f = resolved.get(`function:${num(arg.fields["funcid"])}`)
    return f === undefined ? `cast to ${to}` : `${f.argTypes[0] ?? "?"} → ${to} by ${f.schema}.${f.name}(${f.argTypes.join(", ")})`
  }
  return `${arg.type === "RELABELTYPE" ? "binary-compatible" : arg.type} cast to ${to}`
}

/**
 * The findings (a) and (b) of one statement's parse trees, and, for (c), what each `$n` is an argument
 * of (by `paramid`).
 */
const judge = (
  text: string,
  trees: ReadonlyArray<string>,
  resolved: Map<string, Resolved>,
  types: Map<number, string>,
  site: string
): { findings: Array<Finding>; paramUses: Map<number, Array<string>> } => {
  const findings: Array<Finding> = []
  const paramUses = new Map<number, Array<string>>()
  const first = firstLine(text)
  for (const tree of trees) {
    const parsed = parseDump(tree)
    const grammars = grammarCalls(parsed)
    for (const node of nodesOf(parsed)) {
      const call = callOf(node)
      if (call === undefined) continue
      const r = resolved.get(`${call.kind}:${call.oid}`)
      const name = r === undefined ? `${call.kind} ${call.oid}` : `${r.schema}.${r.name}(${r.argTypes.join(", ")})`
      const immune = call.syntax || grammars.has(node) || qualifiedAt(text, call.location)
      call.args.forEach((arg, i) => {
        if (isNode(arg) && arg.type === "PARAM" && num(arg.fields["paramkind"]) === 0) {
          const id = num(arg.fields["paramid"])
          const uses = paramUses.get(id) ?? []
          uses.push(`${immune ? "qualified " : ""}${node.type} ${name} argument ${i + 1}`)
          paramUses.set(id, uses)
        }
      })
      if (immune) continue
      const coerced = call.args.flatMap((arg, i) => (isImplicitCoercion(arg) ? [[arg, i] as const] : []))
      for (const [arg, i] of coerced) {
        findings.push({
          site,
          statement: first,
          node: node.type,
          call: name,
          why: `argument ${i + 1} is an implicit cast (${describeCoercion(arg, resolved, types)}): pg_catalog's is no exact match`,
          excerpt: excerptAt(text, call.location)
        })
      }
      // (d) An untyped string literal the call typed itself (a CONST at a quote, no cast written): at a
      // function's argument, pg_catalog's candidate is exact only for text (PostgreSQL prefers text for
      // an unknown, so a planted text overload wins over `convert_to(text, name)` with `'UTF8'`); at an
      // operator's, only when both operands are declared of one type (the literal is taken for the
      // other operand's type first).
      if (r !== undefined && r.polymorphic === undefined) {
        call.args.forEach((arg, i) => {
          if (!isNode(arg) || arg.type !== "CONST" || !untypedLiteralAt(text, num(arg.fields["location"]))) return
          const declared = r.argTypes[i]
          const exact = call.kind === "function" ? declared === "text" : new Set(r.argTypes).size === 1
          if (!exact) {
            findings.push({
              site,
              statement: first,
              node: node.type,
              call: name,
              why: `argument ${i + 1} is a string literal typed ${declared ?? "?"} by the call: an overload planted for text wins`,
              excerpt: excerptAt(text, call.location)
            })
          }
        })
      }
      if (r?.polymorphic !== undefined) {
        findings.push({
          site,
          statement: first,
          node: node.type,
          call: name,
          why: `${r.polymorphic}: an exact overload planted on the path wins`,
          excerpt: excerptAt(text, call.location)
        })
      }
    }
  }
  return { findings, paramUses }
}

/** `$n` not followed at once by `::`: sent untyped (node-postgres gives every parameter type 0). */
const untypedParams = (text: string): Array<number> =>
  [...new Set([...text.matchAll(/\$(\d+)(?!\d|::)/g)].map((m) => Number(m[1])))].sort((a, b) => a - b)

const firstLine = (text: string): string => {
  const line = text.split("\n").map((l) => l.trim()).find((l) => l !== "") ?? ""
  return line.length > 100 ? `${line.slice(0, 100)}…` : line
}

// ---------------------------------------------------------------------------------------------------
// Call sites: the declaration in the library's source whose SQL text the statement matches best.

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
const sourceFiles = [
  "src/internal/pg/statements.ts",
  "src/PgMembershipStore.ts",
  "src/Fenced.ts",
  "src/Migrations.ts",
  "src/Notifier.ts",
  "cli/src/ui/queries.ts",
  "cli/src/commands/status.ts",
  "cli/src/commands/groups.ts"
]

/** A piece of SQL text in the source, and the declaration it belongs to. */
interface Piece {
  readonly text: string
  readonly site: string
  /** 1: exported, a statement's own text (any such match decides); 0: a fragment statements share. */
  readonly weight: number
}

const flatten = (text: string) => text.replace(/\s+/g, " ").trim()

/**
 * The static text of every template literal in a TypeScript file (`${…}` holes cut out, nested
 * templates read too), each with the top-level declaration it is in.
 */
const templatePieces = (file: string): Array<Piece> => {
  const text = fs.readFileSync(path.join(root, file), "utf8")
  const lines = text.split("\n")
  const declarations = lines.flatMap((l, i) => {
    const m = /^(export\s+)?(?:const|function|let)\s+([A-Za-z0-9_]+)/.exec(l)
    return m === null ? [] : [{ line: i + 1, name: m[2]!, exported: m[1] !== undefined }]
  })
  const pieces: Array<Piece> = []
  let line = 1
  let chunk = ""
  let chunkLine = 1
  const emit = () => {
    const flat = flatten(chunk)
    if (flat.length >= 10) {
      const decl = [...declarations].reverse().find((d) => d.line <= chunkLine)
      pieces.push({
        text: flat,
        site: `${decl?.name ?? "?"} (${file}:${decl?.line ?? chunkLine})`,
        weight: decl?.exported === true ? 1 : 0
      })
    }
    chunk = ""
  }
  // A stack of what encloses the scanner: a template's text, or code (in a `${…}` hole, with its brace depth).
  const stack: Array<{ kind: "code"; depth: number } | { kind: "template" }> = [{ kind: "code", depth: 0 }]
  let i = 0
  while (i < text.length) {
    const c = text[i]!
    const top = stack[stack.length - 1]!
    if (c === "\n") line++
    if (top.kind === "template") {
      if (c === "\\") {
        chunk += text[i + 1] ?? ""
        i += 2
        continue
      }
      if (c === "`") {
        emit()
        stack.pop()
      } else if (c === "$" && text[i + 1] === "{") {
        emit()
        stack.push({ kind: "code", depth: 0 })
        i += 2
        continue
      } else {
        if (chunk === "") chunkLine = line
        chunk += c
      }
      i++
      continue
    }
    if (c === "/" && text[i + 1] === "/") {
      while (i < text.length && text[i] !== "\n") i++
      continue
    }
    if (c === "/" && text[i + 1] === "*") {
      const end = text.indexOf("*/", i + 2)
      const stop = end < 0 ? text.length : end + 2
      for (let j = i; j < stop; j++) if (text[j] === "\n") line++
      i = stop
      continue
    }
    if (c === "'" || c === "\"") {
      i++
      while (i < text.length && text[i] !== c && text[i] !== "\n") i += text[i] === "\\" ? 2 : 1
      i++
      continue
    }
    if (c === "`") {
      stack.push({ kind: "template" })
      chunkLine = line
    } else if (c === "{") {
      top.depth++
    } else if (c === "}") {
      if (top.depth === 0 && stack.length > 1) stack.pop()
      else top.depth--
    }
    i++
  }
  return pieces
}

/** The lines of a migration file, each its own piece. */
const migrationPieces = (file: string): Array<Piece> =>
  fs.readFileSync(path.join(root, file), "utf8").split("\n").map(flatten).filter((l) => l.length >= 10 && !l.startsWith("--"))
    .map((l) => ({ text: l, site: file, weight: 1 }))

const pieces: Array<Piece> = [
  ...sourceFiles.filter((f) => fs.existsSync(path.join(root, f))).flatMap(templatePieces),
  ...fs.readdirSync(path.join(root, "migrations")).filter((f) => f.endsWith(".sql")).flatMap((f) => migrationPieces(`migrations/${f}`))
]

/** The call site of a statement: the declaration whose SQL text it holds most of. */
const siteOf = (text: string): string => {
  const flat = flatten(text)
  const votes = new Map<string, number>()
  for (const p of pieces) {
    if (flat.includes(p.text)) votes.set(p.site, (votes.get(p.site) ?? 0) + p.text.length * (p.weight === 1 ? 1_000_000 : 1))
  }
  const best = [...votes.entries()].sort((a, b) => b[1] - a[1])[0]
  return best === undefined ? `(not in the library's source) ${firstLine(text)}` : best[0]
}

// ---------------------------------------------------------------------------------------------------
// Judging a capture.

interface Verdict {
  readonly findings: Array<Finding>
  readonly untyped: Array<{ readonly site: string; readonly statement: string; readonly params: Array<string> }>
  readonly checked: number
  readonly pinned: number
  readonly nested: number
  readonly sites: Set<string>
}

const judgeAll = (sent: ReadonlyArray<Sent>) =>
  Effect.gen(function*() {
    const considered = sent.filter((s) => !s.pinned && s.trees.length > 0)
    const parsed = considered.map((s) => s.trees.map(parseDump))
    const functions = new Set<number>()
    const operators = new Set<number>()
    const typeOids = new Set<number>()
    for (const trees of parsed) {
      for (const tree of trees) {
        for (const node of nodesOf(tree)) {
          const call = callOf(node)
          if (call !== undefined && Number.isFinite(call.oid)) (call.kind === "function" ? functions : operators).add(call.oid)
          if (isImplicitCoercion(node)) {
            typeOids.add(num(node.fields[coercionResult[node.type]!]))
            if (node.type === "FUNCEXPR") functions.add(num(node.fields["funcid"]))
          }
        }
      }
    }
    const resolved = yield* lookUp([...functions], [...operators])
    const types = yield* typeNames([...typeOids])
    const findings = new Map<string, Finding>()
    const untyped = new Map<string, { site: string; statement: string; params: Array<string> }>()
    const sites = new Set<string>()
    for (const s of considered) {
      const site = siteOf(s.text)
      if (!/^\s*(BEGIN|START|COMMIT|END|ROLLBACK|ABORT|SAVEPOINT|RELEASE)\b/i.test(s.text)) sites.add(site)
      const judged = judge(s.text, s.trees, resolved, types, site)
      for (const f of judged.findings) findings.set(`${f.site}\n${render(f)}`, f)
      const params = untypedParams(s.text).map((n) => {
        const uses = judged.paramUses.get(n)
        return `$${n}${uses === undefined ? "" : ` (${[...new Set(uses)].join("; ")})`}`
      })
      if (params.length > 0) untyped.set(`${site}\n${params.join("\n").replace(/\$\d+/g, "")}`, { site, statement: firstLine(s.text), params })
    }
    return {
      findings: [...findings.values()],
      untyped: [...untyped.values()],
      checked: considered.length,
      pinned: sent.filter((s) => s.pinned).length,
      nested: sent.reduce((n, s) => n + s.nested, 0),
      sites
    } satisfies Verdict
  })

const renderUntyped = (u: Verdict["untyped"][number]) =>
  `${u.site}\n    statement: ${u.statement}\n    untyped (sent as unknown; resolved as the call's candidates decide):\n    - ${u.params.join("\n    - ")}`

// ---------------------------------------------------------------------------------------------------
// The guard on itself.

it.live("the guard flags what a planted function could take and passes what it could not", () =>
  Effect.gen(function*() {
    const db = yield* ownDatabase("resolutionself", { maxConnections: 2 })
    const capture = capturingPool(db.url)
    const probes = {
      // (`pg_catalog.extract(epoch FROM …)` is no valid syntax: the qualified call takes the field as text.)
      coerced: "SELECT (pg_catalog.extract('epoch', pg_catalog.now()) * 1000) AS x",
      syntaxCoerced: "SELECT (extract(epoch FROM now()) * 1000) AS x",
      qualifiedOperator: "SELECT (extract(epoch FROM now()) OPERATOR(pg_catalog.*) 1000::numeric) AS x",
      typed: "SELECT $1::float8 * interval '1 ms' AS x",
      untyped: "SELECT $1 * interval '1 ms' AS x",
      polymorphic: "SELECT json_agg(x) AS x FROM (VALUES (1), (2)) AS v(x)",
      qualifiedPolymorphic: "SELECT pg_catalog.json_agg(x) AS x FROM (VALUES (1), (2)) AS v(x)",
      variadic: "SELECT json_build_array(1, 'a') AS x",
      exact: "SELECT pg_catalog.now() + interval '1 ms' AS x WHERE 1 = 1",
      integerInterval: "SELECT x * interval '1 ms' AS y FROM (VALUES (1)) AS v(x)",
      unnestOne: "SELECT a FROM unnest('{1}'::int[]) AS r(a)",
      unnestMany: "SELECT a, b FROM unnest('{1}'::int[], '{2}'::int8[]) AS r(a, b)",
      oidInteger: "SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE n.oid = 0",
      untypedLiteral: "SELECT convert_to('a'::text, 'UTF8') AS x",
      typedLiteral: "SELECT convert_to('a'::text, 'UTF8'::name) AS x",
      textLiteral: "SELECT rtrim('a '::text, ' ') AS x",
      literalOperand: "SELECT pg_catalog.now() + '1 hour' AS x",
      literalSameType: "SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = 'public'",
      pinnedAfter: "SELECT 1::int4 * 1.5 AS x"
    }
    yield* Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      for (const [name, text] of Object.entries(probes)) {
        if (name === "pinnedAfter") continue
        yield* sql.unsafe(text, name === "typed" || name === "untyped" ? [2] : [])
      }
      yield* sql.withTransaction(Effect.gen(function*() {
        yield* sql.unsafe("SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true)")
        yield* sql.unsafe(probes.pinnedAfter)
      }))
    }).pipe(Effect.provide(capture.layer))
    const verdict = yield* judgeAll(capture.sent).pipe(Effect.provide(db.layer))
    const flagged = (text: string) => verdict.findings.filter((f) => f.statement === firstLine(text)).map((f) => `${f.node} ${f.call}`)
    const untyped = (text: string) => verdict.untyped.filter((u) => u.statement === firstLine(text)).flatMap((u) => u.params)
    expect(flagged(probes.coerced)).toEqual(["OPEXPR pg_catalog.*(numeric, numeric)"])
    expect(flagged(probes.syntaxCoerced)).toEqual(["OPEXPR pg_catalog.*(numeric, numeric)"])
    expect(flagged(probes.qualifiedOperator)).toEqual([])
    expect(flagged(probes.typed)).toEqual([])
    expect(untyped(probes.typed)).toEqual([])
    // The untyped parameter is taken for a float8 (float8 * interval): the tree shows no coercion; the text does.
    expect(flagged(probes.untyped)).toEqual([])
    expect(untyped(probes.untyped)).toEqual(["$1 (OPEXPR pg_catalog.*(double precision, interval) argument 1)"])
    expect(flagged(probes.polymorphic)).toEqual(["AGGREF pg_catalog.json_agg(anyelement)"])
    expect(flagged(probes.qualifiedPolymorphic)).toEqual([])
    expect(flagged(probes.variadic)).toEqual(["FUNCEXPR pg_catalog.json_build_array(\"any\")"])
    expect(flagged(probes.exact)).toEqual([])
    expect(flagged(probes.integerInterval)).toEqual(["OPEXPR pg_catalog.*(double precision, interval)"])
    expect(flagged(probes.unnestOne)).toEqual(["FUNCEXPR pg_catalog.unnest(anyarray)"])
    // The grammar's own expansion into `ROWS FROM (pg_catalog.unnest(…), …)`.
    expect(flagged(probes.unnestMany)).toEqual([])
    expect(flagged(probes.oidInteger)).toEqual(["OPEXPR pg_catalog.=(oid, oid)"])
    // A string literal the call types (d): to a name argument, flagged; cast, or to a text argument, not.
    expect(flagged(probes.untypedLiteral)).toEqual(["FUNCEXPR pg_catalog.convert_to(text, name)"])
    expect(flagged(probes.typedLiteral)).toEqual([])
    expect(flagged(probes.textLiteral)).toEqual([])
    expect(flagged(probes.literalOperand)).toEqual(["OPEXPR pg_catalog.+(timestamp with time zone, interval)"])
    expect(flagged(probes.literalSameType)).toEqual([])
    // After a transaction's pinning statement: skipped (the pinning statement itself is checked).
    expect(flagged(probes.pinnedAfter)).toEqual([])
    expect(capture.sent.find((s) => s.text === probes.pinnedAfter)?.pinned).toBe(true)
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 60_000)

// ---------------------------------------------------------------------------------------------------
// The library's statements.

const member = (name: string, pid: number) => ({ memberId: randomUUID(), name, host: "resolution", pid })
const leaseMs = 30_000

/** A renewal's view (the member is live: none is expected to be missing). */
const view = (v: Option.Option<GroupView>): GroupView => Option.getOrThrow(v)

const workload = (dbUrl: string) =>
  Effect.gen(function*() {
    const store = yield* MembershipStore
    const sql = yield* SqlClient.SqlClient

    // Modulo mode: joins, single and batched renewals, reads, a fenced transaction, a leave, a busy leave, a reap.
    const g = randomGroupId("resolution")
    const [a, b, c] = [member("a", 1), member("b", 2), member("c", 3)]
    yield* store.join(g, a, leaseMs)
    yield* store.join(g, b, leaseMs)
    const joined = yield* store.join(g, c, leaseMs)
    const single = view(yield* store.heartbeat(g, a.memberId, joined.epoch, leaseMs))
    const batch = yield* Effect.all(
      [a, b, c].map((m) => store.heartbeat(g, m.memberId, joined.epoch, leaseMs, { holdMs: 300, announce: true })),
      { concurrency: "unbounded" }
    )
    const mine = view(batch[0]!)
    yield* store.group(g)
    yield* store.members(g)
    yield* store.groups
    yield* Fenced.fencedWith(
      { groupId: g, memberId: a.memberId, epoch: mine.epoch, index: mine.index, size: mine.size },
      sql`SELECT 1 AS body`
    )
    // Nested in an app's transaction: a savepoint, and the timeouts restored after it.
    yield* sql.withTransaction(
      Fenced.fencedWith(
        { groupId: g, memberId: a.memberId, epoch: mine.epoch, index: mine.index, size: mine.size },
        sql`SELECT 1 AS body`
      )
    )
    yield* store.leave(g, c.memberId)
    // A busy leave: another session holds the group's lock as a change does, longer than half the
    // statement timeout; the leave then ends its own lease (`expireLease`).
    const holder = new pg.Client({ connectionString: dbUrl })
    yield* Effect.promise(() => holder.connect())
    yield* Effect.promise(() =>
      holder.query("SELECT pg_catalog.pg_advisory_lock($1::int4, pg_catalog.hashtext($2::text))", [Fenced.advisoryLockClass, g])
    )
    const leaving = yield* Effect.fork(store.leave(g, b.memberId))
    yield* Effect.sleep("1500 millis")
    yield* Effect.promise(() => holder.query("SELECT pg_catalog.pg_advisory_unlock_all()"))
    yield* Effect.promise(() => holder.end())
    yield* Fiber.join(leaving)
    yield* store.reap(g)
    yield* store.heartbeat(g, a.memberId, single.epoch, leaseMs, { stuck: true })

    // Static members: a busy instance, its waiter, a release and a takeover.
    const s = randomGroupId("resolution-static")
    const [s1, s2] = [member("s1", 11), member("s2", 12)]
    yield* store.join(s, s1, leaseMs, { instanceId: "i-1", rejoinGraceMs: 10_000 })
    const busy = yield* Effect.exit(store.join(s, s2, leaseMs, { instanceId: "i-1", rejoinGraceMs: 10_000 }))
    expect(Exit.isFailure(busy)).toBe(true)
    yield* store.wait(s, s2, "i-1", leaseMs)
    yield* store.waiters(s)
    yield* store.members(s)
    yield* store.release(s, s1.memberId)
    yield* store.join(s, s2, leaseMs, { instanceId: "i-1", rejoinGraceMs: 10_000 })
    yield* store.stopWaiting(s, s2.memberId)
    yield* store.members(s)

    // Slots mode: a second member takes slots the first still holds; the first releases them, retakes one.
    const t = randomGroupId("resolution-slots")
    const [x, y] = [member("x", 21), member("y", 22)]
    yield* store.join(t, x, leaseMs, undefined, { slots: 4 })
    const yJoined = yield* store.join(t, y, leaseMs, undefined, { slots: 4 })
    const xView = view(yield* store.heartbeat(t, x.memberId, yJoined.epoch, leaseMs, { slots: true }))
    const handed = xView.slots!.held.filter((h) => !h.owned)
    yield* store.releaseSlots(t, x.memberId, handed.map((h) => ({ slot: h.slot, generation: h.generation })))
    const both = yield* Effect.all(
      [x, y].map((m) => store.heartbeat(t, m.memberId, yJoined.epoch, leaseMs, { slots: true, holdMs: 300 })),
      { concurrency: "unbounded" }
    )
    const kept = view(both[0]!).slots!.held.filter((h) => h.owned)
    if (kept.length > 0) yield* store.retakeSlot(t, x.memberId, kept[0]!.slot, kept[0]!.generation)
    yield* store.slotRows(t)
    const held = view(yield* store.heartbeat(t, x.memberId, yJoined.epoch, leaseMs, { slots: true })).slots!.held
    yield* Fenced.fencedWith(
      {
        groupId: t,
        memberId: x.memberId,
        epoch: yJoined.epoch,
        index: 0,
        size: 2,
        slots: held.filter((h) => h.owned).map((h) => ({ slot: h.slot, generation: h.generation }))
      },
      sql`SELECT 1 AS body`
    )
    yield* store.leave(t, y.memberId)

    // The CLI's reads.
    yield* Queries.groups
    yield* Queries.group(g)
    yield* Queries.group(t)
    yield* Queries.changes(g, 0)
    yield* allGroups
    yield* snapshot(g)
    yield* snapshot(s)
    yield* snapshot(t)

    // The fragments apps embed (Ownership, slots mode's owned), on every column type they accept, and
    // the demo's ledger and verdict.
    yield* sql`CREATE TABLE public.keys (i integer, s smallint, n numeric, b bigint, t text, v varchar(40), c char(40), u uuid)`
    yield* sql`INSERT INTO public.keys VALUES (1, 1, 1, 1, 'k', 'k', 'k', '00000000-0000-4000-8000-000000000001'::uuid)`
    const keyCases: ReadonlyArray<readonly [string, Ownership.KeyType]> = [
      ["i", "integer"], ["s", "integer"], ["n", "integer"], ["b", "integer"], ["t", "text"], ["v", "text"], ["c", "text"],
      ["u", "uuid"], ["t", "uuid"]
    ]
    for (const [column, keyType] of keyCases) {
      if (column === "t" && keyType === "uuid") continue
      yield* sql`SELECT ${Ownership.ownerExpression(sql, column, 5, keyType)} AS owner,
                        ${Ownership.owned(sql, column, { index: 1, size: 5 }, keyType)} AS mine,
                        ${Ownership.owned(sql, column, { slots: [0, 2], count: 5 }, keyType)} AS slotted
                   FROM public.keys`
    }
    const run = `resolution-${randomUUID()}`
    yield* Ledger.createSchema
    yield* Ledger.createRun(run, 4)
    yield* Ledger.readVerdict(run)

    yield* store.leave(g, a.memberId)
    yield* store.leave(t, x.memberId)
    yield* store.leave(s, s2.memberId)
  })

it.live("no statement the library sends outside a pinned transaction resolves a function or operator a planted one could take", () =>
  Effect.gen(function*() {
    const db = yield* ownDatabase("resolution", { maxConnections: 2 })
    const capture = capturingPool(db.url)
    yield* workload(db.url).pipe(
      Effect.provide(
        PgMembershipStore.layer({ migrate: true, statementTimeout: "2 seconds" }).pipe(Layer.provideMerge(capture.layer))
      )
    )
    const verdict = yield* judgeAll(capture.sent).pipe(Effect.provide(db.layer))
    // The workload reached what it is meant to reach.
    const reached = (name: string) => [...verdict.sites].some((s) => s.startsWith(`${name} `))
    const expected = [
      "tryLockGroup",
      "renewLease",
      "renewLeases",
      "expireLease",
      "upsertWaiter",
      "selectWaiters",
      "deleteWaiter",
      "releaseSlots",
      "retakeSlot",
      "fenceBegin",
      "fenceQueue",
      "fenceMember",
      "fenceSlotMember",
      "fenceSlots",
      "fenceEnd",
      "fenceGroup",
      "selectMembers",
      "selectGroup",
      "selectGroups",
      "selectSlotRows",
      "selectOpenSchemas",
      "selectInstalledVersion",
      "groups",
      "changes",
      "allGroups",
      "snapshot"
    ]
    console.log(
      `resolution guard: ${capture.sent.length} statements sent, ${verdict.checked} checked, ${verdict.pinned} after a pin ` +
        `(skipped), ${verdict.nested} inside the library's functions (skipped); call sites:\n  ${[...verdict.sites].sort().join("\n  ")}`
    )
    expect(expected.filter((n) => !reached(n))).toEqual([])
    // Every statement came back with its parse tree (else the capture, not the library, passed it).
    const control = /^\s*(BEGIN|START|COMMIT|END|ROLLBACK|ABORT|SAVEPOINT|RELEASE)\b/i
    expect(capture.sent.filter((s) => !s.pinned && s.trees.length === 0 && !control.test(s.text)).map((s) => firstLine(s.text)))
      .toEqual([])
    // (a) and (b), from the parse trees.
    const found = bySite(verdict.findings)
    expect.soft(found.length, `${verdict.findings.length} hijackable call(s) at ${found.length} call site(s):\n\n${found.join("\n\n")}\n`).toBe(0)
    // (c), from the text: every parameter typed where it is written (`$1::float8`).
    const untyped = verdict.untyped.map(renderUntyped)
    expect.soft(untyped.length, `untyped parameters in ${untyped.length} statement(s):\n\n${untyped.join("\n\n")}\n`).toBe(0)
  }).pipe(Effect.scoped, Effect.provide(PgLive)), 120_000)
