/**
 * The library and the command import Effect's modules one by one (`import * as Effect from
 * "effect/Effect"`), never by name from a package's index (`import { Effect } from "effect"`): a name
 * from the index is a namespace object to a bundler, which then keeps every export of that module and
 * everything they use. The command's bundle (cli/dist/modulo-group.cjs) was 1,151 KB with the index
 * imports and 782 KB without; its start (`join --json` to its first event) 306 → 243 ms, `--help`
 * 237 → 168 ms (docs/benchmarks.md). An app that bundles the library gains the same. Type-only
 * imports are erased and may use the index.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { expect, it } from "vitest"

const root = fileURLToPath(new URL("..", import.meta.url))
const sources = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? sources(path.join(dir, e.name))
      : e.name.endsWith(".ts") ? [path.join(dir, e.name)] : []
  )

it("src/ and cli/src/ import Effect's packages module by module, not by name from an index", () => {
  const offenders: Array<string> = []
  for (const file of [...sources(path.join(root, "src")), ...sources(path.join(root, "cli", "src"))]) {
    const text = fs.readFileSync(file, "utf8")
    for (const m of text.matchAll(/^import\s+\{[^}]*\}\s+from\s+"(effect|@effect\/[a-z-]+)"/gm)) {
      offenders.push(`${path.relative(root, file)}: ${m[0].replace(/\s+/g, " ")}`)
    }
  }
  expect(offenders).toEqual([])
})
