/**
 * Effect's metric registry in the Prometheus text exposition format (version 0.0.4): one `# HELP`
 * and `# TYPE` per metric name, then one line per series (its tags as labels); histograms as
 * cumulative `_bucket{le=...}` series with `_sum` and `_count`, summaries as `{quantile=...}` with
 * `_sum` and `_count`, frequencies as one counter series per observed value (label `key`).
 *
 * @since 0.2.0
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as MetricState from "effect/MetricState"
import type { MetricPair } from "effect"

/**
 * The `Content-Type` of the text format.
 *
 * @since 0.2.0
 * @internal
 */
export const contentType = "text/plain; version=0.0.4; charset=utf-8"

type Labels = ReadonlyArray<readonly [string, string]>

const escapeLabel = (value: string) => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, "\\\"")
const escapeHelp = (value: string) => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")
/** Metric and label names may hold [a-zA-Z0-9_:] (labels: no colon), not starting with a digit. */
const sanitizeName = (name: string, colon: boolean) => {
  const cleaned = name.replace(colon ? /[^a-zA-Z0-9_:]/g : /[^a-zA-Z0-9_]/g, "_")
  return /^[0-9]/.test(cleaned) ? `_${cleaned}` : cleaned
}

const formatValue = (value: number | bigint): string => {
  if (typeof value === "bigint") return value.toString()
  if (Number.isNaN(value)) return "NaN"
  if (value === Infinity) return "+Inf"
  if (value === -Infinity) return "-Inf"
  return String(value)
}

const formatLabels = (labels: Labels): string =>
  labels.length === 0
    ? ""
    : `{${labels.map(([k, v]) => `${sanitizeName(k, false)}="${escapeLabel(v)}"`).join(",")}}`

const line = (name: string, labels: Labels, value: number | bigint) => `${name}${formatLabels(labels)} ${formatValue(value)}`

interface Family {
  readonly type: "counter" | "gauge" | "histogram" | "summary"
  readonly help: string
  readonly lines: Array<string>
}

/**
 * Renders metric pairs (as `Metric.snapshot` returns them) in the text format, families sorted by name.
 *
 * @since 0.2.0
 * @internal
 */
export const render = (
  pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>,
  options: { readonly prefix?: string | undefined } = {}
): string => {
  const families = new Map<string, Family>()
  const family = (name: string, type: Family["type"], help: string | undefined) => {
    let f = families.get(name)
    if (f === undefined) {
      f = { type, help: help ?? name, lines: [] }
      families.set(name, f)
    }
    return f
  }
  for (const { metricKey, metricState } of pairs) {
    if (options.prefix !== undefined && !metricKey.name.startsWith(options.prefix)) continue
    const name = sanitizeName(metricKey.name, true)
    const help = metricKey.description._tag === "Some" ? metricKey.description.value : undefined
    const labels: Labels = metricKey.tags.map((t) => [t.key, t.value] as const)
    if (MetricState.isCounterState(metricState)) {
      family(name, "counter", help).lines.push(line(name, labels, metricState.count))
    } else if (MetricState.isGaugeState(metricState)) {
      family(name, "gauge", help).lines.push(line(name, labels, metricState.value))
    } else if (MetricState.isHistogramState(metricState)) {
      const f = family(name, "histogram", help)
      let sawInf = false
      for (const [bound, count] of metricState.buckets) {
        if (bound === Infinity) sawInf = true
        f.lines.push(line(`${name}_bucket`, [...labels, ["le", formatValue(bound)]], count))
      }
      if (!sawInf) f.lines.push(line(`${name}_bucket`, [...labels, ["le", "+Inf"]], metricState.count))
      f.lines.push(line(`${name}_sum`, labels, metricState.sum))
      f.lines.push(line(`${name}_count`, labels, metricState.count))
    } else if (MetricState.isSummaryState(metricState)) {
      const f = family(name, "summary", help)
      for (const [quantile, value] of metricState.quantiles) {
        f.lines.push(line(name, [...labels, ["quantile", String(quantile)]], value._tag === "Some" ? value.value : NaN))
      }
      f.lines.push(line(`${name}_sum`, labels, metricState.sum))
      f.lines.push(line(`${name}_count`, labels, metricState.count))
    } else if (MetricState.isFrequencyState(metricState)) {
      const f = family(name, "counter", help)
      for (const [key, count] of metricState.occurrences) f.lines.push(line(name, [...labels, ["key", key]], count))
    }
  }
  const out: Array<string> = []
  for (const name of [...families.keys()].sort()) {
    const f = families.get(name)!
    out.push(`# HELP ${name} ${escapeHelp(f.help)}`, `# TYPE ${name} ${f.type}`, ...f.lines)
  }
  return out.length === 0 ? "" : `${out.join("\n")}\n`
}

/**
 * The current state of the metrics in Effect's registry (those whose name starts with `prefix`, if
 * given), rendered.
 *
 * @since 0.2.0
 * @internal
 */
export const scrape = (options: { readonly prefix?: string | undefined } = {}): Effect.Effect<string> =>
  Effect.map(Metric.snapshot, (pairs) => render(pairs, options))
