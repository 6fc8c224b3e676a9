/**
 * A seeded random walk over the work runner (slots mode) driven as the driver drives it: StartSlot
 * only for a slot not active and not stopping; StopSlots; a slot is started again only once its stop
 * has resolved; fences (interrupt, then stop of every active slot, then awaitStopped); registrations
 * opened and closed. Long-running runs with random cleanups (some ignore interrupts for a while).
 * Checks: (G2) once a slot's stop has resolved, no run covering it runs until the slot is started
 * again; no two runs of one spec on one slot at once; (liveness) after settling, every open
 * registration runs on every active slot and each set form runs once, under the active set. (A
 * review's; against a runner whose stops did not wait for the set forms covering the slot it failed
 * in every seed.) `RUNNER_WALK_SEEDS=100` for more seeds.
 */
import { expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope, TestClock } from "effect"
import { makeWorkRunner } from "../../src/internal/membership/workRunner.js"

const member = { groupId: "runner", memberId: "00000000-0000-4000-8000-000000000000" }

interface R { kind: "slot" | "set"; spec: number; slots: ReadonlyArray<number>; end?: boolean }

const once = (seed: number) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const work = yield* makeWorkRunner(scope, member)
    let rnd = seed
    const next = (n: number) => { rnd = (rnd * 1103515245 + 12345) % 2147483648; return rnd % n }
    const runs: Array<R> = []
    const errors: Array<string> = []
    const released = new Set<number>() // slots whose stop resolved and not started since
    const cleanup = () => [0, 0, 0, 50, 300, 2000][next(6)]!
    const regs: Array<{ id: number; kind: "slot" | "set"; scope: Scope.CloseableScope }> = []
    let ids = 0
    const register = (kind: "slot" | "set") =>
      Effect.gen(function*() {
        const id = ids++
        const s = yield* Scope.make()
        const body = (slots: ReadonlyArray<number>) =>
          Effect.suspend(() => {
            const r: R = { kind, spec: id, slots }
            for (const sl of slots) {
              if (kind === "slot" && !active.has(sl)) errors.push(`slot spec #${id} started on slot ${sl} not active (stopping: ${stopping.has(sl)})`)
              if (released.has(sl)) errors.push(`${kind}#${id} started under released slot ${sl}`)
              if (kind === "slot" && runs.some((o) => o.kind === "slot" && o.spec === id && o.end !== true && o.slots[0] === sl)) {
                errors.push(`two runs of slot spec #${id} on slot ${sl}`)
              }
            }
            runs.push(r)
            const c = cleanup()
            return Effect.never.pipe(Effect.onInterrupt(() =>
              Effect.uninterruptible(Effect.sleep(c)).pipe(Effect.zipRight(Effect.sync(() => void (r.end = true))))
            ))
          })
        if (kind === "slot") yield* work.registerSlot({ run: (o) => body([o.slot]) }, liveNow).pipe(Scope.extend(s))
        else yield* work.registerSlotSet({ run: (o) => body(o.slots) }, liveNow).pipe(Scope.extend(s))
        regs.push({ id, kind, scope: s })
      })
    let ok = true
    const liveNow = Effect.sync(() => ok)
    // one-shot per-slot runs: per slot start (epoch of the slot), counted
    const oneShots = new Map<string, number>()
    let slotStarts = new Map<number, number>()
    const oneShotReg = (id: number) => work.registerSlot({ run: (o) => Effect.sync(() => {
      const k = `${id}/${o.slot}/${slotStarts.get(o.slot)}`
      oneShots.set(k, (oneShots.get(k) ?? 0) + 1)
      if ((oneShots.get(k) ?? 0) > 1) errors.push(`one-shot #${id} ran twice on slot ${o.slot} under one start`)
    }) }, liveNow)
    let modOne = 0
    let modStarts = 0
    const active = new Set<number>()
    const stopping = new Set<number>()
    const stopSlots = (slots: Array<number>) =>
      Effect.gen(function*() {
        for (const s of slots) { active.delete(s); stopping.add(s) }
        const f = yield* Effect.forkIn(work.stopSlots(slots), scope)
        for (const s of slots) {
          yield* Effect.forkIn(Effect.gen(function*() {
            const m = yield* Fiber.join(f)
            yield* (m.get(s) ?? Effect.void)
            stopping.delete(s)
            released.add(s)
            for (const r of runs) if (r.end !== true && r.slots.includes(s)) errors.push(`slot ${s} reported stopped while ${r.kind}#${r.spec} under [${r.slots}] runs`)
          }), scope)
        }
      })
    yield* register("slot")
    yield* register("set")
    const os = yield* Scope.make()
    yield* oneShotReg(999).pipe(Scope.extend(os))
    yield* work.register({ run: () => Effect.sync(() => { modOne++; if (modOne > modStarts) errors.push("modulo one-shot ran twice under one start") }) }, liveNow).pipe(Scope.extend(os))
    modStarts++
    yield* work.start({ epoch: 1, index: 0, size: 1, incarnation: 1 })
    for (let step = 0; step < 60; step++) {
      const op = next(10)
      if (op <= 3) {
        const free = [0, 1, 2, 3, 4, 5].filter((s) => !active.has(s) && !stopping.has(s))
        if (free.length > 0) {
          const s = free[next(free.length)]!
          released.delete(s)
          active.add(s)
          slotStarts.set(s, step)
          yield* work.startSlot({ slot: s, generation: step, count: 6 }, Effect.succeed(true))
        }
      } else if (op <= 5) {
        const act = [...active]
        if (act.length > 0) {
          const k = 1 + next(Math.min(2, act.length))
          yield* stopSlots(act.slice(0, k))
        }
      } else if (op === 6) {
        // a view that stops one and starts another
        const act = [...active]
        const free = [0, 1, 2, 3, 4, 5].filter((s) => !active.has(s) && !stopping.has(s))
        if (act.length > 0 && free.length > 0) {
          yield* stopSlots([act[0]!])
          const s = free[0]!
          released.delete(s)
          active.add(s)
          slotStarts.set(s, step)
          yield* work.startSlot({ slot: s, generation: step, count: 6 }, Effect.succeed(true))
        }
      } else if (op === 7) {
        // fence
        yield* work.interrupt
        yield* stopSlots([...active])
        yield* TestClock.adjust("3 seconds")
        yield* work.awaitStopped
        modStarts++
        yield* work.start({ epoch: 1 + step, index: 0, size: 1, incarnation: 1 })
      } else if (op === 8 && next(2) === 0) {
        // the deadline's instant: a registration refused, then a renewal in time
        ok = false
        yield* register(next(2) === 0 ? "slot" : "set")
        const free = [0, 1, 2, 3, 4, 5].filter((s) => !active.has(s) && !stopping.has(s))
        if (free.length > 0 && next(2) === 0) {
          // a StartSlot refused at the instant: the driver fences (interrupt, stop every slot)
          const started = yield* work.startSlot({ slot: free[0]!, generation: step, count: 6 }, liveNow)
          if (started) errors.push("startSlot started while live was false")
          yield* work.interrupt
          yield* stopSlots([...active])
          ok = true
          yield* TestClock.adjust("3 seconds")
          yield* work.awaitStopped
          modStarts++
          yield* work.start({ epoch: 1 + step, index: 0, size: 1, incarnation: 1 })
        }
        yield* TestClock.adjust(next(2) * 30)
        ok = true
      } else if (op === 8) {
        yield* register(next(2) === 0 ? "slot" : "set")
      } else {
        if (regs.length > 0) {
          const [r] = regs.splice(next(regs.length), 1)
          yield* Effect.forkIn(Scope.close(r!.scope, Exit.void), scope)
        }
      }
      yield* TestClock.adjust(next(3) * 100)
    }
    yield* TestClock.adjust("10 seconds")
    // liveness
    const live = runs.filter((r) => r.end !== true)
    const act = [...active].sort((a, b) => a - b)
    if (modOne !== modStarts) errors.push(`modulo one-shot ran ${modOne} times for ${modStarts} starts`)
    for (const s of act) if (oneShots.get(`999/${s}/${slotStarts.get(s)}`) !== 1) errors.push(`one-shot missing on active slot ${s}`)
    for (const reg of regs) {
      if (reg.kind === "slot") {
        for (const s of act) {
          const n = live.filter((r) => r.kind === "slot" && r.spec === reg.id && r.slots[0] === s).length
          if (n !== 1) errors.push(`slot spec #${reg.id} has ${n} runs on active slot ${s}`)
        }
      } else if (act.length > 0) {
        const mine = live.filter((r) => r.kind === "set" && r.spec === reg.id)
        if (mine.length !== 1 || mine[0]!.slots.join() !== act.join()) {
          errors.push(`set spec #${reg.id}: runs ${JSON.stringify(mine.map((r) => r.slots))}, active [${act}]`)
        }
      }
    }
    for (const r of live) {
      if (!regs.some((g) => g.id === r.spec)) errors.push(`closed registration #${r.spec} still runs`)
    }
    yield* work.interrupt
    yield* TestClock.adjust("10 seconds")
    yield* Scope.close(scope, Exit.void)
    return errors
  })

it.scoped("random walks over the work runner", () =>
  Effect.gen(function*() {
    const all: Array<string> = []
    for (let seed = 1; seed <= Number(process.env["RUNNER_WALK_SEEDS"] ?? 20); seed++) {
      const errors = yield* once(seed)
      if (errors.length > 0) all.push(`seed ${seed}: ${errors.slice(0, 3).join(" | ")}`)
    }
    expect(all).toEqual([])
  }), 120_000)
