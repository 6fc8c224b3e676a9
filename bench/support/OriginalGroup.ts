/**
 * Members of the original design as loops in this process, one connection each (as each original
 * process had). Same shape as `HostGroup`/`ProcessGroup`, so the same trials run on it. Off by default
 * (BENCH_ORIGINAL_FIBER_SIZES): the original ran as processes.
 */
import { OriginalMember } from "../original/Original.js"
import type { Cover } from "./Cover.js"

export class OriginalGroup {
  readonly members: Array<OriginalMember> = []
  statements = 0
  get transactions() {
    return this.statements
  }

  constructor(
    readonly cover: Cover,
    readonly url: string,
    readonly group: string,
    readonly workIntervalMs = 200
  ) {}

  private make(): OriginalMember {
    const cover = this.cover
    let last: { modulo: number; count: number } | undefined
    const member: OriginalMember = new OriginalMember({
      url: this.url,
      group: this.group,
      workIntervalMs: this.workIntervalMs,
      onStatement: () => this.statements++,
      onWork: (work, at) => {
        if (last !== undefined) cover.add({ member: member.id, kind: "end", epoch: last.count, index: last.modulo, size: last.count, at })
        last = work
        if (work !== undefined) cover.add({ member: member.id, kind: "start", epoch: work.count, index: work.modulo, size: work.count, at })
      }
    })
    return member
  }

  async join(): Promise<{ readonly member: OriginalMember; readonly t0: number }> {
    const member = this.make()
    await member.connect()
    const t0 = performance.now()
    member.start()
    this.members.push(member)
    return { member, t0 }
  }

  async grow(n: number): Promise<void> {
    await Promise.all(Array.from({ length: n }, () => this.join()))
  }

  async leave(member: OriginalMember): Promise<number> {
    this.remove(member)
    const t0 = performance.now()
    await member.stop()
    return t0
  }

  crash(member: OriginalMember): number {
    this.remove(member)
    const t0 = performance.now()
    member.crash()
    this.cover.kill(member.id, true)
    return t0
  }

  private remove(member: OriginalMember) {
    const i = this.members.indexOf(member)
    if (i >= 0) this.members.splice(i, 1)
  }

  async dispose(): Promise<void> {
    await Promise.all(this.members.splice(0).map((m) => m.stop()))
  }
}
