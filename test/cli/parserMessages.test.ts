/**
 * A review of the command line: option-parser messages that point the user the wrong way.
 * - `db bogus` lists the top-level commands ("use one of 'join', 'status', ...") though the user is
 *   in `db`, whose subcommands are status, stop and url: following the advice (`db join`) fails again.
 * - `status g --json --json` says "Received unknown argument: '--json'": --json is a known option,
 *   given twice.
 * - `join g --lease` (a value option at the end, its value forgotten, or `--database-url $UNSET`
 *   unquoted) says "Received unknown argument: '--lease'": the option is known, its value is missing
 *   (the commit c3132ce says the parser's "option without its value" error is one clear line).
 */
import { describe, expect, it } from "vitest"
import { assertBuilt, run } from "./support.js"

const env = { ...process.env, DATABASE_URL: "postgres://nobody@127.0.0.1:1/nowhere" }

describe("parser messages", () => {
  it("db with an unknown subcommand names db's subcommands", async () => {
    assertBuilt()
    const r = await run(["db", "bogus"], env)
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/status/)
    expect(r.stderr).toMatch(/stop/)
    expect(r.stderr).toMatch(/url/)
    expect(r.stderr).not.toContain("'join'")
  })

  it("a flag given twice is not called unknown", async () => {
    assertBuilt()
    const r = await run(["status", "g", "--json", "--json"], env)
    expect(r.code).toBe(2)
    expect(r.stderr).not.toMatch(/unknown argument: '--json'/)
  })

  for (const args of [["join", "g", "--lease"], ["status", "g", "--database-url"], ["ui", "--port"]]) {
    it(`${args.join(" ")}: says the option's value is missing, not that the option is unknown`, async () => {
      assertBuilt()
      const r = await run(args, env)
      expect(r.code).toBe(2)
      const flag = args[args.length - 1]!
      expect(r.stderr).not.toContain(`unknown argument: '${flag}'`)
      expect(r.stderr).toMatch(/value/i)
    })
  }
})
