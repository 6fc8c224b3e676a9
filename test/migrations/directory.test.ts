/**
 * Which `migrations/` folder the library reads its SQL from, seen from a module's place
 * (`internal/migrationsDirectory.ts`). The command's bundle ships a copy beside itself
 * (`cli/dist/migrations/`, looked at first); a folder counts only when its `0001_init.sql` is the
 * library's: an app that bundles the library into `dist/` may have a `migrations/` folder of its own
 * at `dist/migrations/` or at its root, with a `0001_init.sql` of its own, which was taken for the
 * library's (a review of the bundle's copy); or a copy of an older release's migrations, which was
 * taken and then failed on the newest file with ENOENT (two reviews, attack110 and attack111).
 */
import { expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import * as MigrationsDirectory from "../../src/internal/migrationsDirectory.js"
import * as Migrations from "../../src/Migrations.js"

const tree = (files: Record<string, string>) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "mg-migrations-dir-"))
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, name)), { recursive: true })
    fs.writeFileSync(path.join(root, name), text)
  }
  return { root, at: (name: string) => pathToFileURL(path.join(root, name)).href, dir: (name: string) => path.join(root, name) + path.sep }
}

const library = "-- modulo-group schema, version 1.\nCREATE SCHEMA IF NOT EXISTS modulo_group;\n"
const names = ["0001_init", "0002_next"]
const second = "-- modulo-group schema, version 2.\n"
const apps = "-- the app's own first migration\nCREATE TABLE orders (id bigint);\n"

it("an app's own migrations/ beside or above the bundle is not taken for the library's", () => {
  const t = tree({
    "app/dist/migrations/0001_init.sql": apps,
    "app/migrations/0001_init.sql": apps,
    "app/dist/app.js": ""
  })
  try {
    expect(MigrationsDirectory.find(t.at("app/dist/app.js"), names)).toBeUndefined()
  } finally {
    fs.rmSync(t.root, { recursive: true, force: true })
  }
})

it("the bundle's own copy first, then the package root's, each only if it is the library's", () => {
  const t = tree({
    "cli/dist/migrations/0001_init.sql": library,
    "cli/dist/migrations/0002_next.sql": second,
    "cli/dist/modulo-group.cjs": "",
    "pkg/dist/src/Migrations.js": "",
    "pkg/migrations/0001_init.sql": library,
    "pkg/migrations/0002_next.sql": second,
    "mixed/dist/migrations/0001_init.sql": apps,
    "mixed/migrations/0001_init.sql": library,
    "mixed/migrations/0002_next.sql": second,
    "mixed/dist/app.js": "",
    // An older release's copy (no 0002) beside the bundle, the package's own above it.
    "stale/dist/src/migrations/0001_init.sql": library,
    "stale/migrations/0001_init.sql": library,
    "stale/migrations/0002_next.sql": second,
    "stale/dist/src/app.js": ""
  })
  try {
    expect(MigrationsDirectory.find(t.at("cli/dist/modulo-group.cjs"), names)).toBe(t.dir("cli/dist/migrations"))
    expect(MigrationsDirectory.find(t.at("pkg/dist/src/Migrations.js"), names)).toBe(t.dir("pkg/migrations"))
    expect(MigrationsDirectory.find(t.at("mixed/dist/app.js"), names)).toBe(t.dir("mixed/migrations"))
    expect(MigrationsDirectory.find(t.at("stale/dist/src/app.js"), names)).toBe(t.dir("stale/migrations"))
    // Only the older copy: none (the library says where it looked), not an ENOENT on the newest file.
    fs.rmSync(t.dir("stale/migrations"), { recursive: true })
    expect(MigrationsDirectory.find(t.at("stale/dist/src/app.js"), names)).toBeUndefined()
  } finally {
    fs.rmSync(t.root, { recursive: true, force: true })
  }
})

it("this package's own migrations are found, and are the library's", () => {
  expect(Migrations.sqlOf("0001_init").startsWith("-- modulo-group schema")).toBe(true)
})
