/**
 * A store in memory, on the Effect `Clock`: for deterministic `TestClock` tests of the interpreter.
 * It obeys the same contract suite as the PostgreSQL store, and can inject faults.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Stream from "effect/Stream"
import { canonicalMemberId, elsewhereError } from "./internal/memberId.js"
import { reassign, waitingRowLeaseMs } from "./internal/reassign.js"
import * as Table from "./internal/slots/table.js"
import { maxDuration } from "./MembershipConfig.js"
import { InstanceBusy, JoinDeferred, SlotsMismatch, StoreError } from "./MembershipError.js"
import * as Metrics from "./MembershipMetrics.js"
import type { GroupRow, GroupView, MemberInfo, MemberRow, MembershipStoreService, Wakeup, WaiterRow } from "./MembershipStore.js"
import { MembershipStore } from "./MembershipStore.js"

interface Row extends MemberInfo {
  index: number | null
  assignedEpoch: number
  assignedSize: number
  stoppingSince: number | null
  ackedEpoch: number
  leaseExpiresAt: number
  /** The lease its member runs with, as its join or last renewal recorded it (`GroupView.longestLeaseMs`). */
  leaseMs: number
  heartbeatAt: number
  joinedAt: number
  joinSeq: number
  /** Static membership: the instance id (null: none), when released, the rejoin grace (0: none). */
  instanceId: string | null
  releasedAt: number | null
  graceMs: number
}

/** Static membership: a member waiting for an instance id held by a live member (for `status` only). */
interface Waiter extends MemberInfo {
  groupId: string
  instanceId: string
  since: number
  seenAt: number
  leaseMs: number
}

interface Group {
  epoch: number
  incarnation: number
  size: number
  changedAt: number
  members: Map<string, Row>
  pubsub: PubSub.PubSub<Wakeup>
  /** Slots mode: the slot count and the slot rows (`Table`, the statements' pure twins); null: modulo mode. */
  slots: number | null
  table: Table.SlotTable | null
}

/**
 * Fault injection for tests.
 *
 * @since 0.1.0
 * @category models
 */
export interface InMemoryControl {
  /** Calls made for this member (or every member with `"*"`) block until `resume`. */
  readonly hang: (memberId: string) => Effect.Effect<void>
  readonly resume: (memberId: string) => Effect.Effect<void>
  /** While on, every call fails as if the database were down. */
  readonly setOutage: (on: boolean) => Effect.Effect<void>
  /** While on, no wake-up is delivered (G7: polling must carry the protocol). */
  readonly setDropNotifications: (on: boolean) => Effect.Effect<void>
  /** How many calls each operation received. */
  readonly calls: Effect.Effect<Readonly<Record<string, number>>>
  /**
   * Steps the store's clock (the one leases are judged by) by `ms` against the Effect `Clock` the
   * members run on: a database clock stepped by NTP, or a failover to a host whose clock is ahead.
   */
  readonly stepClock: (ms: number) => Effect.Effect<void>
  /**
   * A copy of every group's rows now; running the effect it returns puts them back (groups created
   * since are dropped), waking no one: a database restored from a backup, or a failover to a standby
   * that had not received what came after.
   *
   * @since 0.3.0
   */
  readonly snapshot: Effect.Effect<Effect.Effect<void>>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class InMemoryStoreControl extends Context.Tag("modulo-group/InMemoryStoreControl")<
  InMemoryStoreControl,
  InMemoryControl
>() {}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<{ readonly store: MembershipStoreService; readonly control: InMemoryControl }> = Effect
  .sync(() => {
    const groups = new Map<string, Group>()
    const waiters = new Map<string, Waiter>()
    const hung = new Map<string, Deferred.Deferred<void>>()
    let outage = false
    let dropNotifications = false
    let seq = 0
    let clockOffset = 0
    const calls: Record<string, number> = {}
    const storeNow = Effect.map(Clock.currentTimeMillis, (ms) => ms + clockOffset)

    const getGroup = (groupId: string, now: number): Group => {
      let g = groups.get(groupId)
      if (g === undefined) {
        g = {
          epoch: 0,
          incarnation: now,
          size: 0,
          changedAt: now,
          members: new Map(),
          pubsub: Effect.runSync(PubSub.sliding<Wakeup>(16)),
          slots: null,
          table: null
        }
        groups.set(groupId, g)
      }
      return g
    }

    // Blocks while the member (or everyone) is hung; fails during an outage.
    const gate = (operation: string, memberId: string | undefined) =>
      Effect.gen(function*() {
        calls[operation] = (calls[operation] ?? 0) + 1
        const d = (memberId !== undefined ? hung.get(memberId) : undefined) ?? hung.get("*")
        if (d !== undefined) yield* Deferred.await(d)
        if (outage) return yield* new StoreError({ operation, reason: "database unavailable (injected outage)" })
      })

    // The payloads the PostgreSQL store sends: a change's new epoch (`E`), a barrier down
    // (`E:ready`); none for the rest (a member that cannot read one renews, as for "reap").
    const notify = (g: Group, payload?: string) =>
      dropNotifications ? Effect.void : PubSub.publish(g.pubsub, payload === undefined ? {} : { payload })

    // A row reaping may delete: lease and rejoin grace (0 without an instance id) have run out.
    const reapable = (row: Row, now: number) => row.leaseExpiresAt + row.graceMs <= now
    // A static row whose lease ran out (or that was released) within its grace: not live, only held.
    const held = (row: Row, now: number) => row.instanceId !== null && row.leaseExpiresAt <= now && !reapable(row, now)

    // A waiting joiner's row (see JoinDeferred): no index, not a member of any epoch yet.
    const waiting = (row: Row) => row.index === null

    let graceExpired = 0
    // Deletes reapable rows; returns how many were members (expired waiting rows go without a change).
    const removeExpired = (g: Group, now: number): number => {
      let n = 0
      for (const [id, row] of g.members) {
        if (reapable(row, now)) {
          g.members.delete(id)
          if (waiting(row)) continue
          if (row.instanceId !== null) graceExpired++
          n++
        }
      }
      return n
    }
    const countGraceExpiries = (groupId: string) =>
      Effect.suspend(() => {
        const n = graceExpired
        graceExpired = 0
        return n > 0 ? Metric.update(Metrics.graceExpiries.pipe(Metric.tagged("group", groupId)), n) : Effect.void
      })
    // Held rows acknowledge `epoch`: their old process cannot be working (G3).
    const ackHeld = (g: Group, now: number, epoch: number): number => {
      let n = 0
      for (const row of g.members.values()) {
        if (held(row, now) && row.ackedEpoch < epoch) {
          row.ackedEpoch = epoch
          n++
        }
      }
      return n
    }

    // A member (not a waiting row, which a restore may leave acknowledging ahead) that has
    // acknowledged an epoch the group has not reached: the rows were put back (a restore) while it
    // worked on. Such an acknowledgement lowers no barrier; the next change builds past it, in a new
    // incarnation (the PostgreSQL store's `behind`). Returns whether the group was behind.
    const ahead = (g: Group, row: Row) => !waiting(row) && row.ackedEpoch > g.epoch
    const catchUp = (g: Group): boolean => {
      let max = g.epoch
      for (const r of g.members.values()) if (ahead(g, r)) max = Math.max(max, r.ackedEpoch)
      if (max === g.epoch) return false
      g.epoch = max
      return true
    }

    // `fresh`: no member survived into this change, so a new incarnation begins (see GroupView).
    const rebalance = (g: Group, now: number, fresh: boolean) => {
      const rows = [...g.members.values()]
      const seats = reassign(rows.map((r) => ({ memberId: r.memberId, index: r.index, joinSeq: r.joinSeq })))
      g.epoch += 1
      g.size = rows.length
      g.changedAt = now
      // Every change: at least the clock (the PostgreSQL store's `bumpEpoch`: no token of before a restore again).
      g.incarnation = Math.max(fresh ? g.incarnation + 1 : g.incarnation, Math.floor(now))
      rows.forEach((r, i) => {
        // A waiting row given an index: its joiner has its waiting interval again from now to take
        // the place (the PostgreSQL store's reassignIndices).
        if (r.index === null && r.ackedEpoch < g.epoch && r.leaseExpiresAt > now && r.leaseExpiresAt - r.heartbeatAt <= r.leaseMs) {
          r.leaseExpiresAt = Math.max(r.leaseExpiresAt, now + (r.leaseExpiresAt - r.heartbeatAt))
        }
        r.index = seats[i]!
        r.assignedEpoch = g.epoch
        r.assignedSize = g.size
      })
      ackHeld(g, now, g.epoch)
      // Slots mode: every slot's owner becomes its target; slots without a live holder are handed
      // over at once (Table.change, what the PostgreSQL change's UPDATE does).
      if (g.table !== null) {
        const live = [...rows].sort((a, b) => a.joinSeq - b.joinSeq).map((r) => r.memberId)
        g.table = Table.change(g.table, live).table
      }
    }

    const slotViewOf = (g: Group, memberId: string): GroupView["slots"] => {
      if (g.table === null || g.slots === null) return undefined
      const held: Array<{ slot: number; generation: number; owned: boolean }> = []
      const pending: Array<number> = []
      g.table.forEach((row, slot) => {
        if (row.holder === memberId) held.push({ slot, generation: row.generation, owned: row.owner === memberId })
        else if (row.owner === memberId) pending.push(slot)
      })
      return { count: g.slots, held, pending }
    }

    const viewOf = (g: Group, row: Row, now: number): GroupView => {
      let barrier = true
      let expired = false
      // The longest lease of the live rows (`GroupView.longestLeaseMs`), as the PostgreSQL store reads it.
      let longest = row.leaseMs
      for (const other of g.members.values()) {
        if (other.ackedEpoch < g.epoch || ahead(g, other)) barrier = false
        if (reapable(other, now) || (held(other, now) && other.ackedEpoch < g.epoch) || ahead(g, other)) expired = true
        if (other.leaseExpiresAt > now) longest = Math.max(longest, other.leaseMs)
      }
      return {
        epoch: g.epoch,
        size: g.size,
        index: row.index!,
        acked: row.ackedEpoch,
        allAcked: barrier,
        expired,
        incarnation: g.incarnation,
        clock: now,
        longestLeaseMs: Math.min(longest, Duration.toMillis(maxDuration)),
        ...(g.table === null ? {} : { slots: slotViewOf(g, row.memberId) })
      }
    }

    const store: MembershipStoreService = {
      join: (groupId, member, leaseMs, statics = {}, joinOptions = {}) =>
        gate("join", member.memberId).pipe(
          Effect.zipRight(storeNow),
          Effect.flatMap((now): Effect.Effect<GroupView, StoreError | SlotsMismatch> => {
            // The group's mode is fixed by its first join; any other asks for the same (checked
            // first, as the PostgreSQL store does).
            const requested = joinOptions.slots ?? null
            const existing = groups.get(groupId)
            const unformed = existing === undefined || (existing.epoch === 0 && existing.slots === null)
            if (requested !== (existing?.slots ?? null) && !(unformed && requested !== null)) {
              return Effect.fail(new SlotsMismatch({ groupId, group: existing?.slots ?? null, requested }))
            }
            // A row of this member id in another group: refused by name, as the PostgreSQL store
            // does; when it is reapable (lease and grace run out), that group is reaped after the
            // refusal, and the next attempt goes through.
            for (const [other, og] of groups) {
              const row = other === groupId ? undefined : og.members.get(member.memberId)
              if (row === undefined) continue
              const canReap = reapable(row, now)
              return Effect.zipRight(
                canReap ? Effect.ignore(store.reap(other)) : Effect.void,
                Effect.fail(elsewhereError(member.memberId, {
                  ...row,
                  group: other,
                  expired: row.leaseExpiresAt <= now,
                  reapable: canReap,
                  instance: row.instanceId,
                  grace_ms: row.graceMs
                }))
              )
            }
            const g = getGroup(groupId, now)
            if (requested !== g.slots) {
              g.slots = requested
              g.table = Table.empty(requested!)
            }
            const instanceId = statics.instanceId ?? null
            const graceMs = instanceId === null ? 0 : Math.max(0, Math.round(statics.rejoinGraceMs ?? 0))
            const instance = instanceId === null
              ? undefined
              : [...g.members.values()].find((r) => r.instanceId === instanceId && !reapable(r, now))
            if (instance !== undefined && instance.leaseExpiresAt > now && instance.memberId !== member.memberId) {
              return Effect.fail(
                new InstanceBusy({ instanceId: instanceId!, holder: `${instance.name} (${instance.host}/${instance.pid})` })
              )
            }
            // Never this member's own live row (see the PostgreSQL store): that rejoin is a change.
            if (
              instance !== undefined && instance.leaseExpiresAt <= now && instance.index !== null &&
              instance.index >= 0 && instance.index < g.size && instance.assignedEpoch === g.epoch
            ) {
              // The takeover: same index, same epoch, acknowledged; nothing else changes (expired
              // rows are left to the ordinary reap: removing them is a change).
              g.members.delete(instance.memberId)
              const row: Row = {
                ...instance,
                ...member,
                leaseExpiresAt: now + leaseMs,
                leaseMs,
                heartbeatAt: now,
                joinedAt: now,
                releasedAt: null,
                stoppingSince: null,
                ackedEpoch: Math.max(instance.ackedEpoch, g.epoch),
                instanceId,
                graceMs
              }
              g.members.set(member.memberId, row)
              return Effect.as(
                Metric.update(Metrics.takeovers.pipe(Metric.tagged("group", groupId)), 1),
                { ...viewOf(g, row, now), takenOver: true }
              )
            }
            // An overdue member (last renewal old, lease live) would hold the barrier of a change made
            // now: wait instead, in a waiting row (no index, no change); see the PostgreSQL store.
            const overdueAfterMs = joinOptions.overdueAfterMs
            if (overdueAfterMs !== undefined && (instance === undefined || instance.memberId === member.memberId)) {
              const own = g.members.get(member.memberId)
              if (
                joinOptions.waiting === true && own !== undefined && !waiting(own) && own.assignedEpoch === g.epoch &&
                own.leaseExpiresAt > now
              ) {
                // Given an index by a change while waiting: that change was this join.
                own.ackedEpoch = Math.max(own.ackedEpoch, g.epoch)
                own.leaseExpiresAt = now + leaseMs
                own.leaseMs = leaseMs
                own.graceMs = graceMs
                own.heartbeatAt = now
                return Effect.succeed(viewOf(g, own, now))
              }
              const mayWait = own === undefined || (waiting(own) && own.joinedAt + leaseMs > now)
              const late = mayWait
                ? [...g.members.values()]
                  .filter((r) =>
                    r.memberId !== member.memberId && !waiting(r) && r.leaseExpiresAt > now &&
                    r.heartbeatAt + Math.max(0, Math.round(overdueAfterMs)) <= now
                  )
                  .sort((a, b) => a.heartbeatAt - b.heartbeatAt)[0]
                : undefined
              if (late !== undefined) {
                // A waiting row an earlier process of this instance left, run out: gone (no change; the
                // PostgreSQL store's deleteRunOutWaiting).
                if (instanceId !== null) {
                  for (const [id, r] of g.members) {
                    if (r.instanceId === instanceId && id !== member.memberId && waiting(r) && r.leaseExpiresAt <= now) g.members.delete(id)
                  }
                }
                const row: Row = own ?? {
                  ...member,
                  index: null,
                  assignedEpoch: 0,
                  assignedSize: 0,
                  stoppingSince: null,
                  ackedEpoch: 0,
                  leaseExpiresAt: 0,
                  leaseMs,
                  heartbeatAt: now,
                  joinedAt: now,
                  joinSeq: ++seq,
                  instanceId,
                  releasedAt: null,
                  // No rejoin grace until its joiner takes the index it is given (see the PostgreSQL
                  // store's deferJoin): a waiting row holds no place.
                  graceMs: 0
                }
                // The group's epoch (see the PostgreSQL store's deferJoin): the barrier of the epoch
                // its promotion creates waits for its joiner to take the place.
                row.ackedEpoch = g.epoch
                // Runs out one overdue threshold after this poll (the PostgreSQL store's deferJoin, which
                // adds its lock wait: no lock waits here).
                row.leaseExpiresAt = now + waitingRowLeaseMs(leaseMs, overdueAfterMs)
                row.leaseMs = leaseMs
                row.heartbeatAt = now
                g.members.set(member.memberId, row)
                return Effect.fail(
                  new JoinDeferred({
                    overdue: `${late.name} (${late.host}/${late.pid})`,
                    heartbeatAgeMs: now - late.heartbeatAt,
                    leaseLeftMs: late.leaseExpiresAt - now
                  })
                )
              }
            }
            removeExpired(g, now)
            g.members.delete(member.memberId)
            // Slots mode: the slots this member's earlier row held move to a new generation (see the
            // PostgreSQL store's reissueHeldSlots).
            if (g.table !== null) {
              g.table = g.table.map((r) => (r.holder === member.memberId ? { ...r, generation: r.generation + 1 } : r))
            }
            if (instance !== undefined) g.members.delete(instance.memberId)
            const behind = catchUp(g)
            const fresh = behind || [...g.members.values()].every((r) => r.leaseExpiresAt <= now || waiting(r))
            const row: Row = {
              ...member,
              index: null,
              assignedEpoch: 0,
              assignedSize: 0,
              stoppingSince: null,
              ackedEpoch: g.epoch + 1,
              leaseExpiresAt: now + leaseMs,
              leaseMs,
              heartbeatAt: now,
              joinedAt: now,
              joinSeq: ++seq,
              instanceId,
              releasedAt: null,
              graceMs
            }
            g.members.set(member.memberId, row)
            rebalance(g, now, fresh)
            return Effect.as(Effect.zipRight(countGraceExpiries(groupId), notify(g, String(g.epoch))), viewOf(g, row, now))
          })
        ),
      heartbeat: (groupId, memberId, ack, leaseMs, options = {}) =>
        // Nothing to batch with here (`sharesHeartbeats` is not set): a renewal that may be held goes
        // when its heartbeat is due.
        Effect.sleep(Math.max(0, options.holdMs ?? 0)).pipe(
          Effect.zipRight(gate("heartbeat", memberId)),
          Effect.zipRight(storeNow),
          Effect.flatMap((now) => {
            const g = groups.get(groupId)
            const row = g?.members.get(memberId)
            // A waiting row (no index) is not a member yet: no view, as in the PostgreSQL store.
            if (g === undefined || row === undefined || row.leaseExpiresAt <= now || waiting(row)) {
              return Effect.succeed(Option.none<GroupView>())
            }
            const before = row.ackedEpoch
            // Renewals here are atomic, so in the order they were sent (the PostgreSQL store's
            // `renewal_seq`, statements.ts `inOrder`).
            row.leaseExpiresAt = now + leaseMs
            row.leaseMs = leaseMs
            row.heartbeatAt = now
            // `ackCurrent`: a waiting member acknowledges the group's epoch (as the PostgreSQL store's
            // statement reads it; here atomic).
            // `ackPlace`: an acknowledgement of an epoch this row was given another place in is not
            // recorded (the PostgreSQL store's `placedAck`: the epoch's number was issued twice).
            const place = options.ackPlace
            const placed = place !== undefined && ack === row.assignedEpoch &&
                (row.assignedSize !== place.size || row.index !== place.index)
              ? 0
              : ack
            row.ackedEpoch = Math.max(row.ackedEpoch, placed, options.ackCurrent === true ? g.epoch : 0)
            row.stoppingSince = options.stuck === true ? (row.stoppingSince ?? now) : null
            // Renewed, but a group of the other mode than the renewing member's gives no view, as in the
            // PostgreSQL store (its mode changed by hand there; here only a caller that asks wrongly).
            if ((options.slots === true) !== (g.slots !== null)) return Effect.succeed(Option.none<GroupView>())
            const full = viewOf(g, row, now)
            // Slots only when asked for (as the PostgreSQL store reads them).
            const { slots: _slots, ...modulo } = full
            const view: GroupView = options.slots === true ? full : modulo
            // The acknowledgement that completes the barrier wakes the others.
            const completes = (before < g.epoch || options.announce === true) && view.allAcked
            return Effect.as(completes ? notify(g, `${view.epoch}:ready`) : Effect.void, Option.some(view))
          })
        ),
      reap: (groupId) =>
        gate("reap", undefined).pipe(
          Effect.zipRight(storeNow),
          Effect.flatMap((now) => {
            const g = groups.get(groupId)
            if (g === undefined) return Effect.succeed(0)
            const n = removeExpired(g, now)
            const behind = catchUp(g)
            if (n === 0 && !behind) return Effect.as(ackHeld(g, now, g.epoch) > 0 ? notify(g) : Effect.void, 0)
            rebalance(g, now, behind)
            return Effect.as(Effect.zipRight(countGraceExpiries(groupId), notify(g, String(g.epoch))), n)
          })
        ),
      leave: (groupId, memberId) =>
        gate("leave", memberId).pipe(
          Effect.zipRight(storeNow),
          Effect.flatMap((now) => {
            const g = groups.get(groupId)
            if (g === undefined) return Effect.succeed(false)
            const mine = g.members.get(memberId)
            g.members.delete(memberId)
            const n = removeExpired(g, now)
            const behind = catchUp(g)
            // A waiting joiner that leaves changes nothing.
            if ((mine === undefined || waiting(mine)) && n === 0 && !behind) return Effect.succeed(mine !== undefined)
            rebalance(g, now, behind)
            return Effect.as(Effect.zipRight(countGraceExpiries(groupId), notify(g, String(g.epoch))), mine !== undefined)
          })
        ),
      release: (groupId, memberId) =>
        gate("release", memberId).pipe(
          Effect.zipRight(storeNow),
          Effect.flatMap((now) => {
            const row = groups.get(groupId)?.members.get(memberId)
            if (row === undefined || row.instanceId === null) return Effect.succeed(false)
            const g = groups.get(groupId)!
            row.releasedAt = now
            row.leaseExpiresAt = Math.min(row.leaseExpiresAt, now)
            row.ackedEpoch = Math.max(row.ackedEpoch, g.epoch)
            row.stoppingSince = null
            return Effect.as(notify(g), true)
          })
        ),
      wait: (groupId, member, instanceId, leaseMs) =>
        gate("wait", member.memberId).pipe(
          Effect.zipRight(storeNow),
          Effect.map((now) => {
            for (const [id, w] of waiters) {
              if (w.groupId === groupId && id !== member.memberId && w.seenAt + 2 * w.leaseMs <= now) waiters.delete(id)
            }
            const old = waiters.get(member.memberId)
            const same = old !== undefined && old.groupId === groupId && old.instanceId === instanceId
            waiters.set(member.memberId, {
              ...member,
              groupId,
              instanceId,
              since: same ? old.since : now,
              seenAt: now,
              leaseMs: Math.min(Math.max(Math.round(leaseMs), 1), 3_600_000)
            })
          })
        ),
      stopWaiting: (_groupId, memberId) =>
        gate("stopWaiting", memberId).pipe(Effect.map(() => void waiters.delete(memberId))),
      waiters: (groupId) =>
        gate("waiters", undefined).pipe(
          Effect.zipRight(storeNow),
          Effect.map((now): ReadonlyArray<WaiterRow> => {
            const g = groups.get(groupId)
            return [...waiters.values()]
              .filter((w) => w.groupId === groupId && w.seenAt + w.leaseMs > now && g?.members.has(w.memberId) !== true)
              .sort((a, b) =>
                a.instanceId < b.instanceId ? -1 : a.instanceId > b.instanceId ? 1 : a.since - b.since ||
                  (a.memberId < b.memberId ? -1 : 1)
              )
              .map((w) => ({
                memberId: w.memberId,
                name: w.name,
                host: w.host,
                pid: w.pid,
                instanceId: w.instanceId,
                waitingMs: now - w.since,
                seenAgoMs: now - w.seenAt
              }))
          })
        ),
      releaseSlots: (groupId, memberId, stopped) =>
        gate("releaseSlots", memberId).pipe(
          Effect.zipRight(storeNow),
          Effect.flatMap((now) => {
            const g = groups.get(groupId)
            if (g === undefined || g.table === null) return Effect.succeed<ReadonlyArray<number>>([])
            const row = g.members.get(memberId)
            const live = row !== undefined && row.leaseExpiresAt > now
            const valid = stopped.filter((p) => p.slot >= 0 && p.slot < g.table!.length)
            const { released, table } = Table.release(g.table, memberId, valid, live)
            g.table = table
            return Effect.as(released.length > 0 ? notify(g) : Effect.void, [...released].sort((a, b) => a - b))
          })
        ),
      retakeSlot: (groupId, memberId, slot, generation) =>
        gate("retakeSlot", memberId).pipe(
          Effect.zipRight(storeNow),
          Effect.map((now) => {
            const g = groups.get(groupId)
            if (g === undefined || g.table === null || slot < 0 || slot >= g.table.length) return false
            const row = g.members.get(memberId)
            if (row === undefined || row.leaseExpiresAt <= now) return false
            const before = g.table
            g.table = Table.retake(before, memberId, slot, generation)
            return g.table !== before
          })
        ),
      slotRows: (groupId) =>
        gate("slotRows", undefined).pipe(Effect.map(() => {
          const table = groups.get(groupId)?.table ?? []
          return table.map((r, slot) => ({ slot, owner: r.owner, holder: r.holder, generation: r.generation }))
        })),
      wakeups: (groupId) =>
        Effect.gen(function*() {
          const g = getGroup(groupId, yield* storeNow)
          const sub = yield* PubSub.subscribe(g.pubsub)
          return Stream.fromQueue(sub)
        }),
      group: (groupId) =>
        gate("group", undefined).pipe(Effect.map(() => {
          const g = groups.get(groupId)
          return g === undefined
            ? Option.none<GroupRow>()
            : Option.some({
              groupId,
              epoch: g.epoch,
              size: g.size,
              changedAt: new Date(g.changedAt),
              incarnation: g.incarnation,
              slots: g.slots
            })
        })),
      members: (groupId) =>
        gate("members", undefined).pipe(
          Effect.zipRight(storeNow),
          Effect.map((now): ReadonlyArray<MemberRow> => {
            const g = groups.get(groupId)
            if (g === undefined) return []
            return [...g.members.values()]
              .sort((a, b) => (a.index ?? Infinity) - (b.index ?? Infinity))
              .map((r) => ({
                memberId: r.memberId,
                name: r.name,
                host: r.host,
                pid: r.pid,
                index: r.index,
                stoppingSince: r.stoppingSince === null ? null : new Date(r.stoppingSince),
                ackedEpoch: r.ackedEpoch,
                joinedAt: new Date(r.joinedAt),
                heartbeatAgeMs: now - r.heartbeatAt,
                leaseLeftMs: r.leaseExpiresAt - now,
                instanceId: r.instanceId,
                releasedAt: r.releasedAt === null ? null : new Date(r.releasedAt),
                graceLeftMs: r.instanceId === null ? null : r.leaseExpiresAt + r.graceMs - now
              }))
          })
        ),
      groups: gate("groups", undefined).pipe(Effect.map(() =>
        [...groups.entries()]
          .map(([groupId, g]) => ({
            groupId,
            epoch: g.epoch,
            size: g.size,
            changedAt: new Date(g.changedAt),
            incarnation: g.incarnation,
            slots: g.slots
          }))
          .sort((a, b) => a.groupId.localeCompare(b.groupId))
      ))
    }

    const control: InMemoryControl = {
      hang: (memberId) =>
        Effect.flatMap(Deferred.make<void>(), (d) =>
          Effect.sync(() => {
            if (!hung.has(memberId)) hung.set(memberId, d)
          })),
      resume: (memberId) =>
        Effect.suspend(() => {
          const d = hung.get(memberId)
          hung.delete(memberId)
          return d === undefined ? Effect.void : Deferred.succeed(d, undefined)
        }),
      setOutage: (on) => Effect.sync(() => void (outage = on)),
      setDropNotifications: (on) => Effect.sync(() => void (dropNotifications = on)),
      calls: Effect.sync(() => ({ ...calls })),
      stepClock: (ms) => Effect.sync(() => void (clockOffset += ms)),
      snapshot: Effect.sync(() => {
        const copyRows = (members: Map<string, Row>) => new Map([...members].map(([id, row]) => [id, { ...row }]))
        const saved = [...groups].map(([groupId, g]) => ({
          groupId,
          epoch: g.epoch,
          incarnation: g.incarnation,
          size: g.size,
          changedAt: g.changedAt,
          members: copyRows(g.members),
          slots: g.slots,
          table: g.table
        }))
        return Effect.sync(() => {
          for (const groupId of [...groups.keys()]) {
            if (!saved.some((s) => s.groupId === groupId)) groups.delete(groupId)
          }
          for (const s of saved) {
            const g = groups.get(s.groupId)!
            g.epoch = s.epoch
            g.incarnation = s.incarnation
            g.size = s.size
            g.changedAt = s.changedAt
            g.members = copyRows(s.members)
            g.slots = s.slots
            g.table = s.table
          }
        })
      })
    }
    // Member ids in their canonical form, as the PostgreSQL store's uuid column keeps them: two
    // spellings of one uuid are one member (a review: this store let an id in upper case into a
    // second group, or in twice into one).
    const id = canonicalMemberId
    const canonical: MembershipStoreService = {
      ...store,
      join: (groupId, member, ...rest) => store.join(groupId, { ...member, memberId: id(member.memberId) }, ...rest),
      heartbeat: (groupId, memberId, ...rest) => store.heartbeat(groupId, id(memberId), ...rest),
      leave: (groupId, memberId) => store.leave(groupId, id(memberId)),
      release: (groupId, memberId) => store.release(groupId, id(memberId)),
      wait: (groupId, member, ...rest) => store.wait(groupId, { ...member, memberId: id(member.memberId) }, ...rest),
      stopWaiting: (groupId, memberId) => store.stopWaiting(groupId, id(memberId)),
      releaseSlots: (groupId, memberId, stopped) => store.releaseSlots(groupId, id(memberId), stopped),
      retakeSlot: (groupId, memberId, slot, generation) => store.retakeSlot(groupId, id(memberId), slot, generation)
    }
    return {
      store: canonical,
      control: { ...control, hang: (memberId) => control.hang(id(memberId)), resume: (memberId) => control.resume(id(memberId)) }
    }
  })

/**
 * A fresh in-memory store and its fault control.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<MembershipStore | InMemoryStoreControl> = Layer.effectContext(
  Effect.map(make, ({ control, store }) =>
    Context.make(MembershipStore, store).pipe(Context.add(InMemoryStoreControl, control)))
)
