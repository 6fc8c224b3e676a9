/** Types of chaos/monitor.mjs, for the tests that import it. */
export interface MonitorAnalysis {
  readonly g1: { readonly epochs: number; readonly violations: ReadonlyArray<string> }
  readonly g2: {
    readonly violations: ReadonlyArray<{ readonly label: string; readonly epoch: number; readonly overlapMs: number; readonly detail: string }>
    readonly staleWork: number
    readonly inFlightStale: ReadonlyArray<string>
  }
  readonly order: ReadonlyArray<string>
  readonly timeline: { readonly notConverged: ReadonlyArray<{ from: number; to: number }>; readonly notConvergedMs: number }
  readonly faults: {
    readonly list: ReadonlyArray<{ kind: string; at: number; reconvergedMs: number; boundMs: number; withinBound: boolean; unfinished: boolean }>
  }
}
export declare class Monitor {
  constructor(timing: { heartbeatMs: number; leaseMs: number })
  spawn(label: string, slot: number, at: number): void
  line(label: string, text: string): void
  stderr(label: string, text: string): void
  stop(label: string, at: number): void
  cont(label: string, at: number): void
  kill(label: string, at: number): void
  term(label: string, at: number): void
  exited(label: string, at: number, code: number | null, signal: string | null): void
  fault(kind: string, at: number, boundMs: number, label?: string, detail?: unknown): void
  analyze(startAt: number, endAt: number): MonitorAnalysis
}
export declare const converged: (
  states: ReadonlyArray<{ state: string; epoch: number | null; index: number | null; size: number | null } | undefined>
) => { ok: boolean; reason?: string }
export declare const stats: (xs: ReadonlyArray<number>) => { n: number; median: number | null; max: number | null }
