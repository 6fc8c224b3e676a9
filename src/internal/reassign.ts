/**
 * The assignment rule, shared by the in-memory store and mirrored by the SQL in PgMembershipStore:
 * members keep their index while it is < N; the rest fill the holes in join order.
 */
export interface Seat {
  readonly memberId: string
  readonly index: number | null
  readonly joinSeq: number
}

/** Returns the new index of every member (same order as `seats`). */
export const reassign = (seats: ReadonlyArray<Seat>): ReadonlyArray<number> => {
  const n = seats.length
  const kept = new Set<number>()
  for (const s of seats) {
    if (s.index !== null && s.index < n) kept.add(s.index)
  }
  const holes: Array<number> = []
  for (let i = 0; i < n; i++) if (!kept.has(i)) holes.push(i)
  const movers = seats
    .map((s, position) => ({ s, position }))
    .filter(({ s }) => s.index === null || s.index >= n)
    .sort((a, b) => a.s.joinSeq - b.s.joinSeq)
  const result = seats.map((s) => s.index ?? -1)
  movers.forEach(({ position }, i) => {
    result[position] = holes[i]!
  })
  return result
}

/**
 * How long a waiting row (a join deferred behind an overdue member: no index yet) lasts after its
 * joiner's poll: one overdue threshold (`Transition.overdueAfterMs`, two heartbeats), plus `lockWaitMs`
 * when the poll found the group's lock held (the PostgreSQL store's busy path: the joiner touches the
 * row again within a lock wait), never more than the joiner's lease. Without a threshold (a store
 * called without one), the whole lease. A joiner that dies while it waits holds a change that
 * promoted its row this long at most (reviews attack93 and attack94).
 */
export const waitingRowLeaseMs = (leaseMs: number, overdueAfterMs: number | undefined, lockWaitMs = 0): number =>
  overdueAfterMs === undefined ? leaseMs : Math.min(leaseMs, Math.max(1, Math.round(overdueAfterMs)) + lockWaitMs)
