/**
 * `modulo-group join --metrics-port 0` serves the metrics in the Prometheus text format: a scrape
 * of a member alone in its group returns every series docs/metrics.md documents, with plausible
 * values (epoch >= 1, size 1, index 0, assigned, leader, a barrier wait observed, a recent heartbeat).
 */
import { Effect, Metric, MetricBoundaries } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Prometheus from "../../cli/src/metrics/Prometheus.js"
import { databaseUrl, randomGroupId } from "../support/Database.js"
import { assertBuilt, Member } from "./support.js"

const TIMINGS = ["--heartbeat", "200ms", "--lease", "3s", "--fence-margin", "1s", "--statement-timeout", "1s"]
const START_MS = 30_000

interface Sample {
  readonly name: string
  readonly labels: Record<string, string>
  readonly value: number
}

/** Parses the text format: `# TYPE` lines and samples `name{a="b",...} value`. */
const parse = (text: string) => {
  const types = new Map<string, string>()
  const help = new Map<string, string>()
  const samples: Array<Sample> = []
  for (const line of text.split("\n")) {
    if (line === "") continue
    const meta = /^# (TYPE|HELP) (\S+) (.*)$/.exec(line)
    if (meta !== null) {
      ;(meta[1] === "TYPE" ? types : help).set(meta[2]!, meta[3]!)
      continue
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    expect(m, `a sample line: ${line}`).not.toBeNull()
    const labels: Record<string, string> = {}
    for (const [, k, v] of (m![2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[k!] = v!
    const raw = m![3]!
    samples.push({ name: m![1]!, labels, value: raw === "+Inf" ? Infinity : raw === "-Inf" ? -Infinity : Number(raw) })
  }
  return { types, help, samples }
}

describe("modulo-group join --metrics-port (child process, Prometheus text format)", () => {
  const group = randomGroupId("cli-metrics")
  const env = { ...process.env, DATABASE_URL: databaseUrl() }
  const members: Array<Member> = []

  beforeAll(assertBuilt)
  afterAll(async () => {
    for (const m of members) m.kill("SIGTERM")
    await Promise.all(members.map((m) => m.exited))
  })

  it("serves the documented series with plausible values", async () => {
    const member = new Member("metrics", group, [...TIMINGS, "--metrics-port", "0"], env)
    members.push(member)
    const assigned = await member.waitFor((e) => e.state === "assigned", START_MS, "an assignment")
    const url = /serving metrics at (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(member.stderr)?.[1]
    expect(url, `the metrics URL on stderr: ${member.stderr}`).toBeDefined()
    // A renewal after the assignment has set the heartbeat age.
    await member.waitFor((e) => e.event === "work", START_MS, "a work line")

    const scrape = async () => {
      const response = await fetch(url!)
      expect(response.status).toBe(200)
      expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8")
      return parse(await response.text())
    }
    const { types, help, samples } = await scrape()
    const oneOf = (samples: ReadonlyArray<Sample>) => (name: string, labels: Record<string, string> = {}) => {
      const found = samples.filter((s) =>
        s.name === name && s.labels["group"] === group &&
        Object.entries(labels).every(([k, v]) => s.labels[k] === v)
      )
      expect(found, `one ${name}${JSON.stringify(labels)} for the group`).toHaveLength(1)
      return found[0]!.value
    }
    const one = oneOf(samples)

    const expectedTypes: Record<string, string> = {
      modulo_group_epoch: "gauge",
      modulo_group_size: "gauge",
      modulo_group_index: "gauge",
      modulo_group_assigned: "gauge",
      modulo_group_leader: "gauge",
      modulo_group_renegotiations_total: "counter",
      modulo_group_self_fences_total: "counter",
      modulo_group_heartbeat_failures_total: "counter",
      modulo_group_last_heartbeat_seconds_ago: "gauge",
      modulo_group_barrier_wait_seconds: "histogram",
      modulo_group_stuck_work_seconds: "gauge",
      modulo_group_alarms_total: "counter",
      modulo_group_clock_steps_total: "counter"
    }
    for (const [name, type] of Object.entries(expectedTypes)) {
      expect(types.get(name), `# TYPE ${name}`).toBe(type)
      expect(help.get(name)?.length ?? 0, `# HELP ${name}`).toBeGreaterThan(10)
    }

    expect(one("modulo_group_epoch")).toBe(assigned.epoch)
    expect(one("modulo_group_epoch")).toBeGreaterThanOrEqual(1)
    expect(one("modulo_group_size")).toBe(1)
    expect(one("modulo_group_index")).toBe(0)
    expect(one("modulo_group_assigned")).toBe(1)
    expect(one("modulo_group_leader")).toBe(1)
    expect(one("modulo_group_renegotiations_total")).toBe(0)
    expect(one("modulo_group_self_fences_total")).toBe(0)
    expect(one("modulo_group_heartbeat_failures_total")).toBe(0)
    expect(one("modulo_group_alarms_total")).toBe(0)
    expect(one("modulo_group_clock_steps_total")).toBe(0)
    expect(one("modulo_group_stuck_work_seconds")).toBe(0)
    const age = one("modulo_group_last_heartbeat_seconds_ago")
    expect(age).toBeGreaterThanOrEqual(0)
    expect(age).toBeLessThan(2) // lease 3 s - fence margin 1 s: the member would have fenced itself

    // The histogram: cumulative buckets ending at +Inf = _count, and _sum. A member alone is
    // assigned at its join, without a barrier: the first wait comes with the next member.
    const histogram = (samples: ReadonlyArray<Sample>) => {
      const count = oneOf(samples)("modulo_group_barrier_wait_seconds_count")
      const sum = oneOf(samples)("modulo_group_barrier_wait_seconds_sum")
      const buckets = samples.filter((s) => s.name === "modulo_group_barrier_wait_seconds_bucket" && s.labels["group"] === group)
      expect(buckets.length).toBeGreaterThan(2)
      expect(buckets.at(-1)!.labels["le"]).toBe("+Inf")
      expect(buckets.at(-1)!.value).toBe(count)
      for (let i = 1; i < buckets.length; i++) {
        expect(Number(buckets[i]!.labels["le"] === "+Inf" ? Infinity : buckets[i]!.labels["le"]))
          .toBeGreaterThan(Number(buckets[i - 1]!.labels["le"]))
        expect(buckets[i]!.value).toBeGreaterThanOrEqual(buckets[i - 1]!.value)
      }
      return { count, sum }
    }
    expect(histogram(samples)).toEqual({ count: 0, sum: 0 })

    // A second member joins: a renegotiation, a barrier wait, N = 2.
    const second = new Member("second", group, TIMINGS, env)
    members.push(second)
    const atTwo = await member.waitFor((e) => e.state === "assigned" && e.size === 2, START_MS, "an assignment at N = 2")
    const after = await scrape()
    const now = oneOf(after.samples)
    expect(now("modulo_group_epoch")).toBe(atTwo.epoch)
    expect(now("modulo_group_epoch")).toBeGreaterThan(assigned.epoch!)
    expect(now("modulo_group_size")).toBe(2)
    expect(now("modulo_group_index")).toBe(atTwo.index)
    expect(now("modulo_group_leader")).toBe(atTwo.index === 0 ? 1 : 0)
    expect(now("modulo_group_renegotiations_total")).toBe(1)
    const { count, sum } = histogram(after.samples)
    expect(count).toBe(1)
    expect(sum).toBeGreaterThan(0)
    expect(sum).toBeLessThan(START_MS / 1000)

    // Only /metrics is served.
    expect((await fetch(url!.replace(/\/metrics$/, "/"))).status).toBe(404)
    expect(member.garbage).toEqual([])
  })
})

describe("the Prometheus text format (cli/src/metrics/Prometheus.ts)", () => {
  it("renders counters, gauges and histograms with escaped labels and help", () => {
    const id = Math.random().toString(36).slice(2)
    const counter = Metric.counter(`t_${id}_total`, { description: "a \\ help\nline" })
    const gauge = Metric.gauge(`t_${id}_gauge`)
    const histogram = Metric.histogram(`t_${id}_seconds`, MetricBoundaries.fromIterable([0.5, 1]), "h")
    const group = `we"ird\\gro\nup`
    Effect.runSync(Effect.all([
      Metric.update(counter.pipe(Metric.tagged("group", group)), 3),
      Metric.set(gauge, -1.5),
      Metric.update(histogram, 0.25),
      Metric.update(histogram, 0.75),
      Metric.update(histogram, 7)
    ]))
    const text = Prometheus.render(Metric.unsafeSnapshot(), { prefix: `t_${id}_` })
    expect(text).toBe([
      `# HELP t_${id}_gauge t_${id}_gauge`,
      `# TYPE t_${id}_gauge gauge`,
      `t_${id}_gauge -1.5`,
      `# HELP t_${id}_seconds h`,
      `# TYPE t_${id}_seconds histogram`,
      `t_${id}_seconds_bucket{le="0.5"} 1`,
      `t_${id}_seconds_bucket{le="1"} 2`,
      `t_${id}_seconds_bucket{le="+Inf"} 3`,
      `t_${id}_seconds_sum 8`,
      `t_${id}_seconds_count 3`,
      `# HELP t_${id}_total a \\\\ help\\nline`,
      `# TYPE t_${id}_total counter`,
      `t_${id}_total{group="we\\"ird\\\\gro\\nup"} 3`,
      ""
    ].join("\n"))
  })
})
