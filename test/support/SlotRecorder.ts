/**
 * Records the per-slot work of slots-mode members (`Membership.whileOwning`): every start and stop,
 * with the member, the slot and the generation, and checks at every start (G2 per slot, G6 per
 * slot): no other member's work on that slot is running, and the store says this member holds the
 * slot at that very generation (so its fenced transactions would commit).
 */
import { Clock, Effect } from "effect"
import type * as Membership from "../../src/Membership.js"
import type { MembershipStoreService } from "../../src/MembershipStore.js"

export interface SlotEvent {
  readonly kind: "start" | "stop"
  readonly member: string
  readonly slot: number
  readonly generation: number
  readonly at: number
}

export const makeSlotRecorder = (store: MembershipStoreService, groupId: string) =>
  Effect.sync(() => {
    const events: Array<SlotEvent> = []
    const violations: Array<string> = []
    /** Who runs each slot now. */
    const runner = new Map<number, string>()
    const names = new Map<string, string>()

    const track = (m: Membership.MembershipService, name: string) =>
      Effect.sync(() => names.set(m.memberId, name)).pipe(
        Effect.zipRight(m.whileOwning((owned) =>
          Effect.gen(function*() {
            const at = yield* Clock.currentTimeMillis
            const other = runner.get(owned.slot)
            if (other !== undefined) {
              violations.push(`slot ${owned.slot} started by ${name} while ${names.get(other)} runs it`)
            }
            runner.set(owned.slot, m.memberId)
            events.push({ kind: "start", member: m.memberId, slot: owned.slot, generation: owned.generation, at })
            // Before anything that can be interrupted: the stop is recorded whenever the work ends.
            yield* Effect.addFinalizer(() =>
              Effect.flatMap(Clock.currentTimeMillis, (at) =>
                Effect.sync(() => {
                  if (runner.get(owned.slot) === m.memberId) runner.delete(owned.slot)
                  events.push({ kind: "stop", member: m.memberId, slot: owned.slot, generation: owned.generation, at })
                }))
            )
            const rows = yield* Effect.orDie(store.slotRows(groupId))
            const row = rows[owned.slot]
            if (row?.holder !== m.memberId || row.generation !== owned.generation) {
              violations.push(
                `${name} started slot ${owned.slot} at generation ${owned.generation}, but the store says ` +
                  `holder ${row?.holder === undefined ? "none" : names.get(row.holder ?? "") ?? row.holder} at ${row?.generation}`
              )
            }
            return yield* Effect.never
          })
        ))
      )

    /** The slots each member runs now, by member id (ascending). */
    const running = (): Map<string, Array<number>> => {
      const result = new Map<string, Array<number>>()
      for (const [slot, member] of runner) result.set(member, [...(result.get(member) ?? []), slot].sort((a, b) => a - b))
      return result
    }
    /** How many slots are run by some member. */
    const covered = () => runner.size
    /** The stop events of `member` from event index `from` on. */
    const stopsOf = (member: string, from = 0) => events.slice(from).filter((e) => e.kind === "stop" && e.member === member)
    const startsOf = (member: string, from = 0) => events.slice(from).filter((e) => e.kind === "start" && e.member === member)
    return { events, violations, running, covered, stopsOf, startsOf, track }
  })
