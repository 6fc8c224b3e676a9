/**
 * Every ```ts snippet of README.md and docs/*.md type-checks against the library, as an app would
 * write it: each snippet is a module of its own, `modulo-group` and `modulo-group/testing` resolve
 * to src/ (the repository's compiler options: strict, exactOptionalPropertyTypes, NodeNext), and the
 * other packages to node_modules. A snippet that is deliberately partial, or imports what the
 * repository does not install, is fenced as ```ts no-check (keep that rare; it is counted below).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import ts from "typescript"
import { describe, expect, it } from "vitest"

const root = fileURLToPath(new URL("../..", import.meta.url))

interface Snippet {
  /** `docs/work.md:16` */
  readonly where: string
  readonly source: string
  readonly info: string
}

const fence = /^```(\S*)(.*)$/

/** The fenced blocks of a Markdown file whose language is ts/typescript. */
const snippetsOf = (file: string): Array<Snippet> => {
  const lines = fs.readFileSync(path.join(root, file), "utf8").split("\n")
  const out: Array<Snippet> = []
  let open: { line: number; lang: string; info: string; body: Array<string> } | undefined
  lines.forEach((line, i) => {
    if (open === undefined) {
      const m = fence.exec(line)
      if (m !== null && m[1] !== "") open = { line: i + 1, lang: m[1]!, info: m[2]!.trim(), body: [] }
      else if (line.startsWith("```")) open = { line: i + 1, lang: "", info: "", body: [] }
    } else if (line.startsWith("```")) {
      if (open.lang === "ts" || open.lang === "typescript") {
        out.push({ where: `${file}:${open.line}`, source: open.body.join("\n"), info: open.info })
      }
      open = undefined
    } else {
      open.body.push(line)
    }
  })
  return out
}

const markdownFiles = [
  "README.md",
  ...fs.readdirSync(path.join(root, "docs")).filter((f) => f.endsWith(".md")).sort().map((f) => `docs/${f}`)
]

const all = markdownFiles.flatMap(snippetsOf)
const checked = all.filter((s) => !s.info.split(/\s+/).includes("no-check"))

describe("the code snippets of README.md and docs/", () => {
  it("are mostly checked: no-check stays rare", () => {
    expect(checked.length).toBeGreaterThanOrEqual(8)
    expect(all.length - checked.length, `no-check snippets: ${all.filter((s) => !checked.includes(s)).map((s) => s.where).join(", ")}`)
      .toBeLessThanOrEqual(2)
  })

  it("type-check against the library", () => {
    const config = ts.readConfigFile(path.join(root, "tsconfig.json"), ts.sys.readFile)
    const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, root)
    const dir = path.join(root, ".tmp", "snippets")
    fs.rmSync(dir, { recursive: true, force: true })
    fs.mkdirSync(dir, { recursive: true })
    const byFile = new Map<string, Snippet>()
    const files = checked.map((s, i) => {
      const file = path.join(dir, `snippet${i}_${s.where.replace(/[^a-zA-Z0-9]+/g, "_")}.ts`)
      // A module of its own, whether or not it imports anything.
      fs.writeFileSync(file, `${s.source}\nexport {}\n`)
      byFile.set(file, s)
      return file
    })
    const program = ts.createProgram(files, {
      ...parsed.options,
      noEmit: true,
      declaration: false,
      sourceMap: false,
      // An example may declare what it does not use.
      noUnusedLocals: false,
      noUnusedParameters: false,
      rootDir: root,
      paths: {
        "modulo-group": [path.join(root, "src/index.ts")],
        "modulo-group/testing": [path.join(root, "src/testing.ts")]
      }
    })
    const problems = ts.getPreEmitDiagnostics(program).map((d) => {
      const message = ts.flattenDiagnosticMessageText(d.messageText, "\n")
      if (d.file === undefined) return message
      const snippet = byFile.get(path.normalize(d.file.fileName))
      const { line } = d.file.getLineAndCharacterOfPosition(d.start ?? 0)
      if (snippet === undefined) return `${path.relative(root, d.file.fileName)}:${line + 1}: ${message}`
      const [file, start] = snippet.where.split(":")
      return `${file}:${Number(start) + 1 + line}: ${message}`
    })
    expect(problems, problems.join("\n\n")).toEqual([])
  }, 120_000)
})
