/**
 * The "paused" section: work paused per change, modulo mode beside slots mode. Process members
 * (bench/member.mjs, one per process), whose work intervals it keeps whole: per member in modulo
 * mode (`start`/`end`), per slot in slots mode (`slot-start`/`slot-end`, from `whileOwning`).
 *
 * Definitions (the window of a change is from the command — join sent, leave sent, SIGKILL — until
 * the group is settled again: modulo, every live member works in one epoch of the live size;
 * slots, every slot is worked by exactly one live member and every live member works floor(S/N) or
 * ceil(S/N) slots):
 * - modulo: paused member-seconds = for each survivor (a member live before and after the change:
 *   not the newcomer, the leaver or the killed one), the time in the window during which it ran no
 *   work, summed;
 * - slots: paused slot-seconds = for each slot, the time in the window during which no live member
 *   ran it (from its stop by the old holder, or from the kill, until its start by the new holder;
 *   zero for a slot that did not move), summed; reported as slot-seconds / S (seconds of the whole
 *   group's work) and as member-seconds = slot-seconds × N / S (a member's share is S/N slots; N the
 *   live members after the change);
 * - both split into the survivors' part and the departed member's share (leave, crash): modulo, from
 *   the leaver's stop (or the kill) until the settle, counted as one member's; slots, the slot-seconds
 *   of the slots it held, × N / S;
 * - members paused: survivors that stopped any work in the window (modulo: their assignment; slots:
 *   at least one slot).
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as path from "node:path"
import * as readline from "node:readline"

export interface WorkEvent {
  readonly member: string
  readonly kind: "start" | "end"
  /** Slots mode: the slot; modulo mode: -1. */
  readonly slot: number
  readonly epoch: number
  readonly size: number
  /** Absolute ms (performance.timeOrigin + performance.now(), as the members emit). */
  readonly at: number
}

export const nowAbs = () => performance.timeOrigin + performance.now()

class Member {
  readonly process: ChildProcess
  readonly ready: Promise<void>
  readonly exited: Promise<number | null>
  id: string | undefined
  private onReady!: () => void
  private onJoining: ((id: string) => void) | undefined
  private readonly stderr: Array<string> = []
  killed = false

  constructor(script: string, env: Record<string, string>, options: unknown, sink: (e: WorkEvent) => void) {
    this.process = spawn(process.execPath, [script], {
      cwd: path.dirname(script),
      env: { ...process.env, ...env, MG_BENCH: JSON.stringify(options) },
      stdio: ["pipe", "pipe", "pipe"]
    })
    this.ready = new Promise((resolve) => (this.onReady = resolve))
    this.exited = new Promise((resolve) => this.process.once("exit", (code) => resolve(code)))
    readline.createInterface({ input: this.process.stdout! }).on("line", (line) => {
      let m: { k: string; m?: string; e?: number; n?: number; s?: number; t?: number }
      try {
        m = JSON.parse(line)
      } catch {
        return
      }
      switch (m.k) {
        case "ready":
          return this.onReady()
        case "joining":
          this.id = m.m!
          return this.onJoining?.(m.m!)
        case "start":
        case "end":
          return sink({ member: m.m!, kind: m.k, slot: -1, epoch: m.e!, size: m.n!, at: m.t! })
        case "slot-start":
        case "slot-end":
          return sink({ member: m.m!, kind: m.k === "slot-start" ? "start" : "end", slot: m.s!, epoch: NaN, size: NaN, at: m.t! })
      }
    })
    readline.createInterface({ input: this.process.stderr! }).on("line", (line) => {
      this.stderr.push(line)
      if (this.stderr.length > 30) this.stderr.shift()
    })
    void this.exited.then((code) => {
      if (code !== 0 && code !== null && !this.killed) {
        console.error(`bench member process ${this.process.pid} exited with ${code}:\n${this.stderr.join("\n")}`)
      }
    })
  }

  join(): Promise<string> {
    return new Promise((resolve) => {
      this.onJoining = resolve
      this.process.stdin!.write("join\n")
    })
  }

  leave() {
    if (this.process.stdin?.writable) this.process.stdin.write("leave\n")
  }

  kill() {
    this.killed = true
    this.process.kill("SIGKILL")
    return this.exited
  }
}

export interface ChangeResult {
  readonly change: "join" | "leave" | "crash"
  /** From the command until settled (ms). */
  readonly settleMs: number
  /** Survivors' paused work plus the departed member's share (member-seconds). */
  readonly pausedMemberSeconds: number
  /** The survivors' part. */
  readonly survivorsMemberSeconds: number
  /** The departed member's share (leave, crash): until someone else runs it. */
  readonly departedMemberSeconds: number
  /** Slots mode: slot-seconds / S; modulo: NaN. */
  readonly slotSecondsPerS: number
  readonly membersPaused: number
  readonly survivors: number
  /** Slots mode: slots whose work stopped in the window (or died with the killed member). */
  readonly slotsMoved: number
}

export interface PausedSpec {
  readonly script: string
  readonly env: Record<string, string>
  readonly url: string
  readonly config: Record<string, unknown>
  /** Slots mode when set. */
  readonly slots: number | undefined
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** One group of process members and its whole work history. */
export class PausedGroup {
  readonly events: Array<WorkEvent> = []
  private readonly live: Array<Member> = []
  private readonly standby: Array<Member> = []
  private readonly all: Array<Member> = []
  private waiter: { readonly resolve: (at: number) => void } | undefined
  /** Open work: modulo, member → epoch and size; slots, slot → members running it. */
  private readonly openModulo = new Map<string, { epoch: number; size: number }>()
  private readonly openSlots = new Map<number, Set<string>>()
  private readonly liveIds = new Set<string>()
  /** The last change's window and members, for a dump. */
  lastWindow: unknown

  constructor(readonly spec: PausedSpec) {}

  private sink = (e: WorkEvent) => {
    this.events.push(e)
    if (this.spec.slots === undefined) {
      if (e.kind === "start") this.openModulo.set(e.member, { epoch: e.epoch, size: e.size })
      else this.openModulo.delete(e.member)
    } else {
      let s = this.openSlots.get(e.slot)
      if (s === undefined) this.openSlots.set(e.slot, (s = new Set()))
      if (e.kind === "start") s.add(e.member)
      else s.delete(e.member)
    }
    this.check(e.at)
  }

  /** Settled: modulo, every live member works in one epoch of the live size; slots, see the file's comment. */
  settled(): boolean {
    const n = this.liveIds.size
    if (n === 0) return false
    if (this.spec.slots === undefined) {
      let epoch: number | undefined
      for (const id of this.liveIds) {
        const o = this.openModulo.get(id)
        if (o === undefined || o.size !== n || (epoch !== undefined && o.epoch !== epoch)) return false
        epoch = o.epoch
      }
      return true
    }
    const S = this.spec.slots
    const count = new Map<string, number>()
    for (let slot = 0; slot < S; slot++) {
      const holders = [...(this.openSlots.get(slot) ?? [])].filter((m) => this.liveIds.has(m))
      if (holders.length !== 1) return false
      count.set(holders[0]!, (count.get(holders[0]!) ?? 0) + 1)
    }
    for (const id of this.liveIds) {
      const c = count.get(id) ?? 0
      if (c < Math.floor(S / n) || c > Math.ceil(S / n)) return false
    }
    return true
  }

  private check(at: number) {
    if (this.waiter !== undefined && this.settled()) {
      const w = this.waiter
      this.waiter = undefined
      w.resolve(at)
    }
  }

  /** Resolves with the time the group is settled (at once if it is), or rejects after `ms`. */
  whenSettled(ms: number): Promise<number> {
    if (this.settled()) return Promise.resolve(nowAbs())
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined
        reject(new Error(`not settled within ${ms} ms`))
      }, ms)
      this.waiter = {
        resolve: (at) => {
          clearTimeout(timer)
          resolve(at)
        }
      }
    })
  }

  async prepare(n: number): Promise<void> {
    while (this.standby.length < n) {
      const batch = Array.from({ length: Math.min(4, n - this.standby.length) }, () => {
        const m = new Member(this.spec.script, this.spec.env, {
          url: this.spec.url,
          config: { ...this.spec.config, ...(this.spec.slots !== undefined ? { slots: this.spec.slots } : {}), migrate: false },
          maxConnections: 2
        }, this.sink)
        this.all.push(m)
        return m
      })
      await Promise.all(batch.map((m) => m.ready))
      this.standby.push(...batch)
    }
    await sleep(300)
  }

  /** Joins `n` members at once (already prepared), adds them to the live set. */
  async grow(n: number): Promise<void> {
    await this.prepare(n)
    const joining = this.standby.splice(0, n)
    this.live.push(...joining)
    for (const id of await Promise.all(joining.map((m) => m.join()))) this.liveIds.add(id)
  }

  get size() {
    return this.live.length
  }

  /** One change, measured. The standby process of a join is prepared before the window opens. */
  async change(change: "join" | "leave" | "crash", timeoutMs: number): Promise<ChangeResult> {
    if (change === "join") await this.prepare(1)
    const before = new Set(this.liveIds)
    let gone: string | undefined
    let newcomer: string | undefined
    const t0 = nowAbs()
    if (change === "join") {
      const m = this.standby.shift()!
      this.live.push(m)
      newcomer = await m.join()
      this.liveIds.add(newcomer)
    } else {
      const m = this.live.splice(Math.floor(Math.random() * this.live.length), 1)[0]!
      gone = m.id!
      this.liveIds.delete(gone)
      if (change === "leave") m.leave()
      else void m.kill()
    }
    const t1 = await this.whenSettled(timeoutMs)
    this.lastWindow = { t0, t1, gone, newcomer }
    const survivors = [...before].filter((id) => id !== gone && id !== newcomer && this.liveIds.has(id))
    const inWindow = this.events.filter((e) => e.at > t0 && e.at <= t1).sort((a, b) => a.at - b.at)
    const beforeT0 = this.events.filter((e) => e.at <= t0).sort((a, b) => a.at - b.at)
    const n = this.liveIds.size
    if (this.spec.slots === undefined) {
      let paused = 0
      let membersPaused = 0
      for (const id of survivors) {
        let working = beforeT0.filter((e) => e.member === id).at(-1)?.kind === "start"
        let since = t0
        let stopped = false
        for (const e of inWindow.filter((e) => e.member === id)) {
          if (e.kind === "end") {
            stopped = true
            if (working) {
              working = false
              since = e.at
            }
          } else if (!working) {
            paused += e.at - since
            working = true
          }
        }
          if (!working) paused += t1 - since
        if (stopped) membersPaused++
      }
      // The departed member's share: from its stop (the leaver's last end, else the kill) until the
      // group works again in the new epoch (the settle), counted as one member's.
      const departedEnd = change === "leave" ? inWindow.filter((e) => e.member === gone && e.kind === "end").at(-1)?.at ?? t0 : t0
      const departed = change === "join" ? 0 : t1 - departedEnd
      return {
        change,
        settleMs: t1 - t0,
        pausedMemberSeconds: (paused + departed) / 1000,
        survivorsMemberSeconds: paused / 1000,
        departedMemberSeconds: departed / 1000,
        slotSecondsPerS: NaN,
        membersPaused,
        survivors: survivors.length,
        slotsMoved: NaN
      }
    }
    const S = this.spec.slots
    // Who ran each slot at t0 (the killed member's slots stop at the kill).
    const holders = new Map<number, Set<string>>()
    const moved = new Set<number>()
    // Only members live before the change, and the newcomer, count (an earlier killed member's
    // slots never ended).
    const counted = new Set([...before, ...(newcomer !== undefined ? [newcomer] : [])])
    for (const e of beforeT0) {
      if (!counted.has(e.member)) continue
      let s = holders.get(e.slot)
      if (s === undefined) holders.set(e.slot, (s = new Set()))
      if (e.kind === "start") s.add(e.member)
      else s.delete(e.member)
    }
    if (change === "crash") {
      for (const [slot, s] of holders) if (s.delete(gone!)) moved.add(slot)
    }
    const since = new Map<number, number>()
    // Whose the slot was when it stopped: the departed member's, or a survivor's.
    const byDeparted = new Set<number>(moved)
    for (let slot = 0; slot < S; slot++) if ((holders.get(slot)?.size ?? 0) === 0) since.set(slot, t0)
    let slotMs = 0
    let departedMs = 0
    const add = (slot: number, ms: number) => {
      slotMs += ms
      if (byDeparted.has(slot)) departedMs += ms
    }
    const stoppers = new Set<string>()
    for (const e of inWindow) {
      if (!counted.has(e.member) || (change === "crash" && e.member === gone)) continue
      let s = holders.get(e.slot)
      if (s === undefined) holders.set(e.slot, (s = new Set()))
      if (e.kind === "start") {
        if (s.size === 0) add(e.slot, e.at - (since.get(e.slot) ?? e.at))
        s.add(e.member)
        since.delete(e.slot)
      } else {
        moved.add(e.slot)
        stoppers.add(e.member)
        s.delete(e.member)
        if (s.size === 0) {
          since.set(e.slot, e.at)
          if (e.member === gone) byDeparted.add(e.slot)
          else byDeparted.delete(e.slot)
        }
      }
    }
    for (const [slot, at] of since) add(slot, t1 - at)
    const slotSeconds = slotMs / 1000
    return {
      change,
      settleMs: t1 - t0,
      pausedMemberSeconds: (slotSeconds * n) / S,
      survivorsMemberSeconds: ((slotMs - departedMs) / 1000 * n) / S,
      departedMemberSeconds: (departedMs / 1000 * n) / S,
      slotSecondsPerS: slotSeconds / S,
      membersPaused: survivors.filter((id) => stoppers.has(id)).length,
      survivors: survivors.length,
      slotsMoved: moved.size
    }
  }

  async dispose(): Promise<void> {
    await Promise.all(this.all.map((m) => m.kill()))
  }
}
