/**
 * Names the SQL shares: the first key of the advisory lock that queues membership changes
 * (exclusive) and fenced transactions (shared) of one group fairly; the second key is
 * `hashtext(group_id)`. Row share locks alone would let a stream of overlapping fenced transactions
 * starve the `FOR UPDATE` of a change.
 */
export const advisoryLockClass = 1297040455 // "MODG"
