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
