/**
 * The command's start-up code cache (cli/bin/modulo-group.js, docs/cli.md "Start-up"): written by the
 * first run of a build, used as it is by later runs, rewritten when V8 rejects it, never read from or
 * written to a directory others can write to, and off with MODULO_GROUP_CODE_CACHE=0. A cache is an
 * optimisation only: the command's output is the same with or without it.
 */
import { isAscii } from "node:buffer"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterEach, beforeAll, expect, it } from "vitest"
import { assertBuilt, run } from "./support.js"

beforeAll(() => assertBuilt())

const dirs: Array<string> = []
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
})

/** A fresh XDG_CACHE_HOME, and where the command keeps its cache under it. */
const cacheHome = () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "mg-code-cache-"))
  dirs.push(home)
  return { home, dir: path.join(home, "modulo-group", "code-cache") }
}
const cacheFiles = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith(".bin")) : [])
const help = (home: string, extra: NodeJS.ProcessEnv = {}) =>
  run(["--help"], { ...process.env, XDG_CACHE_HOME: home, MODULO_GROUP_CODE_CACHE: "", ...extra })

it("the first run writes the cache; the next runs from it, as it is (a cache V8 accepted is not written again)", async () => {
  const { dir, home } = cacheHome()
  const first = await help(home)
  expect(first.code).toBe(0)
  const files = cacheFiles(dir)
  expect(files).toHaveLength(1)
  const file = path.join(dir, files[0]!)
  const written = fs.readFileSync(file)
  const mtime = fs.statSync(file).mtimeMs
  const second = await help(home)
  expect(second.code).toBe(0)
  expect(second.stdout).toBe(first.stdout)
  expect(cacheFiles(dir)).toEqual(files)
  expect(fs.statSync(file).mtimeMs).toBe(mtime)
  expect(fs.readFileSync(file).equals(written)).toBe(true)
})

it("each command has its own cache: one written by --help is not the one `migrate` starts from", async () => {
  const { dir, home } = cacheHome()
  expect((await help(home)).code).toBe(0)
  const [helpFile] = cacheFiles(dir)
  expect(helpFile).toMatch(/-other\.bin$/)
  const helpMtime = fs.statSync(path.join(dir, helpFile!)).mtimeMs
  const migrate = await run(["--verbose", "migrate", "--help"], { ...process.env, XDG_CACHE_HOME: home, MODULO_GROUP_CODE_CACHE: "" })
  expect(migrate.code).toBe(0)
  const files = cacheFiles(dir)
  expect(files).toHaveLength(2)
  expect(files.find((f) => f !== helpFile)).toMatch(/-migrate\.bin$/)
  // Both of one bundle: the same key before the command.
  expect(new Set(files.map((f) => f.replace(/-[a-z]+\.bin$/, ""))).size).toBe(1)
  expect(fs.statSync(path.join(dir, helpFile!)).mtimeMs).toBe(helpMtime)
})

it("the bin's list of commands (for their caches) is the one --help shows", async () => {
  const source = fs.readFileSync(fileURLToPath(new URL("../../cli/bin/modulo-group.js", import.meta.url)), "utf8")
  const listed = JSON.parse(/const commands = (\[[^\]]*\])/.exec(source)![1]!) as Array<string>
  const { home } = cacheHome()
  const { stdout } = await help(home)
  const section = stdout.split("Commands:\n")[1]!.split("\n\n")[0]!
  const shown = [...new Set(section.split("\n").map((line) => line.trim().split(/\s+/)[0]!))]
  expect(listed).toEqual(shown)
})

it("a damaged cache is rejected and written again; the command runs as without it", async () => {
  const { dir, home } = cacheHome()
  const first = await help(home)
  const [name] = cacheFiles(dir)
  const file = path.join(dir, name!)
  const garbage = Buffer.alloc(fs.statSync(file).size, 0x5a)
  fs.writeFileSync(file, garbage)
  const again = await help(home)
  expect(again.code).toBe(0)
  expect(again.stdout).toBe(first.stdout)
  expect(fs.readFileSync(file).equals(garbage)).toBe(false)
})

it("a cache directory others can write to is neither read nor written", async () => {
  const { dir, home } = cacheHome()
  fs.mkdirSync(dir, { recursive: true })
  fs.chmodSync(dir, 0o777)
  const result = await help(home)
  expect(result.code).toBe(0)
  expect(result.stdout).toContain("modulo-group")
  expect(cacheFiles(dir)).toEqual([])
})

it("MODULO_GROUP_CODE_CACHE=0 writes no cache", async () => {
  const { dir, home } = cacheHome()
  const result = await help(home, { MODULO_GROUP_CODE_CACHE: "0" })
  expect(result.code).toBe(0)
  expect(cacheFiles(dir)).toEqual([])
})

it("the bundle is ASCII, so the start decodes it without a pass of UTF-8 validation", () => {
  const bundle = fileURLToPath(new URL("../../cli/dist/modulo-group.cjs", import.meta.url))
  expect(isAscii(fs.readFileSync(bundle))).toBe(true)
})
