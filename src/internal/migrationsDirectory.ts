/**
 * Where the library's `.sql` migrations are, seen from a module at `moduleUrl`: `migrations/` at the
 * package root, from `src/` or `dist/src/`; or, for the command's bundle (cli/dist/modulo-group.cjs,
 * which inlines the library), the copy it ships beside itself, from the same build (cli/bundle.mjs).
 * A folder counts only when its `0001_init.sql` is the library's (its first line says so) and it
 * holds every migration this build knows (`names`): an app that bundles the library may have a
 * `migrations/` folder of its own at one of these places, whose `0001_init.sql` would otherwise have
 * been applied as the library's, or a copy of an older release's (an app with its own migration tool
 * keeps one: docs/operations.md), which lacked the newest file and failed on it with ENOENT (two
 * reviews, attack110 and attack111). Same names with older contents are not detected.
 */
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"

const marker = "-- modulo-group schema"

const ours = (dir: string): boolean => {
  try {
    const fd = fs.openSync(`${dir}0001_init.sql`, "r")
    try {
      const head = Buffer.alloc(marker.length)
      fs.readSync(fd, head, 0, marker.length, 0)
      return head.toString("utf8") === marker
    } finally {
      fs.closeSync(fd)
    }
  } catch {
    return false
  }
}

/** The candidate folders, in the order they are tried. */
export const candidates = (moduleUrl: string): ReadonlyArray<string> =>
  ["./migrations/", "../migrations/", "../../migrations/"].map((rel) => fileURLToPath(new URL(rel, moduleUrl)))

/** The first of the candidate folders that holds the library's migrations, each of `names`, or undefined. */
export const find = (moduleUrl: string, names: ReadonlyArray<string>): string | undefined =>
  candidates(moduleUrl).find((dir) => ours(dir) && names.every((name) => fs.existsSync(`${dir}${name}.sql`)))
