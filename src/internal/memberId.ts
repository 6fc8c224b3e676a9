import * as Data from "effect/Data"
import { StoreError } from "../MembershipError.js"

/**
 * A member id's canonical form. Member ids are uuids in the PostgreSQL store, whose `uuid` type also
 * reads the same uuid in upper case, in braces, without hyphens or hyphenated every four digits, and
 * always writes it back lower case, hyphenated 8-4-4-4-12. Two spellings of one uuid are one member
 * (one row): a review of migration 0012 gave two members of one process the same uuid with and
 * without braces, and the process's check of live ids let both in. Any other string is left as it is
 * (the in-memory store takes any id).
 */
export const canonicalMemberId = (memberId: string): string => {
  if (!/^\{?[0-9A-Fa-f-]+\}?$/.test(memberId)) return memberId
  const hex = memberId.replace(/[{}-]/g, "").toLowerCase()
  if (hex.length !== 32) return memberId
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

/** A row of a member id in another group than the one it joins, as a join finds it. */
export interface ElsewhereRow {
  readonly group: string
  readonly name: string
  readonly host: string
  readonly pid: number
  /** Its lease has run out. */
  readonly expired: boolean
  /** Its lease and its rejoin grace have run out: a reap of its group deletes it. */
  readonly reapable: boolean
  /** Static: its instance id, and its rejoin grace (a row whose lease ran out is held that long). */
  readonly instance: string | null
  readonly grace_ms: number
}

/** The cause of `elsewhereError`: the row the store read. */
export class RowElsewhere extends Data.TaggedClass("RowElsewhere")<{ readonly row: ElsewhereRow }> {}

/**
 * A join's refusal of a member id that still has a row in another group (the id reused for a second
 * group while its first membership's row stayed: a leave that gave up, or a static member's row held
 * for its instance's rejoin grace). That row goes only by a change of its own group (or, held, by its
 * instance's takeover, which gives it that member's id); both stores refuse the join by name and,
 * when the row is reapable (lease and grace run out), reap that group after the refusal, so the next
 * attempt goes through.
 */
export const elsewhereError = (memberId: string, row: ElsewhereRow): StoreError => {
  const held = row.expired && !row.reapable
  const state = !row.expired ? "" : held
    ? `, its lease run out, held for instance ${JSON.stringify(row.instance)}'s rejoin grace of ${row.grace_ms} ms`
    : ", its lease run out"
  const goes = !row.expired
    ? "a leave, or a reap once its lease has run out"
    : held
    ? "its instance's rejoin, which gives the row that member's id, or a reap once the grace has run out"
    : "a reap of it follows"
  return new StoreError({
    operation: "join",
    // The store read the row: the database answered (a refusal of connections before it is over).
    cause: new RowElsewhere({ row }),
    reason: `member id ${memberId} still has a row in group "${row.group}" (${row.name} on ${row.host}, pid ${row.pid}${state}): ` +
      `a member id is a member of one group at a time, and that row goes only by a change of its group (${goes}). ` +
      `This member does not join until then`
  })
}
