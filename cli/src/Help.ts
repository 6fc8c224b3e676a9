/**
 * The help of `modulo-group`, rendered from the command tree (so a new command or option shows up
 * by itself), in the shape of most command-line tools: `modulo-group --help` lists the commands
 * first, one line each; a command's help gives its usage (starting with `modulo-group`), what it
 * does, its arguments and its options, one line each with its default.
 *
 * @effect/cli's own help prints the type of every value ("A user-defined piece of text."), "This
 * setting is optional." under every option and lists its built-in options (`--wizard`,
 * `--completions`) in every command; it stays available for what this does not cover.
 *
 * @since 0.2.0
 * @internal
 */
import type { Command, HelpDoc } from "@effect/cli"
import * as Args from "@effect/cli/Args"
import * as Options from "@effect/cli/Options"
import type { Span } from "@effect/cli/HelpDoc/Span"

/** The parts of @effect/cli's command descriptors (0.77) this reads. */
type Descriptor =
  | {
    readonly _tag: "Standard" | "GetUserInput"
    readonly name: string
    readonly description: HelpDoc.HelpDoc
    readonly options?: Options.Options<unknown>
    readonly args?: Args.Args<unknown>
  }
  | { readonly _tag: "Map"; readonly command: Descriptor }
  | { readonly _tag: "Subcommands"; readonly parent: Descriptor; readonly children: ReadonlyArray<Descriptor> }

/** A command of the tree: its path from the root (`["db", "stop"]`) and what help needs. */
interface Node {
  readonly path: ReadonlyArray<string>
  readonly descriptor: Extract<Descriptor, { _tag: "Standard" | "GetUserInput" }>
  readonly children: ReadonlyArray<Node>
}

const toNode = (d: Descriptor, prefix: ReadonlyArray<string> | null): Node | undefined => {
  switch (d._tag) {
    case "Standard":
    case "GetUserInput":
      return { path: prefix === null ? [] : [...prefix, d.name], descriptor: d, children: [] }
    case "Map":
      return toNode(d.command, prefix)
    case "Subcommands": {
      const parent = toNode(d.parent, prefix)
      if (parent === undefined) return undefined
      const children = d.children.map((c) => toNode(c, parent.path)).filter((n): n is Node => n !== undefined)
      return { ...parent, children }
    }
    default:
      return undefined
  }
}

/**
 * The tree of `command`, or `undefined` if @effect/cli's descriptors are not what this reads (then
 * its own help is used).
 */
const treeOf = <Name extends string, R, E, A>(command: Command.Command<Name, R, E, A>): Node | undefined => {
  try {
    return toNode(command.descriptor as unknown as Descriptor, null)
  } catch {
    return undefined
  }
}

// --- text -----------------------------------------------------------------------------------------

const spanText = (span: Span): string => {
  switch (span._tag) {
    case "Text":
    case "URI":
      return span.value
    case "Highlight":
    case "Strong":
    case "Weak":
      return spanText(span.value)
    case "Sequence":
      return spanText(span.left) + spanText(span.right)
  }
}

/** The paragraphs of a doc, in order (headers and lists flattened). */
const paragraphs = (doc: HelpDoc.HelpDoc): Array<string> => {
  switch (doc._tag) {
    case "Empty":
      return []
    case "Header":
    case "Paragraph":
      return [spanText(doc.value)]
    case "Sequence":
      return [...paragraphs(doc.left), ...paragraphs(doc.right)]
    case "Enumeration":
      return doc.elements.flatMap(paragraphs)
    case "DescriptionList":
      return doc.definitions.flatMap(([span, d]) => [spanText(span), ...paragraphs(d)])
  }
}

/** The entries of the description lists of a doc: [term, paragraphs]. */
const entries = (doc: HelpDoc.HelpDoc): Array<readonly [string, Array<string>]> => {
  switch (doc._tag) {
    case "DescriptionList":
      return doc.definitions.map(([span, d]) => [spanText(span), paragraphs(d)] as const)
    case "Sequence":
      return [...entries(doc.left), ...entries(doc.right)]
    default:
      return []
  }
}

const optional = /^This setting is optional\.(?: Defaults to: (.*))?$/s

/**
 * One line of an option or argument: @effect/cli puts the value's type first ("A user-defined piece
 * of text.", "An integer."), then the description, then "This setting is optional[. Defaults to: x]".
 * Keeps the description and adds `(default x)` unless it states its default already.
 */
const describeEntry = (paras: ReadonlyArray<string>): string => {
  const [, ...rest] = paras
  let fallback: string | undefined = undefined
  const text: Array<string> = []
  for (const p of rest) {
    const m = optional.exec(p)
    if (m !== null) fallback = m[1]
    else if (p.trim().length > 0) text.push(p.trim())
  }
  let line = text.join(" ")
  if (fallback !== undefined && fallback !== "false" && !/\(default\b|default:/i.test(line)) {
    line = `${line} (default ${fallback})`
  }
  return line
}

const width = 100

/** `term` padded to `column`, then `text` wrapped to `width` with a hanging indent. */
const row = (term: string, text: string, column: number): string => {
  const indent = " ".repeat(column + 4)
  const lines: Array<string> = []
  let current = `  ${term.padEnd(column)}  `
  if (term.length > column) {
    lines.push(`  ${term}`)
    current = indent
  }
  let empty = true
  for (const word of text.split(/\s+/).filter((w) => w.length > 0)) {
    if (!empty && current.length + 1 + word.length > width) {
      lines.push(current.trimEnd())
      current = indent
      empty = true
    }
    current += empty ? word : ` ${word}`
    empty = false
  }
  lines.push(current.trimEnd())
  return lines.join("\n")
}

const table = (rows: ReadonlyArray<readonly [string, string]>): Array<string> => {
  const column = Math.min(30, Math.max(...rows.map(([t]) => t.length)))
  return rows.map(([t, d]) => row(t, d, column))
}

/** A list of commands: one line each, whatever its length. */
const commandTable = (rows: ReadonlyArray<readonly [string, string]>): Array<string> => {
  const column = Math.max(...rows.map(([t]) => t.length))
  return rows.map(([t, d]) => `  ${t.padEnd(column)}  ${d}`)
}

/** The first sentence of a description: what a command list shows. */
const firstSentence = (text: string): string => {
  const m = /^(.*?[.!?])(?:\s|$)/s.exec(text.trim())
  return (m?.[1] ?? text).replace(/\s+/g, " ").trim()
}

const descriptionOf = (node: Node) => paragraphs(node.descriptor.description).join(" ").trim()

const angle = (name: string) => (name.startsWith("<") ? name : `<${name}>`)

/** `<group>` for each argument of a command. */
const argsOf = (node: Node): string =>
  node.descriptor.args === undefined
    ? ""
    : entries(Args.getHelp(node.descriptor.args)).map(([name]) => angle(name)).join(" ")

const usageOf = (node: Node): string => {
  const args = argsOf(node)
  const hasOptions = node.descriptor.options !== undefined &&
    entries(Options.getHelp(node.descriptor.options)).length > 0
  return ["modulo-group", ...node.path, ...(hasOptions ? ["[options]"] : []), ...(args === "" ? [] : [args])].join(" ")
}

const leaves = (node: Node): Array<Node> =>
  node.children.flatMap((c) => (c.children.length === 0 ? [c] : leaves(c)))

const helpOption: readonly [string, string] = ["-h, --help", "Show this help"]

/** The help of the whole tool (`modulo-group --help`). */
const rootHelp = (root: Node, version: string): string => {
  const commands = leaves(root).map((n) =>
    [[...n.path, argsOf(n)].filter((s) => s.length > 0).join(" "), firstSentence(descriptionOf(n))] as const
  )
  const options = root.descriptor.options === undefined
    ? []
    : entries(Options.getHelp(root.descriptor.options)).map(([t, p]) => [t, describeEntry(p)] as const)
  return [
    ...wrap(`modulo-group ${version}: ${descriptionOf(root)}`),
    "",
    "Usage:",
    "  modulo-group <command> [options]",
    "  modulo-group <command> --help",
    "",
    "Commands:",
    ...commandTable(commands),
    "",
    "Options (accepted by every command):",
    ...table([...options, helpOption, ["--version", "Print the version"]]),
    ""
  ].join("\n")
}

/** The help of one command (`modulo-group join --help`). */
const commandHelp = (node: Node): string => {
  const d = node.descriptor
  const args = d.args === undefined ? [] : entries(Args.getHelp(d.args)).map(([t, p]) => [angle(t), describeEntry(p)] as const)
  const options = d.options === undefined ? [] : entries(Options.getHelp(d.options)).map(([t, p]) => [t, describeEntry(p)] as const)
  const sub = node.children.map((c) =>
    [[...c.path, argsOf(c)].filter((s) => s.length > 0).join(" "), firstSentence(descriptionOf(c))] as const
  )
  const usage = node.children.length > 0
    ? node.children.map(usageOf)
    : [usageOf(node)]
  return [
    "Usage:",
    ...usage.map((u) => `  ${u}`),
    "",
    ...wrap(descriptionOf(node)),
    ...(sub.length > 0 ? ["", "Commands:", ...commandTable(sub)] : []),
    ...(args.length > 0 ? ["", "Arguments:", ...table(args)] : []),
    "",
    "Options:",
    ...table([...options, helpOption]),
    ""
  ].join("\n")
}

const wrap = (text: string): Array<string> => row("", text, 0).split("\n").map((l) => l.replace(/^ {2,4}/, ""))

/**
 * The help `args` (argv without node and the script) ask for, or `undefined` when they ask for none
 * or name something this cannot render. Asked for: `--help` or `-h` anywhere before `--`, after
 * zero or more command names; or a command that has subcommands named without one
 * (`modulo-group`, `modulo-group db`) with no option but `--verbose` (any other, @effect/cli's own
 * `--version`, `--completions` and `--wizard` among them, is @effect/cli's to handle).
 *
 * @since 0.2.0
 * @internal
 */
export const helpFor = <Name extends string, R, E, A>(
  command: Command.Command<Name, R, E, A>,
  args: ReadonlyArray<string>,
  version: string
): string | undefined => {
  const end = args.indexOf("--")
  const before = end === -1 ? args : args.slice(0, end)
  const root = treeOf(command)
  if (root === undefined) return undefined
  let node = root
  let unmatched = false
  for (let i = 0; i < before.length; i++) {
    const arg = before[i]!
    if (arg === "--database-url") {
      i++ // its value
      continue
    }
    if (arg.startsWith("-")) {
      // A flag a command group does not take (`modulo-group --bogus`, `db --purge`): not a request
      // for help, but @effect/cli's usage error (a review: help and exit 0).
      if (arg !== "--verbose" && arg !== "--help" && arg !== "-h") unmatched = true
      continue
    }
    const child = node.children.find((c) => c.descriptor.name === arg)
    if (child !== undefined) node = child
    else unmatched = true
  }
  const asked = before.includes("--help") || before.includes("-h")
  const bare = node.children.length > 0 && !unmatched
  if (!asked && !bare) return undefined
  return node === root ? rootHelp(root, version) : commandHelp(node)
}
