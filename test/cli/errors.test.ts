/**
 * Bad input: one line on stderr, a non-zero exit, no stack trace (unless --verbose).
 */
import { beforeAll, describe, expect, it } from "vitest"
import { databaseUrl, randomGroupId } from "../support/Database.js"
import { assertBuilt, Member, run } from "./support.js"

const USAGE = 2
const FAILURE = 1

const oneLine = (stderr: string): string => {
  const lines = stderr.split("\n").filter((l) => l.trim() !== "")
  expect(lines, `one line on stderr, got:\n${stderr}`).toHaveLength(1)
  expect(stderr).not.toMatch(/^\s+at /m)
  return lines[0]!
}

describe("modulo-group bad input (child processes)", () => {
  const env = { ...process.env, DATABASE_URL: databaseUrl() }
  const group = randomGroupId("cli-errors")
  beforeAll(assertBuilt)

  it("a malformed duration", async () => {
    const r = await run(["join", group, "--heartbeat", "5"], env)
    expect(r.code).toBe(USAGE)
    expect(oneLine(r.stderr)).toBe(
      "modulo-group: Invalid value for --heartbeat: \"5\" is not a duration (use e.g. 250ms, 2s, 1m or \"250 millis\")"
    )
    expect(r.stdout).toBe("")
  })

  // Every duration of the command is at least 1 ms (a review: `--work-interval 100ns` was taken, its
  // loop printed flat out and starved the member's renewals until it fenced).
  it.each([
    [["join", group, "--work-interval", "100ns"], "--work-interval", "100ns"],
    [["join", group, "--heartbeat", "0.5ms"], "--heartbeat", "0.5ms"],
    [["demo", "--batch-interval", "999 micros"], "--batch-interval", "999 micros"]
  ])("a duration under 1 ms (%j) is a usage error", async (args, flag, value) => {
    const r = await run(args, env)
    expect(r.code).toBe(USAGE)
    expect(oneLine(r.stderr)).toBe(`modulo-group: Invalid value for ${flag}: "${value}" is shorter than 1ms`)
    expect(r.stdout).toBe("")
  })

  // The option parser's own errors were its text and a blank line, without the tool's prefix.
  it.each([
    [["join", group, "--bogus"], "modulo-group: Received unknown argument: '--bogus'"],
    [["join", "--heartbeat"], "modulo-group: Expected a value following option: '--heartbeat'"],
    [["join"], "modulo-group: Missing argument <group>"],
    [["frobnicate"], "modulo-group: Invalid subcommand for modulo-group - use one of 'join', 'status', 'groups', 'migrate', 'db', 'demo', 'ui'"]
  ])("the option parser's error for %j: one line with the tool's prefix", async (args, line) => {
    const r = await run(args, env)
    expect(r.code).toBe(USAGE)
    expect(oneLine(r.stderr)).toBe(line)
    expect(r.stderr.endsWith(`${line}\n`)).toBe(true)
    expect(r.stdout).toBe("")
  })

  it("a lease not longer than heartbeat + fence margin + statement timeout", async () => {
    const r = await run(["join", group, "--heartbeat", "1s", "--lease", "4 seconds"], env)
    expect(r.code).toBe(USAGE)
    expect(oneLine(r.stderr)).toBe(
      "modulo-group: Invalid modulo-group config \"lease\": lease (4s) must exceed heartbeat (1s) + fenceMargin (2s) + statementTimeout (2s)"
    )
  })

  it.each([
    [["join", "g", "--metrics-port", "0", "--metrics-host", ""], "--metrics-host"],
    [["ui", "--host", " "], "--host"]
  ])("an empty server address (%j) is a usage error, not every interface", async (args, flag) => {
    const r = await run(args, env)
    expect(r.code).toBe(USAGE)
    expect(oneLine(r.stderr)).toBe(`modulo-group: ${flag} is empty (for every interface give 0.0.0.0 or ::)`)
    expect(r.stdout).toBe("")
  })

  it.each([[["--wizard"]], [["join", "--wizard"]]])("%j without a terminal is a usage error, not a wait for ever", async (args) => {
    const r = await run(args, env)
    expect(r.code).toBe(USAGE)
    expect(oneLine(r.stderr)).toBe("modulo-group: --wizard asks its questions on a terminal, and standard input is not one")
    expect(r.stdout).toBe("")
  })

  it("an unreachable DATABASE_URL fails fast", async () => {
    const r = await run(["join", group], { ...env, DATABASE_URL: "postgres://postgres:secret@127.0.0.1:1/nowhere" })
    expect(r.code).toBe(FAILURE)
    const line = oneLine(r.stderr)
    expect(line).toMatch(/^modulo-group: cannot connect to the database at postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:1\/nowhere: .*ECONNREFUSED/)
    expect(line).not.toContain("secret")
    expect(r.ms).toBeLessThan(10_000)
  })

  it("a malformed DATABASE_URL", async () => {
    const r = await run(["join", group], { ...env, DATABASE_URL: "localhost:5432/db" })
    expect(r.code).toBe(USAGE)
    expect(oneLine(r.stderr)).toMatch(/^modulo-group: invalid database URL "localhost:5432\/db": /)
  })

  it("--database-url wins over DATABASE_URL and is checked the same way", async () => {
    const r = await run(["status", group, "--database-url", "mysql://u@h/db"], env)
    expect(r.code).toBe(USAGE)
    expect(oneLine(r.stderr)).toMatch(/^modulo-group: invalid database URL "mysql:\/\/u@h\/db": unsupported scheme "mysql"/)
  })

  it("an empty --database-url is refused, not read as no option (it ran the member on the embedded server, a review)", async () => {
    const r = await run(["join", group, "--database-url", ""], env)
    expect(r.code).toBe(USAGE)
    expect(oneLine(r.stderr)).toMatch(/^modulo-group: --database-url is empty \(a shell variable that is not set\?\)/)
  })

  it("a group id that starts with -- is refused: an option whose value was forgotten (`join --fibers` joined a group \"--fibers\")", async () => {
    const r = await run(["status", "--heartbeat"], env)
    expect(r.code).toBe(USAGE)
    expect(r.stderr).toContain(`Invalid group "--heartbeat": it looks like an option missing its value`)
    const join = await run(["join", "--fibers"], env)
    expect(join.code).toBe(USAGE)
    expect(join.stdout).not.toContain("joining")
  })

  it("a group id the library rejects", async () => {
    const empty = await run(["join", ""], env)
    expect(empty.code).toBe(USAGE)
    expect(oneLine(empty.stderr)).toBe("modulo-group: Invalid group id \"\": it is empty")
    const long = await run(["status", "x".repeat(201)], env)
    expect(long.code).toBe(USAGE)
    expect(oneLine(long.stderr)).toMatch(/it is 201 characters long; at most 200 are allowed$/)
  })

  it("--metrics-port out of range is a usage error before any database work, as `ui --port`", async () => {
    for (const port of ["99999", "-1"]) {
      const r = await run(["join", group, "--metrics-port", port], env, 15_000)
      expect(r.code).toBe(USAGE)
      expect(oneLine(r.stderr)).toBe(`modulo-group: --metrics-port must be between 0 and 65535, got ${port}`)
    }
  })

  it("--rejoin-grace without an instance id, and an empty --name, are usage errors", async () => {
    const noInstance: NodeJS.ProcessEnv = { ...env, MODULO_GROUP_INSTANCE_ID: "" }
    const grace = await run(["join", group, "--rejoin-grace", "5s"], noInstance, 15_000)
    expect(grace.code).toBe(USAGE)
    expect(oneLine(grace.stderr)).toMatch(/^modulo-group: --rejoin-grace applies to static members only: give --instance-id/)
    const name = await run(["join", group, "--name", ""], env, 15_000)
    expect(name.code).toBe(USAGE)
    expect(oneLine(name.stderr)).toMatch(/^modulo-group: --name must not be empty/)
  })

  it("MODULO_GROUP_REJOIN_GRACE without an instance id is said once on stderr, and the member joins", async () => {
    const member = new Member("grace", group, [], { ...env, MODULO_GROUP_INSTANCE_ID: "", MODULO_GROUP_REJOIN_GRACE: "30s" })
    try {
      await member.waitFor((e) => e.event === "state" && e.state === "assigned", 20_000, "assigned")
      expect(member.stderr).toContain(
        "modulo-group: MODULO_GROUP_REJOIN_GRACE applies to static members only, and this one has no instance id"
      )
      expect(member.stderr.split("MODULO_GROUP_REJOIN_GRACE applies").length).toBe(2)
      expect(member.stderr).not.toContain("join does not read")
    } finally {
      member.kill("SIGTERM")
      expect((await member.exited).code).toBe(0)
    }
  })

  // A docs audit: a fleet that sets the library's layerFromEnv variables for its `join` processes too
  // ran them at the flags' defaults, unsaid.
  it("layerFromEnv's variables that join does not read are named once on stderr, with the flags to use", async () => {
    const member = new Member("unread", group, ["--heartbeat", "1s"], {
      ...env,
      MODULO_GROUP_LEASE: "2 seconds",
      MODULO_GROUP_FENCE_MARGIN: "1 second",
      MODULO_GROUP_STOP_TIMEOUT: "9s",
      // The same values as join's: not said (a review, attack110, could not silence the notice).
      MODULO_GROUP_HEARTBEAT: "1 second",
      MODULO_GROUP_GROUP_ID: group
    })
    try {
      await member.waitFor((e) => e.event === "state" && e.state === "assigned", 20_000, "assigned")
      expect(member.stderr.replace(/\n/g, " ")).toContain(
        "modulo-group: join does not read MODULO_GROUP_LEASE (--lease), MODULO_GROUP_FENCE_MARGIN (--fence-margin), " +
          "MODULO_GROUP_STOP_TIMEOUT (no flag: 5s), variables of the library's layerFromEnv: ignored"
      )
      expect(member.stderr.split("join does not read").length).toBe(2)
    } finally {
      member.kill("SIGTERM")
      expect((await member.exited).code).toBe(0)
    }
  })

  it("a database URL whose port is out of range says so", async () => {
    const r = await run(["status", group], { ...env, DATABASE_URL: "postgres://u:secret@db.example:99999/x" })
    expect(r.code).toBe(USAGE)
    expect(oneLine(r.stderr)).toMatch(/^modulo-group: invalid database URL "[^"]*": port 99999 is out of range \(0 to 65535\)/)
  })

  it("--verbose adds the cause", async () => {
    const r = await run(["join", group, "--verbose"], { ...env, DATABASE_URL: "postgres://postgres@127.0.0.1:1/nowhere" })
    expect(r.code).toBe(FAILURE)
    const lines = r.stderr.split("\n").filter((l) => l.trim() !== "")
    expect(lines[0]).toMatch(/^modulo-group: cannot connect to the database/)
    expect(lines.length).toBeGreaterThan(1)
  })

  it("status of a group nobody joined", async () => {
    const r = await run(["status", randomGroupId("cli-nobody")], env)
    expect(r.code).toBe(FAILURE)
    expect(oneLine(r.stderr)).toMatch(/^modulo-group: group "test-cli-nobody-[0-9a-f]+" not found/)
  })
})
