/**
 * `modulo-group join` whose one connection goes half-open: the server side is gone (a firewall or
 * NAT dropped the flow, the database host failed over) and the client is never told: no FIN, no
 * RST, and the statement it sent is acknowledged by nobody it can hear from. Every statement the
 * member sends is bounded on the server by the statement timeout, so one still unanswered after
 * twice that and a second is on a dead connection: the pool closes it, says so once, opens a new
 * one, LISTENs on it again, and the member rejoins by itself. (Before: the connection stayed checked
 * out with its statement for ever, every later statement waited for it, and the member stayed
 * fenced for good, logging a failed heartbeat each period.)
 */
import { afterAll, expect, it } from "vitest"
import { type Proxy, startProxy } from "../faults/Proxy.js"
import { databaseUrl, randomGroupId } from "../support/Database.js"
import { eventually } from "./pgSupport.js"
import { assertBuilt, Member } from "./support.js"

// Statement timeout 500 ms: a statement unanswered for 2 s (2 x 500 ms + 1 s) is taken for dead.
const TIMINGS = ["--heartbeat", "300ms", "--lease", "2s", "--fence-margin", "500ms", "--statement-timeout", "500ms"]

const closedLine = /no answer from the database in [\d.]+ s.*closed it/

const members: Array<Member> = []
const proxies: Array<Proxy> = []
afterAll(async () => {
  for (const m of members) m.kill("SIGKILL")
  for (const p of proxies) await p.close()
})

const proxiedMember = async (label: string) => {
  const url = new URL(databaseUrl())
  const proxy = await startProxy({ host: url.hostname, port: Number(url.port) })
  proxies.push(proxy)
  const proxied = new URL(databaseUrl())
  proxied.port = String(proxy.port)
  const member = new Member(label, randomGroupId("halfopen"), [...TIMINGS, "--database-url", proxied.toString()], {
    ...process.env,
    DATABASE_URL: ""
  })
  members.push(member)
  await member.waitFor((e) => e.event === "state" && e.state === "assigned", 20_000, `${label} assigned`)
  // One connection, for statements and notifications.
  expect(proxy.connections()).toBe(1)
  return { proxy, member }
}

it("a member whose one connection goes half-open closes it, reconnects, listens again and rejoins", async () => {
  assertBuilt()
  const { proxy, member: a } = await proxiedMember("A")

  const cutAt = Date.now()
  expect(proxy.sever()).toBe(1)

  // Its lease cannot be renewed: it stops working (correct) ...
  const out = await a.waitFor(
    (e) => e.event === "state" && (e.state === "fenced" || e.state === "lost") && Date.parse(e.ts) >= cutAt,
    10_000,
    "A fenced after the cut"
  )
  // ... and comes back by itself, on a new connection ...
  await a.waitFor(
    (e) => e.event === "state" && e.state === "assigned" && Date.parse(e.ts) > Date.parse(out.ts),
    15_000,
    "A assigned again"
  )
  // ... once the dead one was closed (said once), listening again.
  expect(a.stderr).toMatch(closedLine)
  await eventually("notifications back", async () => /notification connection back/.test(a.stderr), 15_000)
  expect(a.stderr.match(new RegExp(closedLine.source, "g"))?.length).toBe(1)
  expect(a.stderr.match(/connected to the database again/g)?.length).toBe(1)
  // The severed connection is gone (its client closed it); one new one serves the member.
  expect(proxy.connections()).toBe(1)
}, 60_000)

it("a slow connection whose answers come within the bound is not closed", async () => {
  assertBuilt()
  const { proxy, member: b } = await proxiedMember("B")
  // 400 ms each way: every answer (a statement runs at most 500 ms) is back within 1.3 s, short of
  // the 2 s after which a connection is taken for dead, though the member's heartbeats time out.
  proxy.delay(400)
  const slowFrom = Date.now()
  await b.waitFor(
    (e) => e.event === "state" && e.state !== "assigned" && Date.parse(e.ts) >= slowFrom,
    10_000,
    "B out of its assignment on the slow connection"
  )
  // Twice the bound on the slow connection: nothing closed.
  await new Promise((r) => setTimeout(r, 4_000))
  expect(b.stderr).not.toMatch(closedLine)
  proxy.delay(0)
  const fastFrom = Date.now()
  await b.waitFor((e) => e.event === "state" && e.state === "assigned" && Date.parse(e.ts) >= fastFrom, 15_000, "B assigned again")
  expect(b.stderr).not.toMatch(closedLine)
  expect(proxy.connections()).toBe(1)
}, 60_000)
