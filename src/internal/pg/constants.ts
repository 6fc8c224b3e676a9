/**
 * The names the library's SQL shares with the database, defined once: the schema, the notification
 * channels, the advisory-lock keys and the SQLSTATE of the commit-time fence check.
 */
import { createHash } from "node:crypto"

/**
 * The schema the migrations create. The statements in `statements.ts` spell it out in their text
 * (`modulo_group.members`), as the migrations do; code that needs it as a value (catalog queries,
 * messages) uses this constant.
 */
export const schema = "modulo_group"

/** The channels of the groups seen last (every renewal asks for its group's: an MD5 each time). */
const channels = new Map<string, string>()

/**
 * The notification channel of a group. Group ids are hashed: they never reach an identifier, and
 * every channel is `mg_` + 32 hex digits.
 */
export const channelFor = (groupId: string): string => {
  let channel = channels.get(groupId)
  if (channel === undefined) {
    channel = `mg_${createHash("md5").update(groupId, "utf8").digest("hex")}`
    if (channels.size >= 1_024) channels.clear()
    channels.set(groupId, channel)
  }
  return channel
}

/**
 * The first key of the advisory lock that queues membership changes (exclusive) and fenced
 * transactions (shared) of one group fairly; the second key is `hashtext(group_id)`. Row share
 * locks alone would let a stream of overlapping fenced transactions starve the `FOR UPDATE` of a
 * change.
 */
export const advisoryLockClass = 1297040455 // "MODG"

/**
 * The advisory-lock class of one member, keyed by `hashtext(member_id::text)`: a fenced transaction
 * of the member holds it shared (`Statements.fenceMember`) until it ends, and a busy leave's
 * `Statements.expireLease` tries it exclusively, so that it never ends the lease of a member whose
 * fenced transaction is committing (after its commit-time check read the lease), while a change's own
 * row locks (`FOR KEY SHARE` on every member row) do not hold it up; a renewal tries it too before it
 * cuts a lease back (`Statements.renewedLease`). A hash collision (two member ids of one 32-bit
 * `hashtext`) costs only time while the other member's fenced transaction runs: a busy leave waits for
 * the group's lock, as before; a lease set ahead by hand (or a clock set back) is cut back at a later
 * renewal (a review measured it).
 */
export const memberLockClass = 1297040461 // "MODM"

/** The one advisory-lock key of schema changes: "modulo" in ASCII. */
export const migrationLockKey = 0x6d6f64756c6f

/**
 * The SQLSTATE with which the commit-time check (migration 0003, `modulo_group.fence_check_at_commit`)
 * fails a `COMMIT` whose assignment is no longer current.
 */
export const commitCheckSqlState = "MGF01"

/**
 * The error that leaves aborted the transaction a fenced block opens when its savepoint was lost, on a
 * connection whose backend it could not end (internal/pg/transaction.ts): nothing of it commits.
 */
export const savepointLostSqlState = "MGF02"

/**
 * The SQLSTATE with which the commit-time check (migration 0017) fails a `COMMIT` of a transaction that
 * declared a cursor WITH HOLD: PostgreSQL runs its query after the check, which could then commit past
 * the lease. `fenced` reports it as `FenceBroken`.
 */
export const heldCursorSqlState = "MGF03"
