/**
 * `modulo-group --help` and `modulo-group join --help` read cleanly: commands first, one line each;
 * no value-type boilerplate ("A user-defined piece of text."); each option once, with its default;
 * usage lines start with `modulo-group`. Child processes of the built CLI (no database needed).
 */
import { beforeAll, describe, expect, it } from "vitest"
import { assertBuilt, run } from "./support.js"

const env = { ...process.env, DATABASE_URL: "postgres://nobody@127.0.0.1:1/never-used" }

/** The lines of a section (`Commands:`, `Options:`, ...) up to the next blank line. */
const section = (text: string, title: string): Array<string> => {
  const lines = text.split("\n")
  const start = lines.indexOf(title)
  expect(start, `a "${title}" section in:\n${text}`).toBeGreaterThanOrEqual(0)
  const end = lines.indexOf("", start)
  return lines.slice(start + 1, end === -1 ? undefined : end)
}

/** The option names of an options section (`--lease duration  ...` -> `--lease`). */
const optionNames = (lines: ReadonlyArray<string>) =>
  lines.filter((l) => /^ {2}-/.test(l)).flatMap((l) => l.trim().split(/\s{2,}/)[0]!.split(/,\s*/).map((n) => n.split(" ")[0]!))

const boilerplate = [
  "A user-defined piece of text.",
  "This setting is optional.",
  "A true or false value.",
  "An integer.",
  "--wizard",
  "--completions",
  "\u001b["
]

const clean = (text: string) => {
  for (const b of boilerplate) expect(text, `no ${JSON.stringify(b)} in:\n${text}`).not.toContain(b)
}

describe("modulo-group --help (child processes)", () => {
  beforeAll(assertBuilt)

  it("lists the commands first, one line each, then the shared options", async () => {
    const r = await run(["--help"], env)
    expect(r.code).toBe(0)
    expect(r.stderr).toBe("")
    clean(r.stdout)
    const text = r.stdout
    const commands = section(text, "Commands:")
    expect(text.indexOf("Commands:")).toBeLessThan(text.indexOf("Options"))
    const names = commands.map((l) => l.trim().split(/\s{2,}/)[0])
    for (const name of ["join <group>", "status <group>", "groups", "migrate", "db status", "db stop", "db url", "demo"]) {
      expect(names).toContain(name)
    }
    // One line each: every line of the section is a command with its summary.
    for (const l of commands) expect(l).toMatch(/^ {2}\S.*\S {2,}\S/)
    for (const u of section(text, "Usage:")) expect(u.trim()).toMatch(/^modulo-group /)
    const options = optionNames(section(text, "Options (accepted by every command):"))
    expect(options).toEqual(["--database-url", "--verbose", "-h", "--help", "--version"])
  })

  it("join --help: usage from modulo-group, each option once with its default, the argument", async () => {
    const r = await run(["join", "--help"], env)
    expect(r.code).toBe(0)
    clean(r.stdout)
    const usage = section(r.stdout, "Usage:")
    expect(usage).toEqual(["  modulo-group join [options] <group>"])
    expect(section(r.stdout, "Arguments:")).toEqual(["  <group>  The group id (any text up to 200 characters, not starting with --)"])
    const options = section(r.stdout, "Options:")
    const names = optionNames(options)
    expect(new Set(names).size, `each option once: ${names.join(" ")}`).toBe(names.length)
    for (
      const name of [
        "--work-interval",
        "--heartbeat",
        "--lease",
        "--fence-margin",
        "--statement-timeout",
        "--name",
        "--json",
        "--metrics-port",
        "--metrics-host",
        "--fibers",
        "--database-url",
        "--verbose",
        "--help"
      ]
    ) expect(names).toContain(name)
    // Every option that takes a value states its default (flags default to off).
    const entries = options.join("\n").split(/\n(?= {2}-)/)
    for (const entry of entries) {
      const [term] = entry.trim().split(/\s{2,}/)
      if (term!.includes(" ") && !term!.startsWith("-h")) expect(entry, `a default in ${entry}`).toMatch(/default/)
    }
    expect(options.join("\n")).toMatch(/--heartbeat duration\s+Lease renewal and polling interval \(default 1s\)/)
    expect(options.join("\n")).toMatch(/--metrics-host host\s+.*\(default 127\.0\.0\.1\)/)
    expect(options.join("\n")).toMatch(/--fibers n\s+Host n members of the group in this process \(1 to 10000\)/)
  })

  it("a bare `modulo-group` (or `modulo-group db`) prints the same help as --help", async () => {
    const [bare, help, db, dbHelp] = await Promise.all([
      run([], env),
      run(["--help"], env),
      run(["db"], env),
      run(["db", "--help"], env)
    ])
    expect(bare.code).toBe(0)
    expect(bare.stdout).toBe(help.stdout)
    expect(db.stdout).toBe(dbHelp.stdout)
    clean(db.stdout)
  })

  it("an option a command group does not take (`--bogus`, `-x`, `db --purge`) is a usage error, not help", async () => {
    // A review: these printed the help and exited 0.
    for (const args of [["--bogus"], ["-x"], ["db", "--purge"]]) {
      const r = await run(args, env)
      expect(r.code, args.join(" ")).toBe(2)
      expect(r.stdout, args.join(" ")).toBe("")
    }
    const verbose = await run(["--verbose"], env)
    expect(verbose.code).toBe(0)
  })

  it("db stop -h and the other commands' help start their usage with modulo-group", async () => {
    for (const args of [["db", "stop", "-h"], ["db", "--help"], ["status", "--help"], ["demo", "--help"]]) {
      const r = await run(args, env)
      expect(r.code).toBe(0)
      clean(r.stdout)
      for (const u of section(r.stdout, "Usage:")) expect(u.trim()).toMatch(new RegExp(`^modulo-group ${args[0]}`))
    }
  })
})
