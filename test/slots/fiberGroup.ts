/** A slots-mode group of members (fibers) on the real store, each run recorded per slot, and the overlaps of the runs. */
import { Effect, Exit, Layer, Scope } from "effect"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Membership from "../../src/Membership.js"
import type { MembershipConfigInput } from "../../src/MembershipConfig.js"
import { MembershipStore, type MembershipStoreService } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { freezable } from "../faults/support.js"
import { PgLive } from "../support/Database.js"
import { makeSlotRecorder, type SlotEvent } from "../support/SlotRecorder.js"

export const StoreLive = PgMembershipStore.layerUsingNotifier().pipe(Layer.provideMerge(Notifier.layer), Layer.provideMerge(PgLive))
export const config = { slots: 8, heartbeat: "200 millis", lease: "3 seconds", fenceMargin: "500 millis", statementTimeout: "1 second" } as const

export const slotGroup = (groupId: string, base: Partial<MembershipConfigInput> = config) =>
  Effect.gen(function*() {
    const store = yield* MembershipStore
    const rec = yield* makeSlotRecorder(store, groupId)
    const join = (name: string, input: Partial<MembershipConfigInput> = {}) =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const f = yield* freezable(store)
        const m = yield* Membership.make({ groupId, name, ...base, ...input }).pipe(
          Effect.provideService(MembershipStore, f.store),
          Scope.extend(scope)
        )
        yield* rec.track(m, name).pipe(Scope.extend(scope))
        const close = Scope.close(scope, Exit.void)
        yield* Effect.addFinalizer(() => close)
        return { m, close, hang: f.freeze, scope }
      })
    return { rec, join, groupId }
  })


/**
 * A member of `groupId` through `store` (a store of the test's own, wrapped to delay or hang calls),
 * tracked by `rec`; its scope closes with the test's, or earlier by `Scope.close(scope)`.
 */
export const trackedMember = (
  groupId: string,
  rec: Effect.Effect.Success<ReturnType<typeof makeSlotRecorder>>,
  base: Partial<MembershipConfigInput> = config
) =>
(name: string, store: MembershipStoreService, input: Partial<MembershipConfigInput> = {}) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const m = yield* Membership.make({ groupId, name, ...base, ...input }).pipe(
      Effect.provideService(MembershipStore, store),
      Scope.extend(scope)
    )
    yield* rec.track(m, name).pipe(Scope.extend(scope))
    return { m, scope }
  })

/** Per slot, how long two members' runs overlapped (ms), from the recorded starts and stops. */
export const overlaps = (events: ReadonlyArray<SlotEvent>, until: number) => {
  const runs: Array<{ member: string; slot: number; from: number; to: number }> = []
  const open = new Map<string, { member: string; slot: number; from: number }>()
  for (const e of events) {
    const key = `${e.member}/${e.slot}`
    if (e.kind === "start") open.set(key, { member: e.member, slot: e.slot, from: e.at })
    else {
      const o = open.get(key)
      if (o !== undefined) runs.push({ ...o, to: e.at })
      open.delete(key)
    }
  }
  for (const o of open.values()) runs.push({ ...o, to: until })
  const out: Array<{ slot: number; ms: number }> = []
  for (let i = 0; i < runs.length; i++) {
    for (let j = i + 1; j < runs.length; j++) {
      const x = runs[i]!, y = runs[j]!
      if (x.slot !== y.slot || x.member === y.member) continue
      const ms = Math.min(x.to, y.to) - Math.max(x.from, y.from)
      if (ms > 0) out.push({ slot: x.slot, ms })
    }
  }
  return out
}
