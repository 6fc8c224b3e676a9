/**
 * `modulo-group ui` in a real headless Chromium (Debian's `chromium`), driven over the DevTools
 * protocol: the page shows a group's members, shows a member that joins and drops one that leaves
 * within a second of the change (pushed: nobody reloads), and its timeline shows a SIGKILL (the
 * crashed member's lease expires and it is reaped) and the rejoin under the same name.
 *
 * Everything runs in a database of the test's own (dropped at the end), against spawned CLI
 * processes (`ui`, and `join` members), never the embedded server. With UPDATE_UI_SCREENSHOTS=1 the
 * screenshots go to docs/images/ (what docs/ui.md shows); otherwise to a temporary directory.
 */
import { describe, expect, it } from "@effect/vitest"
import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import pg from "pg"
import { assertBuilt, bin, Member } from "../cli/support.js"
import * as Slots from "../../src/Slots.js"
import { databaseUrl } from "../support/Database.js"
import { findChromium, launch } from "./cdp.js"

const chromium = findChromium()
if (chromium === undefined) console.log("skipped: chromium not installed (apt-get install chromium)")

const fast = ["--heartbeat", "300ms", "--lease", "3s", "--fence-margin", "500ms", "--statement-timeout", "1s", "--work-interval", "1s"]

const imagesDir = process.env["UPDATE_UI_SCREENSHOTS"] === "1"
  ? fileURLToPath(new URL("../../docs/images/", import.meta.url))
  : fs.mkdtempSync(path.join(os.tmpdir(), "mg-ui-shots-"))

const admin = async <A>(f: (c: pg.Client) => Promise<A>): Promise<A> => {
  const c = new pg.Client({ connectionString: databaseUrl() })
  c.on("error", () => undefined)
  await c.connect()
  try {
    return await f(c)
  } finally {
    await c.end().catch(() => undefined)
  }
}

/** `modulo-group ui --port 0`: resolves with its URL once it listens. */
const startUi = (env: NodeJS.ProcessEnv) =>
  new Promise<{ child: ChildProcess; url: string; exited: Promise<unknown> }>((resolve, reject) => {
    const child = spawn(process.execPath, [bin, "ui", "--port", "0"], { env, stdio: ["ignore", "pipe", "pipe"] })
    const exited = new Promise((r) => child.once("exit", r))
    let err = ""
    child.stderr!.on("data", (c: Buffer) => (err += c.toString("utf8")))
    const timer = setTimeout(() => reject(new Error(`ui did not start within 30 s: ${err}`)), 30_000)
    readline.createInterface({ input: child.stdout! }).on("line", (line) => {
      const m = /(http:\/\/\S+)/.exec(line)
      if (m !== null) {
        clearTimeout(timer)
        resolve({ child, url: m[1]!, exited })
      }
    })
    child.once("exit", (code) => {
      clearTimeout(timer)
      reject(new Error(`ui exited (${code}): ${err}`))
    })
  })

/** A database of the test's own (dropped by `tearDown`), and the environment that points at it. */
const ownDatabase = async () => {
  const dbName = `mg_ui_${randomBytes(5).toString("hex")}`
  await admin((c) => c.query(`CREATE DATABASE ${dbName}`))
  const url = new URL(databaseUrl())
  url.pathname = `/${dbName}`
  return { dbName, env: { ...process.env, DATABASE_URL: url.toString() } }
}

/** The browser, the members, the `ui` process and the test's database: all gone. */
const tearDown = async (
  browser: Awaited<ReturnType<typeof launch>> | undefined,
  members: ReadonlyArray<Member>,
  ui: Awaited<ReturnType<typeof startUi>> | undefined,
  dbName: string
) => {
  await browser?.close().catch(() => undefined)
  for (const m of members) m.kill("SIGKILL")
  await Promise.all(members.map((m) => m.exited))
  if (ui !== undefined) {
    ui.child.kill("SIGTERM")
    await ui.exited
  }
  await admin((c) => c.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`))
}

describe.skipIf(chromium === undefined)("modulo-group ui in headless Chromium", () => {
  it("shows a group live: joins and leaves within a second, a kill and a rejoin on the timeline", async () => {
    assertBuilt()
    const { dbName, env } = await ownDatabase()
    const group = "orders"
    const members: Array<Member> = []
    let ui: Awaited<ReturnType<typeof startUi>> | undefined
    let browser: Awaited<ReturnType<typeof launch>> | undefined
    const join = (name: string) => {
      const m = new Member(name, group, fast, env)
      members.push(m)
      return m
    }
    const figures: Record<string, number> = {}
    try {
      // Three members first (the first one installs the schema), then the dashboard and the browser.
      const first = ["worker-a", "worker-b", "worker-c"].map(join)
      await Promise.all(first.map((m) => m.waitFor((e) => e.state === "assigned" && e.size === 3, 60_000, "assigned at size 3")))
      ui = await startUi(env)
      browser = await launch(chromium!)
      const page = browser.page
      await page.navigate(`${ui.url}#/group/${encodeURIComponent(group)}`)
      const rows = `document.querySelectorAll("#members tbody tr").length`
      await page.waitFor(`${rows} === 3`, 15_000, "three members")
      const names = await page.evaluate<Array<string>>(`[...document.querySelectorAll("#members tbody tr")].map(r => r.dataset.name)`)
      expect(names.sort()).toEqual(["worker-a", "worker-b", "worker-c"])
      const updatesBefore = await page.evaluate<number>(`window.__mg.updates`)

      // A fourth member joins: on the page within a second of its join committing (its first line
      // after `joining` comes after the commit), without a reload.
      const shownAt = (selector: string, present: boolean) =>
        page.waitFor(`${present ? "" : "!"}document.querySelector(${JSON.stringify(selector)})`, 30_000, selector).then(() => performance.now())
      const d = join("worker-d")
      const dShown = shownAt(`#members tr[data-name="worker-d"]`, true)
      const dCommitted = d.waitFor((e) => e.event === "state" && e.state !== "joining", 30_000, "joined").then(() => performance.now())
      figures["join shown after commit (ms)"] = Math.round((await dShown) - (await dCommitted))
      expect(figures["join shown after commit (ms)"]).toBeLessThan(1_000)
      await Promise.all([...first, d].map((m) => m.waitFor((e) => e.state === "assigned" && e.size === 4, 30_000, "assigned at size 4")))
      await page.waitFor(`[...document.querySelectorAll("#members tbody tr")].every(r => r.textContent.includes("assigned")) && ${rows} === 4`, 10_000, "four assigned")
      expect(await page.evaluate<number>(`window.__mg.updates`)).toBeGreaterThan(updatesBefore)
      await page.screenshot(path.join(imagesDir, "ui-group.png"))

      // worker-b leaves (SIGTERM): gone from the page within a second of its `left` line.
      const b = first[1]!
      const bGone = shownAt(`#members tr[data-name="worker-b"]`, false)
      b.kill("SIGTERM")
      const bLeft = b.waitFor((e) => e.state === "left", 30_000, "left").then(() => performance.now())
      figures["leave gone after commit (ms)"] = Math.round((await bGone) - (await bLeft))
      expect(figures["leave gone after commit (ms)"]).toBeLessThan(1_000)
      await page.waitFor(`document.querySelector('#timeline .mark[data-kind="leave"]')`, 5_000, "the leave on the timeline")

      // worker-c is killed (SIGKILL): once its lease has run out the others reap it, and the
      // timeline marks the crash on the index it held.
      const c = first[2]!
      const killedAt = performance.now()
      c.kill("SIGKILL")
      await page.waitFor(`document.querySelector('#timeline .mark[data-kind="crash"]')`, 20_000, "the crash on the timeline")
      figures["kill to crash mark (ms, lease 3 s)"] = Math.round(performance.now() - killedAt)
      await page.waitFor(`!document.querySelector('#members tr[data-name="worker-c"]')`, 5_000, "worker-c gone")

      // worker-c comes back under the same name: a second bar of worker-c on the timeline.
      const c2 = join("worker-c")
      const rejoined = await c2.waitFor((e) => e.state === "assigned", 30_000, "assigned again")
      const bars = `[...document.querySelectorAll('#timeline .bar title')].filter(t => t.textContent.startsWith("worker-c:")).length`
      await page.waitFor(`${bars} >= 2`, 5_000, "two bars of worker-c")
      await page.waitFor(`document.querySelector('#members tr[data-name="worker-c"]')`, 5_000, "worker-c back")
      const timeline = await page.evaluate<{ kinds: Array<string>; lanes: number; open: number }>(`({
        kinds: [...document.querySelectorAll('#timeline .mark')].map(m => m.dataset.kind),
        lanes: document.querySelectorAll('#timeline .lane').length,
        open: document.querySelectorAll('#timeline .bar[data-open="true"]').length
      })`)
      expect(timeline.kinds).toContain("crash")
      expect(timeline.kinds).toContain("leave")
      // At least one change forms the first three (joins that arrive together are admitted
      // together), then worker-d's join, worker-b's leave, worker-c's crash and its rejoin.
      expect(timeline.kinds.filter((k) => k === "change").length).toBeGreaterThanOrEqual(5)
      expect(timeline.lanes).toBeGreaterThanOrEqual(4)
      await Promise.all([first[0]!, d, c2].map((m) => m.waitFor((e) => e.state === "assigned" && e.size === 3 && (e.epoch ?? 0) >= (rejoined.epoch ?? 0), 30_000, "assigned at size 3")))
      await page.waitFor(`document.querySelectorAll('#timeline .bar[data-open="true"]').length === 3 && ${rows} === 3`, 5_000, "three open tenures")
      // For the picture only (nothing is awaited): let the rejoined tenure grow a visible bar.
      await new Promise((r) => setTimeout(r, 2_500))
      await page.screenshot(path.join(imagesDir, "ui-timeline.png"))

      // The list of groups.
      await page.evaluate(`location.hash = "#/"`)
      await page.waitFor(`document.querySelector('tr[data-group="orders"]')`, 10_000, "the group in the list")
      const listed = await page.evaluate<string>(`document.querySelector('tr[data-group="orders"]').textContent`)
      expect(listed).toContain("modulo")
      await page.screenshot(path.join(imagesDir, "ui-groups.png"))
      console.log(`ui figures: ${JSON.stringify(figures)}; screenshots in ${imagesDir}`)
    } finally {
      await tearDown(browser, members, ui, dbName)
    }
  }, 240_000)

  it("shows a slots-mode group: each member's slot count and ranges, and the mode in the list", async () => {
    assertBuilt()
    const { dbName, env } = await ownDatabase()
    const group = "shards"
    const members = ["slot-a", "slot-b"].map((name) => new Member(name, group, [...fast, "--slots", "16"], env))
    let ui: Awaited<ReturnType<typeof startUi>> | undefined
    let browser: Awaited<ReturnType<typeof launch>> | undefined
    try {
      await Promise.all(members.map((m) => m.waitFor((e) => e.slots?.length === 8, 60_000, "8 slots")))
      ui = await startUi(env)
      browser = await launch(chromium!)
      const page = browser.page
      await page.navigate(`${ui.url}#/group/${encodeURIComponent(group)}`)
      await page.waitFor(`document.querySelectorAll("#members tbody tr").length === 2`, 15_000, "two members")
      const table = await page.evaluate<{ head: Array<string>; rows: Array<{ name: string; slots: string; cells: Array<string> }>; facts: string }>(`({
        head: [...document.querySelectorAll("#members thead th")].map(h => h.textContent),
        rows: [...document.querySelectorAll("#members tbody tr")].map(r => ({ name: r.dataset.name, slots: r.dataset.slots, cells: [...r.children].map(c => c.textContent) })),
        facts: document.querySelector("#facts").textContent
      })`)
      expect(table.head.slice(0, 2)).toEqual(["SLOTS", "RANGES"])
      expect(table.facts).toContain("slots (S = 16)")
      // Each holds 8 of the 16, and its ranges are what its own last line says it works.
      for (const m of members) {
        const row = table.rows.find((r) => r.name === m.label)!
        const own = [...m.events].reverse().find((e) => e.slots !== undefined)!
        expect(row.slots).toBe("8")
        expect(row.cells[0]).toBe("8")
        expect(row.cells[1]).toBe(Slots.toRanges(own.slots!))
      }
      await page.evaluate(`location.hash = "#/"`)
      await page.waitFor(`document.querySelector('tr[data-group="shards"]')`, 10_000, "the group in the list")
      expect(await page.evaluate<string>(`document.querySelector('tr[data-group="shards"]').textContent`)).toContain("slots (16)")
    } finally {
      await tearDown(browser, members, ui, dbName)
    }
  }, 120_000)
})
