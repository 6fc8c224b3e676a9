/**
 * Where the library's `.sql` migrations are, seen from a module at `moduleUrl`: `migrations/` at the
 * package root, from `src/` or `dist/src/`; or, for the command's bundle (cli/dist/modulo-group.cjs,
 * which inlines the library), the copy it ships beside itself, from the same build (cli/bundle.mjs).
 * A folder counts only when its `0001_init.sql` is the library's (its first line says so): an app
 * that bundles the library may have a `migrations/` folder of its own at one of these places, whose
 * `0001_init.sql` would otherwise have been applied as the library's.
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

/** The first of the candidate folders that holds the library's migrations, or undefined. */
export const find = (moduleUrl: string): string | undefined => {
  for (const rel of ["./migrations/", "../migrations/", "../../migrations/"]) {
    const dir = fileURLToPath(new URL(rel, moduleUrl))
    if (ours(dir)) return dir
  }
  return undefined
}
