/** Types of chaos/monitor.mjs, for the tests that import it. */
export interface DuplicateStart {
  readonly epoch: number
  readonly index: number
  /** The first line of each holder of (epoch, index), in time order. */
  readonly starts: ReadonlyArray<{ label: string; member: string; at: number; ts: string; event: "state" | "work"; size: number | null }>
  readonly detail: string
}
/** Slots mode (chaos/slots.mjs): a process's tenure of one slot. */
export interface SlotTenure {
  readonly label: string
  readonly member: string
  readonly slot: number
  readonly start: number
  readonly end: number
  readonly endedBy: string
  readonly effectiveEnd: number
  readonly lines: ReadonlyArray<{ at: number; grew: boolean; shrank: boolean }>
  readonly inFlight: ReadonlyArray<number>
}
export interface SlotsAnalysis {
  readonly S: number
  readonly tenures: ReadonlyArray<SlotTenure>
  readonly overlaps: {
    readonly violations: ReadonlyArray<{ slot: number; labels: ReadonlyArray<string>; overlapMs: number; detail: string }>
    readonly staleWork: number
    readonly inFlightStale: ReadonlyArray<string>
  }
  readonly timeline: {
    readonly notConverged: ReadonlyArray<{ from: number; to: number; open: boolean }>
    readonly notConvergedMs: number
    readonly notCovered: ReadonlyArray<{ from: number; to: number; open: boolean }>
    readonly notCoveredMs: number
    readonly unfair: ReadonlyArray<{ at: number; sizes: Record<string, number>; detail: string }>
  }
  readonly unowned: ReadonlyArray<{ kind: string; at: number; label?: string; boundMs: number; unownedMs: number; unfinished: boolean; withinBound: boolean }>
  readonly handoffs: { readonly total: number; readonly perSlot: ReadonlyArray<number>; readonly starts: ReadonlyArray<number> }
  readonly handoffsPerFault: ReadonlyArray<{ kind: string; at: number; count: number }>
  readonly order: ReadonlyArray<string>
}
export interface MonitorAnalysis {
  /** Slots mode only. */
  readonly slots?: SlotsAnalysis
  readonly g1: {
    readonly epochs: number
    readonly violations: ReadonlyArray<string>
    readonly duplicates: ReadonlyArray<DuplicateStart & { readonly overlapping: boolean }>
  }
  readonly g2: {
    readonly violations: ReadonlyArray<{ readonly label: string; readonly epoch: number; readonly overlapMs: number; readonly detail: string }>
    readonly staleWork: number
    readonly inFlightStale: ReadonlyArray<string>
  }
  readonly g5: { readonly leaves: number; readonly excused: number; readonly violations: ReadonlyArray<string> }
  readonly order: ReadonlyArray<string>
  readonly timeline: { readonly notConverged: ReadonlyArray<{ from: number; to: number }>; readonly notConvergedMs: number }
  readonly faults: {
    readonly list: ReadonlyArray<{ kind: string; at: number; reconvergedMs: number; boundMs: number; withinBound: boolean; unfinished: boolean }>
    readonly actions: ReadonlyArray<{ kind: string; at: number; boundMs: number; label?: string }>
  }
}
export declare class Monitor {
  constructor(timing: { heartbeatMs: number; leaseMs: number; slots?: number | undefined })
  readonly procs: Map<string, { label: string; slot: number; events: ReadonlyArray<any>; [key: string]: unknown }>
  spawn(label: string, slot: number, at: number): void
  line(label: string, text: string): void
  stderr(label: string, text: string): void
  stop(label: string, at: number): void
  cont(label: string, at: number): void
  kill(label: string, at: number): void
  term(label: string, at: number): void
  exited(label: string, at: number, code: number | null, signal: string | null): void
  fault(
    kind: string,
    at: number,
    boundMs: number,
    label?: string,
    detail?: unknown,
    judged?: boolean
  ): { kind: string; at: number; boundMs: number; label?: string; detail?: unknown; judged: boolean }
  analyze(startAt: number, endAt: number): MonitorAnalysis
  dump(): string
  static replay(text: string, timing?: { heartbeatMs: number; leaseMs: number; slots?: number | undefined }): Monitor
  convergedNow(): { ok: boolean; reason?: string }
}
export declare const converged: (
  states: ReadonlyArray<{ state: string; epoch: number | null; index: number | null; size: number | null } | undefined>
) => { ok: boolean; reason?: string }
export declare const stats: (xs: ReadonlyArray<number>) => { n: number; median: number | null; max: number | null }
export declare const duplicateStarts: (
  procs: ReadonlyArray<{ label: string; events: ReadonlyArray<{ at: number; ts: string; member: string; event: string; state: string; epoch: number | null; index: number | null; size: number | null }> }>
) => ReadonlyArray<DuplicateStart>
export interface TimelineShape {
  readonly title: string
  readonly from: number
  readonly to: number
  readonly lanes: number
  readonly bars: ReadonlyArray<{ lane: number; from: number; to: number; label: string; key: string; epoch?: number; open?: boolean }>
  readonly marks: ReadonlyArray<{ at: number; kind: "change" | "crash" | "fence" | "leave" | "join" | "rejoin" | "freeze" | "fault"; label: string; lane?: number }>
}
export declare const timelineOf: (
  analysis: MonitorAnalysis,
  faults: ReadonlyArray<{ kind: string; at: number; label?: string; judged?: boolean }>,
  from: number,
  to: number,
  title?: string
) => TimelineShape
export declare const convergedSlots: (
  entries: ReadonlyArray<{ state: { state: string } | undefined; slots: ReadonlyArray<number> | undefined }>,
  S: number
) => { ok: boolean; covered: boolean; exact: boolean; balanced: boolean; reason?: string }
