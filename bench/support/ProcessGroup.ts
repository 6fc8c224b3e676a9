/**
 * Members in other OS processes, driven over stdin/stdout (bench/member.mjs, or
 * bench/original-member.mjs for the original design):
 * - `ProcessGroup`: one member per process. A process is spawned and readied (loaded, connected)
 *   before it is asked to join, so a join's time is the protocol's, not Node's start-up. A crash
 *   is SIGKILL.
 * - `HostGroup`: many fiber members in one process over one pool. A crash makes that member's
 *   database calls hang (its row stays until its lease expires). Running them in a process of
 *   their own keeps an overloaded configuration from leaking into the next one (it is killed) and
 *   gives clean memory readings.
 * Work intervals go to a `Cover`, with the child's timestamps converted to this process's clock.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as path from "node:path"
import * as readline from "node:readline"
import type { Cover } from "./Cover.js"

export interface ProcessSpec {
  /** bench/member.mjs or bench/original-member.mjs */
  readonly script: string
  readonly env: Record<string, string>
  /** Passed as MG_BENCH (JSON). */
  readonly options: unknown
  readonly execArgv?: ReadonlyArray<string>
}

export interface Stats {
  readonly statements: number
  /** Transactions, counted at the driver (a statement outside BEGIN ... COMMIT is one). */
  readonly transactions: number
  readonly rss: number
  readonly heap: number
  readonly members: number
  /** Store calls of the members (bench/member.mjs only). */
  readonly calls?: Record<string, { calls: number; failures: number; ms: number; maxMs: number }>
  /** CPU time of the process so far (bench/member.mjs only). */
  readonly cpuMs?: number
  /** p99 event-loop delay since the previous stats (bench/member.mjs only). */
  readonly loopP99Ms?: number
}

const toLocal = (t: number) => t - performance.timeOrigin

/** One child process and its line protocol. */
export class Child {
  readonly process: ChildProcess
  readonly ready: Promise<void>
  readonly exited: Promise<number | null>
  private onReady!: () => void
  private readonly joining: Array<(j: { readonly id: string; readonly t0: number }) => void> = []
  private readonly statsWaiters: Array<(s: Stats) => void> = []
  private readonly stderr: Array<string> = []
  killed = false

  constructor(spec: ProcessSpec, cover: Cover) {
    this.process = spawn(process.execPath, [...(spec.execArgv ?? []), spec.script], {
      cwd: path.dirname(spec.script),
      env: { ...process.env, ...spec.env, MG_BENCH: JSON.stringify(spec.options) },
      stdio: ["pipe", "pipe", "pipe"]
    })
    this.ready = new Promise((resolve) => (this.onReady = resolve))
    this.exited = new Promise((resolve) => this.process.once("exit", (code) => resolve(code)))
    readline.createInterface({ input: this.process.stdout! }).on("line", (line) => {
      let m: { k: string; m?: string; e?: number; i?: number; n?: number; t?: number } & Partial<Stats>
      try {
        m = JSON.parse(line)
      } catch {
        return
      }
      switch (m.k) {
        case "ready":
          return this.onReady()
        case "joining":
          return this.joining.shift()?.({ id: m.m!, t0: toLocal(m.t!) })
        case "start":
        case "end":
          return cover.add({ member: m.m!, kind: m.k, epoch: m.e!, index: m.i!, size: m.n!, at: toLocal(m.t!) })
        case "stats":
          return this.statsWaiters.shift()?.(m as unknown as Stats)
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

  send(command: string) {
    if (this.process.stdin?.writable) this.process.stdin.write(`${command}\n`)
  }

  /** Sends a join command; resolves with the member's id and the time its join began. */
  join(command = "join"): Promise<{ readonly id: string; readonly t0: number }> {
    return new Promise((resolve) => {
      this.joining.push(resolve)
      this.send(command)
    })
  }

  /** `n` members join at once. */
  grow(n: number): Promise<Array<{ readonly id: string; readonly t0: number }>> {
    const all = Array.from({ length: n }, () => new Promise<{ id: string; t0: number }>((r) => this.joining.push(r)))
    this.send(`grow ${n}`)
    return Promise.all(all)
  }

  stats(gc = false): Promise<Stats> {
    return new Promise((resolve) => {
      this.statsWaiters.push(resolve)
      this.send(gc ? "stats gc" : "stats")
    })
  }

  kill() {
    this.killed = true
    this.process.kill("SIGKILL")
    return this.exited
  }
}

const settle = () => new Promise((r) => setTimeout(r, 300))

/** One member per process. */
export class ProcessGroup {
  readonly members: Array<Child> = []
  private readonly standby: Array<Child> = []
  private readonly ids = new Map<Child, string>()

  constructor(readonly cover: Cover, readonly spec: ProcessSpec) {}

  /** Spawns processes, `parallel` at a time, until `n` are ready and waiting; then lets the CPU settle. */
  async prepare(n: number, parallel = 4): Promise<void> {
    if (this.standby.length >= n) return
    while (this.standby.length < n) {
      const batch = Array.from({ length: Math.min(parallel, n - this.standby.length) }, () => new Child(this.spec, this.cover))
      await Promise.all(batch.map((p) => p.ready))
      this.standby.push(...batch)
    }
    await settle()
  }

  async join(): Promise<{ readonly member: Child; readonly t0: number }> {
    await this.prepare(1)
    const member = this.standby.shift()!
    this.members.push(member)
    const { id, t0 } = await member.join()
    this.ids.set(member, id)
    return { member, t0 }
  }

  async grow(n: number): Promise<void> {
    await this.prepare(n)
    await Promise.all(Array.from({ length: n }, () => this.join()))
  }

  /** Graceful leave (the process leaves, then exits); resolves with the time it was asked. */
  leave(member: Child): number {
    this.remove(member)
    const t0 = performance.now()
    member.send("leave")
    return t0
  }

  /** SIGKILL: its row stays until its lease expires. */
  crash(member: Child): number {
    this.remove(member)
    const t0 = performance.now()
    void member.kill()
    const id = this.ids.get(member)
    if (id !== undefined) this.cover.kill(id, true)
    return t0
  }

  private remove(member: Child) {
    const i = this.members.indexOf(member)
    if (i >= 0) this.members.splice(i, 1)
  }

  stats(): Promise<Array<Stats>> {
    return Promise.all(this.members.map((m) => m.stats()))
  }

  /** Kills every process (rows are left behind: each group of a run has an id of its own). */
  async dispose(): Promise<void> {
    await Promise.all([...this.members.splice(0), ...this.standby.splice(0)].map((m) => m.kill()))
  }
}

/** Many fiber members in one process. */
export class HostGroup {
  readonly members: Array<string> = []
  readonly host: Child

  constructor(readonly cover: Cover, spec: ProcessSpec) {
    this.host = new Child({ ...spec, execArgv: ["--expose-gc", ...(spec.execArgv ?? [])] }, cover)
  }

  async prepare(): Promise<void> {
    await this.host.ready
  }

  async join(): Promise<{ readonly member: string; readonly t0: number }> {
    await this.host.ready
    const { id, t0 } = await this.host.join()
    this.members.push(id)
    return { member: id, t0 }
  }

  async grow(n: number): Promise<void> {
    await this.host.ready
    this.members.push(...(await this.host.grow(n)).map((j) => j.id))
  }

  leave(member: string): number {
    this.remove(member)
    const t0 = performance.now()
    this.host.send(`leave ${member}`)
    return t0
  }

  crash(member: string): number {
    this.remove(member)
    const t0 = performance.now()
    this.host.send(`crash ${member}`)
    this.cover.kill(member, false)
    return t0
  }

  private remove(member: string) {
    const i = this.members.indexOf(member)
    if (i >= 0) this.members.splice(i, 1)
  }

  stats(gc = false): Promise<Stats> {
    return this.host.stats(gc)
  }

  async dispose(): Promise<void> {
    this.members.splice(0)
    await this.host.kill()
  }
}
