/**
 * Plain-JavaScript snapshots for the process members, made once at the start of a run with the
 * TypeScript compiler's transpiler (no type check, a second or two):
 * - the library (src/ and migrations/) into .tmp/bench/lib, what bench/member.mjs loads: the
 *   fiber members (which vitest loads from src/) and the process members then run the same code,
 *   even if someone rebuilds dist/ meanwhile;
 * - bench/original/Original.ts into .tmp/bench/original, what bench/original-member.mjs loads.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import ts from "typescript"

export const root = fileURLToPath(new URL("../../", import.meta.url))
const out = path.join(root, ".tmp", "bench")

const transpile = (from: string, to: string) => {
  const source = fs.readFileSync(from, "utf8")
  const result = ts.transpileModule(source, {
    fileName: from,
    compilerOptions: {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ES2022,
      verbatimModuleSyntax: false,
      sourceMap: false
    }
  })
  fs.mkdirSync(path.dirname(to), { recursive: true })
  fs.writeFileSync(to, result.outputText)
}

const walk = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(path.join(dir, e.name)) : e.name.endsWith(".ts") ? [path.join(dir, e.name)] : []
  )

export interface Snapshots {
  /** file URL of the library's index.js */
  readonly lib: string
  /** file URL of Original.js */
  readonly original: string
}

export const buildSnapshots = (): Snapshots => {
  const lib = path.join(out, "lib")
  fs.rmSync(lib, { recursive: true, force: true })
  // BENCH_SRC: a directory holding another tree's src/ (e.g. `git archive main src | tar -x -C dir`),
  // to measure that library with this run's bench (a before/after).
  const srcRoot = process.env.BENCH_SRC ?? root
  for (const file of walk(path.join(srcRoot, "src"))) {
    transpile(file, path.join(lib, path.relative(srcRoot, file)).replace(/\.ts$/, ".js"))
  }
  fs.cpSync(path.join(root, "migrations"), path.join(lib, "migrations"), { recursive: true })
  const original = path.join(out, "original", "Original.js")
  transpile(path.join(root, "bench", "original", "Original.ts"), original)
  return {
    lib: pathToFileURL(path.join(lib, "src", "index.js")).href,
    original: pathToFileURL(original).href
  }
}
