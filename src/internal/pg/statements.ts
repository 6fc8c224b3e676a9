/**
 * Every SQL statement the library sends, one named function each: the store's (membership changes,
 * heartbeats, reads), the fence's (`Fenced.fencedWith`) and the migrator's. Callers decide the order,
 * the transaction and what a result means; here is only the SQL and the shape of its rows.
 *
 * Leases are judged on "now": the database's `pg_catalog.statement_timestamp()`, or, when a store runs on the
 * Effect clock (tests), a time passed in as a parameter (`now` is then an ISO timestamp, else null).
 * The fence judges leases on `pg_catalog.clock_timestamp()` (the moment each check runs), always the database's.
 */
import type { SqlClient, Statement } from "@effect/sql"
import type { FenceTarget } from "../../Fenced.js"
import type { ElsewhereRow } from "../memberId.js"
import { advisoryLockClass, channelFor, memberLockClass, migrationLockKey, schema } from "./constants.js"

type Sql = SqlClient.SqlClient

/** The time a statement judges leases by: the one passed in, else the database's. */
const at = (sql: Sql, now: string | null): Statement.Fragment => sql`COALESCE(${now}::timestamptz, pg_catalog.statement_timestamp())`

type SlotGenerations = ReadonlyArray<{ readonly slot: number; readonly generation: number }>

/** `pairs`' slots as an `int[]` parameter. */
const slotArray = (sql: Sql, pairs: SlotGenerations): Statement.Fragment =>
  sql`${`{${pairs.map((p) => String(p.slot)).join(",")}}`}::int[]`

/** `pairs`' generations as an `int8[]` parameter, in the order of `slotArray`. */
const generationArray = (sql: Sql, pairs: SlotGenerations): Statement.Fragment =>
  sql`${`{${pairs.map((p) => String(p.generation)).join(",")}}`}::int8[]`

/**
 * `pairs` as rows `r(slot, generation)`, for a FROM list. `ROWS FROM`, not `unnest(a, b)`: PostgreSQL
 * reads only an unqualified `unnest` of two arrays that way, which a function planted earlier in the
 * search path could take.
 */
const slotGenerations = (sql: Sql, pairs: SlotGenerations): Statement.Fragment =>
  sql`ROWS FROM (pg_catalog.unnest(${slotArray(sql, pairs)}), pg_catalog.unnest(${generationArray(sql, pairs)})) AS r(slot, generation)`

/**
 * A row reaping may delete: its lease ran out, and so did its rejoin grace (0 for a row without an
 * instance id: at once, as before static membership). `alias`: the table's alias, if any.
 */
const reapable = (sql: Sql, now: string | null, alias?: "o" | "e"): Statement.Fragment =>
  alias === "o"
    ? sql`o.lease_expires_at + o.rejoin_grace_ms::float8 * interval '1 millisecond' <= ${at(sql, now)}`
    : alias === "e"
    ? sql`e.lease_expires_at + e.rejoin_grace_ms::float8 * interval '1 millisecond' <= ${at(sql, now)}`
    : sql`lease_expires_at + rejoin_grace_ms::float8 * interval '1 millisecond' <= ${at(sql, now)}`

/**
 * A row that is a member of its group's epoch: it has an index. The only committed rows without one
 * are **waiting joiners** (`deferJoin`): a join that found an overdue member inserted its row without
 * an index and without a change; the next change (whoever makes it: the reap of the overdue member,
 * any join or leave) gives it an index like any new row. A waiting row is not counted in N, in the
 * rows a renewal checks against N, nor as a survivor; the barrier counts every row (a waiting row
 * acknowledges the group's epoch as it waits, so it never holds the current one; it holds the barrier
 * of the epoch its promotion creates until its joiner takes that place: `adoptRow`).
 */
const member = (sql: Sql, alias: "m" | "o"): Statement.Fragment =>
  alias === "o" ? sql`o.idx IS NOT NULL` : sql`m.idx IS NOT NULL`

/**
 * A row (`alias`) that acknowledged an epoch above the group's (`epoch`, default `g.epoch`): the rows
 * were put back (a restore, a failover that lost commits) while its member worked on. Such an
 * acknowledgement lowers no barrier, and asks for the change that moves past it (see `renewLease`).
 * Only below 4503599627370495 (2^52 - 1): epochs are JavaScript numbers in the members and the store,
 * exact up to 2^53 - 1, and the change that moves past an acknowledgement must leave room to go on
 * counting. Only a hand edit writes one higher; taken for the database having gone back it made every
 * later epoch imprecise (stuck at 2^53, one token for several assignments) or out of range of bigint,
 * and every member reap at every heartbeat (two adversarial reviews); the member's next renewal
 * writes over it (`saneAck`). Until then the barrier counts take it for no acknowledgement at all
 * (unacknowledged): read as `acked_epoch >= epoch` it acknowledged every epoch, and a join's barrier
 * came down while its member still worked the epoch before (a fourth review).
 */
/**
 * A member row this store may write (migration 0012): one it wrote (`writer`, the store's random id).
 * Member ids must be unique (`MemberIdentity`); a row of this member id that another store wrote
 * belongs to another process's member, and no renewal, leave, release, adoption or slot release of
 * this store touches it (a join refuses: see `deleteExpiredAndOwnRow`). So does a row with no writer:
 * a release before the migration wrote it, and during a rolling upgrade that release still runs its
 * member (it took such a row for its own once, and a join with the same id deleted the old process's
 * live row: an adversarial review).
 */
const written = (sql: Sql, alias: "" | "m." | "me." | "s.", writer: string): Statement.Fragment =>
  alias === ""
    ? sql`(writer = ${writer}::uuid)`
    : alias === "m."
    ? sql`(m.writer = ${writer}::uuid)`
    : alias === "me."
    ? sql`(me.writer = ${writer}::uuid)`
    : sql`(s.writer = ${writer}::uuid)`

/**
 * A row's lease length (`GroupView.longestLeaseMs`): the one its member runs with, as its join or its
 * last renewal recorded it (`lease_ms`, migration 0014), not its times: a lease set far ahead by hand
 * on a dead member's row is no member's lease (a review: taken for one, it held a repair off for an
 * hour, and reaping after a clock step for 24 days). A row an older release wrote has none: its times.
 * Nor has a row whose `lease_ms` is not one a member takes (0 to 2^31 - 1 ms: NaN, infinite or
 * negative, set by hand): `NaN * interval` fails ("interval out of range"), and every renewal of the
 * group with it, for good (found by a test of migration 0015); nor do infinite times (set by hand)
 * stand in ("cannot subtract infinite timestamps": a review).
 */
const leaseOf = (sql: Sql, alias: "o" | "x"): Statement.Fragment =>
  alias === "o"
    ? sql`coalesce(CASE WHEN o.lease_ms >= 0::float8 AND o.lease_ms <= 2147483647::float8
                        THEN o.lease_ms * interval '1 millisecond' END,
                   CASE WHEN pg_catalog.isfinite(o.lease_expires_at) AND pg_catalog.isfinite(o.heartbeat_at)
                        THEN o.lease_expires_at - o.heartbeat_at END)`
    : sql`coalesce(CASE WHEN x.lease_ms >= 0::float8 AND x.lease_ms <= 2147483647::float8
                        THEN x.lease_ms * interval '1 millisecond' END,
                   CASE WHEN pg_catalog.isfinite(x.lease_expires_at) AND pg_catalog.isfinite(x.heartbeat_at)
                        THEN x.lease_expires_at - x.heartbeat_at END)`

/** The highest epoch, and acknowledgement, the store counts to (2^52 - 1; see `ahead`): the literal in the statements' text. */
export const highestEpoch = "4503599627370495"

const ahead = (sql: Sql, alias: "o" | "x" | "me", epoch: Statement.Fragment = sql`g.epoch`): Statement.Fragment =>
  alias === "o"
    ? sql`(o.acked_epoch > ${epoch}::int8 AND o.acked_epoch < 4503599627370495)`
    : alias === "x"
    ? sql`(x.acked_epoch > ${epoch}::int8 AND x.acked_epoch < 4503599627370495)`
    : sql`(me.acked_epoch > ${epoch}::int8 AND me.acked_epoch < 4503599627370495)`

/**
 * The barrier's rule for one row (`alias`) against `epoch` (default `g.epoch`): it holds the barrier
 * when it has not acknowledged the epoch, or acknowledged one at or above the highest (a hand edit:
 * no acknowledgement at all, see `ahead`), or, as a member (an index; a waiting joiner's row put back
 * by a restore may acknowledge ahead of the group, and holds no index), acknowledged one the group has
 * not reached (`ahead`). One rule for
 * the join's view and both renewal statements.
 */
const unacked = (sql: Sql, alias: "o" | "x" | "me", epoch: Statement.Fragment = sql`g.epoch`): Statement.Fragment =>
  alias === "o"
    ? sql`(o.acked_epoch < ${epoch}::int8 OR o.acked_epoch >= 4503599627370495 OR (o.idx IS NOT NULL AND ${ahead(sql, "o", epoch)}))`
    : alias === "x"
    ? sql`(x.acked_epoch < ${epoch}::int8 OR x.acked_epoch >= 4503599627370495 OR (x.idx IS NOT NULL AND ${ahead(sql, "x", epoch)}))`
    : sql`(me.acked_epoch < ${epoch}::int8 OR me.acked_epoch >= 4503599627370495 OR (me.idx IS NOT NULL AND ${ahead(sql, "me", epoch)}))`

/** The row's acknowledgement for a renewal's `GREATEST`: one at or above the highest epoch (a hand edit, see `ahead`) counts as none. */
const saneAck = (sql: Sql, prefix: "" | "m."): Statement.Fragment =>
  prefix === "m."
    ? sql`CASE WHEN m.acked_epoch >= 4503599627370495 THEN 0 ELSE m.acked_epoch END`
    : sql`CASE WHEN acked_epoch >= 4503599627370495 THEN 0 ELSE acked_epoch END`

/**
 * A single statement's bound on its row-lock waits, set inside it before it waits (no round trip of its
 * own): `lock_timeout` local to the statement's transaction, as a condition that always holds.
 */
const lockBounded = (sql: Sql, timeoutMs: number): Statement.Fragment =>
  sql`(SELECT pg_catalog.set_config('lock_timeout', ${String(timeoutMs)}::text, true)) IS NOT NULL`

/**
 * The lease a renewal writes (`renewed`, the statement's time + the lease) for the row `alias`
 * (\`\` or `m.`): earlier than the row's lease only while no fenced transaction of the member runs (it
 * holds the member's advisory lock shared, \`memberLockClass\`; tried only then). A renewal may cut a
 * lease back (a clock set back, a lease set ahead by hand, a shorter lease), but one that did so during
 * a fenced transaction's COMMIT, after its commit-time check had read the lease, ended the lease before
 * the commit landed (a review: 1.1 s before, with a lease of 20 ms, and fenced reported success).
 */
const renewedLease = (sql: Sql, alias: "" | "m.", renewed: Statement.Fragment): Statement.Fragment =>
  alias === "m."
    ? sql`CASE WHEN ${renewed} OPERATOR(pg_catalog.<) m.lease_expires_at
                AND NOT pg_catalog.pg_try_advisory_xact_lock(${memberLockClass}::int4, pg_catalog.hashtext(m.member_id::text))
               THEN m.lease_expires_at ELSE ${renewed} END`
    : sql`CASE WHEN ${renewed} OPERATOR(pg_catalog.<) lease_expires_at
                AND NOT pg_catalog.pg_try_advisory_xact_lock(${memberLockClass}::int4, pg_catalog.hashtext(member_id::text))
               THEN lease_expires_at ELSE ${renewed} END`

/**
 * The search path of a change's transaction, local to it, set by its first statement: the statements
 * after it resolve functions and operators in `pg_catalog` only (the library names its own objects
 * `modulo_group.*`), whatever a schema of the session's path holds (docs/operations.md, "The members'
 * search_path": a function planted there ran in every change). The first statement itself names
 * `pg_catalog` for each function it calls (a review planted a `set_config` that let everything through
 * but the search path, and a `generate_series` in the same schema then ran; the lock's key, `hashtext`,
 * and the lock itself decide who changes the group). Single statements (renewals, reads) and fenced
 * transactions (the app's body needs the app's path) resolve in the session's path.
 */
const pinnedSearchPath = (sql: Sql): Statement.Fragment => sql`pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true)`

/**
 * JIT off for the rest of a transaction of the library's own (a change's, a busy join's, the warm-up's,
 * a fence's of its own transaction), set by its first statement. Its statements are short; JIT only
 * adds the compilation (a review, attack85: under `enable_sort = off` as the database's default, the
 * planner's penalty for a disabled sort took a change's reassignment and the fence's last statement past
 * `jit_above_cost`, and each was compiled at every run, about 0.3 s of the server's CPU: a group of
 * statement timeout 200 ms never formed; `jit_above_cost = 0` the same for every statement).
 * test/badinput/jit.pg.test.ts.
 */
const noJit = (sql: Sql): Statement.Fragment => sql`pg_catalog.set_config('jit', 'off', true)`

/**
 * The first statement of every change: sets the server-side bounds of the transaction (lock_timeout
 * for the waits below, `lockWaitMs`; statement_timeout for the later statements and
 * idle_in_transaction_session_timeout for a stalled client, both `timeoutMs`), tries the group's
 * advisory lock exclusively without waiting, and, when it got it, creates the group row if missing.
 *
 * When the lock is busy (`locked` false), `changing` says who has it: another change (an exclusive
 * holder, or an exclusive request already waiting), or only fenced transactions (which take it
 * shared). Behind another change, the store rolls back and tries again after a short jittered
 * backoff, holding no connection meanwhile: changes are short, and a change queued behind many others
 * is not an error. Behind fenced transactions only, it waits (`lockGroup`), and so queues fairly ahead
 * of new fenced transactions (see `fenceQueue`): a stream of overlapping ones cannot starve it. Which
 * way it goes decides only how long it takes, never what it does: the lock is the same lock.
 *
 * `replica`: whether the session's `session_replication_role` is `replica`, under which PostgreSQL
 * fires no ordinary trigger (the deferrable `UNIQUE (group_id, idx)`, the foreign keys): the store
 * refuses the change (a store checks it as it starts; a role's default set while members run reached
 * their new connections unseen, a review, attack108).
 */
export const tryLockGroup = (sql: Sql, groupId: string, now: string | null, timeoutMs: number, lockWaitMs: number) =>
  sql<{ locked: boolean; changing: boolean; replica: boolean }>`
    WITH fair AS MATERIALIZED (
      SELECT pg_catalog.current_setting('session_replication_role') OPERATOR(pg_catalog.=) 'replica' AS replica,
             pg_catalog.set_config('lock_timeout', ${String(lockWaitMs)}::text, true),
             pg_catalog.set_config('statement_timeout', ${String(timeoutMs)}::text, true),
             pg_catalog.set_config('idle_in_transaction_session_timeout', ${String(timeoutMs)}::text, true),
             ${pinnedSearchPath(sql)},
             ${noJit(sql)},
             pg_catalog.pg_try_advisory_xact_lock(${advisoryLockClass}::int4, pg_catalog.hashtext(${groupId}::text)) AS locked
    ), created AS (
      INSERT INTO modulo_group.groups (group_id, changed_at)
      SELECT ${groupId}::text, ${at(sql, now)} FROM fair WHERE fair.locked AND NOT fair.replica
      ON CONFLICT (group_id) DO NOTHING
    )
    SELECT fair.locked, fair.replica,
           NOT fair.locked AND EXISTS (
             SELECT 1 FROM pg_catalog.pg_locks l
              WHERE l.locktype = 'advisory'
                AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
                AND l.classid = ${advisoryLockClass}::oid AND l.objid = pg_catalog.hashtext(${groupId}::text)::oid
                AND l.objsubid = 2 AND l.mode = 'ExclusiveLock') AS changing
      FROM fair`

/**
 * The first statement of the store's warm-up transaction (`PgMembershipStore`, "a fresh connection's
 * first change"): its server-side bounds, local to that transaction, as a change sets them.
 */
export const boundTransaction = (sql: Sql, timeoutMs: number) =>
  sql`
    SELECT pg_catalog.set_config('lock_timeout', ${String(timeoutMs)}::text, true),
           pg_catalog.set_config('statement_timeout', ${String(timeoutMs)}::text, true),
           pg_catalog.set_config('idle_in_transaction_session_timeout', ${String(timeoutMs)}::text, true),
           ${pinnedSearchPath(sql)},
           ${noJit(sql)}`

/**
 * After `tryLockGroup` found only fenced transactions holding the group's lock: waits for it (within
 * the transaction's lock_timeout), queued fairly ahead of fenced transactions that come later, and
 * creates the group row if missing.
 */
export const lockGroup = (sql: Sql, groupId: string, now: string | null) =>
  sql`
    INSERT INTO modulo_group.groups (group_id, changed_at)
    SELECT ${groupId}::text, ${at(sql, now)}
      FROM (SELECT pg_catalog.pg_advisory_xact_lock(${advisoryLockClass}::int4, pg_catalog.hashtext(${groupId}::text))) AS fair
    ON CONFLICT (group_id) DO NOTHING`

/**
 * The arbiter: locks the group row (FOR UPDATE) and reads its epoch and the highest epoch any member
 * has acknowledged (an epoch moved back by hand or by a restored backup is found behind it). A
 * waiting joiner's row does not count (it acknowledges the epoch it waited in; one that a release
 * before 2026-12-07 wrote acknowledges the next).
 *
 * Also which of the group's indices no member row holds (`missing`, null if none: rows deleted by
 * hand, or indices set out of range; between changes no statement of the library deletes a member
 * row or moves its index), what a change recorded when it first found indices missing
 * (`missing_ms`: how long ago, null if none did since they last added up; `missing_wait_ms`;
 * `missing_was`), and the longest lease of the group's rows (`lease_ms`: the longest as its last
 * change left them, migration 0015; `rows_lease_ms`: of the rows now). See `markMissing`. Indices are
 * looked for up to 65,536 (a size set higher by hand is found missing in that range). The values of
 * the record are the database's: anyone who may write `groups` may have set them (the store checks
 * them).
 */
export const selectGroupForUpdate = (sql: Sql, groupId: string, now: string | null) =>
  sql<{
    epoch: string
    size: number
    incarnation: string
    acked: string
    slots: number | null
    missing: ReadonlyArray<number> | null
    missing_ms: number | null
    missing_wait_ms: number | null
    missing_was: ReadonlyArray<number> | null
    lease_ms: number | null
    rows_lease_ms: number | null
  }>`
    WITH held AS MATERIALIZED (
      -- Every member row of the group, locked against deletion and index changes until this change
      -- commits (renewals and fenced transactions take weaker locks: not held up), as the database
      -- has them after any such statement in flight committed: a row deleted by hand after the
      -- indices were read, before the reassignment, was reassigned at once (a review: 1.3 s of two
      -- epochs at once). The missing indices are read from these rows, not from the snapshot.
      -- (FOR KEY SHARE also holds off a change of a row's member id, its key: see selectOrphanSlots.)
      SELECT m.idx FROM modulo_group.members m WHERE m.group_id = ${groupId}::text FOR KEY SHARE OF m
    )
    SELECT g.epoch, g.size, g.incarnation, g.slots, coalesce((SELECT pg_catalog.max(m.acked_epoch) FROM modulo_group.members m
                               WHERE m.group_id = g.group_id AND ${member(sql, "m")}
                                 AND m.acked_epoch < 4503599627370495), 0) AS acked,
           (SELECT pg_catalog.array_agg(d.i ORDER BY d.i)
              FROM (SELECT i.i FROM pg_catalog.generate_series(0::int4, LEAST(g.size, 65536::int4) OPERATOR(pg_catalog.-) 1::int4) AS i (i)
                    EXCEPT SELECT held.idx FROM held) AS d) AS missing,
           -- (A time set to infinity by hand has no age: unknown. Before PostgreSQL 17 the subtraction
           -- failed every change: an adversarial review.)
           CASE WHEN pg_catalog.isfinite(g.missing_since)
                THEN ${epochMs(sql, sql`${at(sql, now)} - g.missing_since`)} END AS missing_ms,
           g.missing_wait_ms, g.missing_indices AS missing_was, g.lease_ms,
           (SELECT ${epochMs(sql, sql`pg_catalog.max(${leaseOf(sql, "o")})`)}
              FROM modulo_group.members o WHERE o.group_id = g.group_id) AS rows_lease_ms
      FROM modulo_group.groups g WHERE g.group_id = ${groupId}::text FOR UPDATE`

/**
 * Slots mode, under the group lock, right after `selectGroupForUpdate` (whose `FOR KEY SHARE` on the
 * group's member rows holds off their deletion and any change of their member ids until the change
 * commits): the slots held by a member id that no row of the group has, as -1 - slot (how
 * `markMissing` records them beside missing indices). The change that deletes a holder's row hands
 * its slots over itself, so such a slot was not let go by its holder: its row was deleted, or its
 * member id changed, by hand, and its member may still work it until its own deadline. A statement
 * of its own: a modulo-mode member's role need not read `modulo_group.slots`.
 */
export const selectOrphanSlots = (sql: Sql, groupId: string) =>
  sql<{ orphans: ReadonlyArray<number> | null }>`
    WITH locked AS MATERIALIZED (
      -- The slot rows locked as selectSlotsForChange locks them (the same lock, taken earlier in the
      -- change), and read as the database has them after any edit in flight committed: a holder set
      -- by hand and committed while the change waited was read from the snapshot, and handed over at
      -- once by the change's later, locking read (a review: 2.2-2.4 s of two holders).
      SELECT s.slot, s.holder FROM modulo_group.slots s
       WHERE s.group_id = ${groupId}::text ORDER BY s.slot FOR NO KEY UPDATE OF s
    )
    SELECT pg_catalog.array_agg((-1)::int4 OPERATOR(pg_catalog.-) l.slot ORDER BY l.slot) AS orphans
      FROM locked l
     WHERE l.holder IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM modulo_group.members m
                        WHERE m.group_id = ${groupId}::text AND m.member_id OPERATOR(pg_catalog.=) l.holder)`

/**
 * Under the group lock, when a change found indices that no member row holds (`selectGroupForUpdate`;
 * in slots mode also slots held by a member id no row has, recorded as -1 - slot)
 * and none before it had, or not these: records since when, which, and how long to wait (`waitMs`: the
 * longest lease of the group's rows). No change that would reassign indices is made until they have
 * been missing that long: a missing row's member, if alive, works its index until its own deadline
 * (send time of its last renewal + its lease), which came before its row was deleted. `missing`: null
 * clears it (the indices add up again without a change: a row put back by hand). The change that
 * repairs the group (any change: they all restamp every row) clears it too (`bumpEpoch`).
 */
export const markMissing = (sql: Sql, groupId: string, now: string | null, waitMs: number, missing: ReadonlyArray<number> | null) =>
  sql`
    UPDATE modulo_group.groups
       SET missing_since = CASE WHEN ${missing === null}::boolean THEN NULL ELSE ${at(sql, now)} END,
           missing_wait_ms = CASE WHEN ${missing === null}::boolean THEN NULL ELSE ${waitMs}::float8 END,
           missing_indices = ${missing === null ? null : `{${missing.join(",")}}`}::int4[]
     WHERE group_id = ${groupId}::text`

/**
 * Under the group lock: reassigns indices (keeps every index below the new size, fills holes in join
 * order; mirrors `internal/reassign.ts`) and stamps every member row with the epoch (`epoch`) and the
 * size its index belongs to. A held static row (an instance id, lease run out or released, within
 * its rejoin grace) keeps its place and acknowledges the new epoch: no work of its old process can
 * run (it released after its work stopped, or its lease ran out on this clock: G3), so it must not
 * hold the others' barrier for the rest of its grace.
 */
export const reassignIndices = (sql: Sql, groupId: string, epoch: number, now: string | null = null) =>
  sql`
    WITH live AS (
      SELECT member_id, idx, join_seq, count(*) OVER () AS n
        FROM modulo_group.members WHERE group_id = ${groupId}::text
    ), kept AS (
      SELECT idx FROM live WHERE idx IS NOT NULL AND idx < n
    ), holes AS (
      SELECT i, row_number() OVER (ORDER BY i) AS r
        -- (bigint, bigint): pg_catalog's own exactly (count is bigint). With (integer, bigint), which
        -- pg_catalog matches only through a cast, a function of that exact signature planted in any
        -- schema of the search path, pg_catalog first or not, ran in every change and set the indices
        -- (a review; PostgreSQL prefers an exact match wherever it is: CVE-2018-1058).
        FROM pg_catalog.generate_series(0::bigint, (SELECT coalesce(pg_catalog.max(n), 0) FROM live) - 1) AS i
       WHERE i NOT IN (SELECT idx FROM kept)
    ), movers AS (
      SELECT member_id, row_number() OVER (ORDER BY join_seq) AS r
        FROM live WHERE idx IS NULL OR idx >= n
    ), target AS (
      SELECT live.member_id, coalesce(holes.i, live.idx) AS idx, live.n
        FROM live LEFT JOIN movers USING (member_id) LEFT JOIN holes ON holes.r = movers.r
    )
    UPDATE modulo_group.members m
       SET idx = target.idx, assigned_epoch = ${epoch}::int8, assigned_size = target.n,
           -- A waiting row given an index (its lease still running, its waiting interval, the time
           -- from its joiner's last poll to its lease's end, no longer than its lease): its joiner has
           -- that interval again from now to take the place, which the barrier waits for. Without
           -- it, a burst of joins promoted at once ran out before taking their places in turn, and
           -- each was reaped and joined again (a review, attack95). A row the library did not write
           -- so (times or lease set by hand) keeps its lease, as does a row this change inserted (it
           -- acknowledges the epoch issued: its join returns the view; its times are this change's).
           lease_expires_at = CASE
             WHEN m.idx IS NULL AND m.acked_epoch < ${epoch}::int8
                  AND pg_catalog.isfinite(m.lease_expires_at) AND pg_catalog.isfinite(m.heartbeat_at)
                  AND m.lease_expires_at > ${at(sql, now)} AND m.lease_ms >= 0::float8 AND m.lease_ms <= 2147483647::float8
             THEN CASE WHEN m.lease_expires_at - m.heartbeat_at <= m.lease_ms * interval '1 millisecond'
                       THEN GREATEST(m.lease_expires_at, ${at(sql, now)} + (m.lease_expires_at - m.heartbeat_at))
                       ELSE m.lease_expires_at END
             ELSE m.lease_expires_at END,
           acked_epoch = CASE WHEN m.instance_id IS NOT NULL AND m.lease_expires_at <= ${at(sql, now)}
                              THEN GREATEST(m.acked_epoch, ${epoch}::int8)
                              -- A member's acknowledgement at or above the epoch this change issues,
                              -- recorded after the change read the group (\`selectGroupForUpdate\` took
                              -- none such for behind): a renewal of a member that worked past a restore,
                              -- between that read and this statement, when its row was still stamped
                              -- with the restored epoch, so \`placedAck\` did not apply. Kept, it counted
                              -- for the epoch issued under its number (a review, attack89). The row's
                              -- stamp instead: its member acknowledges again, naming its place, and an
                              -- acknowledgement still ahead of the group brings on the reap that moves
                              -- past it. (Waiting rows have no index, and acknowledge the epoch they waited in; new
                              -- rows acknowledge the epoch this change issues, which their join returns.)
                              WHEN m.idx IS NOT NULL AND m.acked_epoch >= ${epoch}::int8 AND m.acked_epoch < 4503599627370495
                              THEN LEAST(m.acked_epoch, m.assigned_epoch)
                              ELSE m.acked_epoch END
      FROM target
     -- Its group's rows only (\`target\` is of no other): by their index whatever join the planner picks
     -- (a hash join read every row of the table under enable_nestloop = off: test/batch/plans.pg.test.ts).
     WHERE m.member_id = target.member_id AND m.group_id = ${groupId}::text`

/**
 * Under the group lock, after `reassignIndices`: sets the group's epoch and size, and starts a new
 * incarnation when `fresh` (no member survived into this change). Every change raises the incarnation
 * to at least the clock in ms: a change made after a restore from a backup then issues a token above
 * every token issued before the restore, whatever rows the backup put back (a review, attack88: rows of
 * members gone since still ran their leases, so the changes after the restore were not fresh, and
 * issued the restored incarnation's epochs again). Tokens stay ordered: the clock only adds to it.
 */
export const bumpEpoch = (sql: Sql, groupId: string, now: string | null, epoch: number, fresh: boolean) =>
  sql<{ epoch: string; size: number; incarnation: string }>`
    UPDATE modulo_group.groups
       SET epoch = ${epoch}::int8,
           size = (SELECT count(*) FROM modulo_group.members WHERE group_id = ${groupId}::text),
           changed_at = ${at(sql, now)},
           incarnation = GREATEST(CASE WHEN ${fresh}::boolean THEN incarnation + 1 ELSE incarnation END,
                                  pg_catalog.floor(extract(epoch FROM ${at(sql, now)}) OPERATOR(pg_catalog.*) 1000)::bigint),
           -- Every row restamped: they add up again (see markMissing); and the longest lease they have.
           missing_since = NULL, missing_wait_ms = NULL, missing_indices = NULL,
           lease_ms = (SELECT ${epochMs(sql, sql`pg_catalog.max(${leaseOf(sql, "o")})`)}
                         FROM modulo_group.members o WHERE o.group_id = ${groupId}::text)
     WHERE group_id = ${groupId}::text
    RETURNING epoch, size, incarnation`

/**
 * Under the group lock, after `bumpEpoch`: one row in the change log (migration 0004) with the
 * group's epoch, size, incarnation and assignment as this change leaves them, then that group's
 * retention trim. `modulo_group.log_change` is SECURITY DEFINER: the members' role needs no grant on
 * the log. Nothing in the protocol reads it.
 */
export const logChange = (
  sql: Sql,
  groupId: string,
  cause: "join" | "leave" | "reap" | "repair",
  subject: string | null,
  now: string | null
) => sql`SELECT modulo_group.log_change(${groupId}::text, ${cause}::text, ${subject}::uuid, ${at(sql, now)})`

/**
 * Join: deletes the group's reapable members and this member's own earlier row (unless it is the row
 * of the instance id it joins with: the join takes that one over); counts the live members left
 * (held static rows are not live: a group of only held rows forms anew, in a new incarnation).
 *
 * "Own" is a row of this member id that this store wrote (`written`), or whose lease has run out
 * (its member has stopped, G3). A live row of this member id that another store wrote is another
 * process's member, given the same id against `MemberIdentity`'s contract: it is not deleted, and
 * `foreign` describes it, for the join to refuse (it deleted that row once, and the two members then
 * worked one index: an adversarial review).
 *
 * Only in this group: a row of this member id in another group (the id reused for a second group
 * while its first membership's row stayed: a leave that gave up) is that group's, and goes only by a
 * change of that group, under its lock; `elsewhere` describes it, for the join to refuse. Deleted
 * here, it left a hole in that group's indices when a change of that group was reassigning them at
 * the time: its members waited at a barrier that could never come down (an adversarial review).
 */
export const deleteExpiredAndOwnRow = (
  sql: Sql,
  groupId: string,
  memberId: string,
  writer: string,
  now: string | null,
  instanceId: string | null = null
) =>
  sql<{
    survivors: string
    grace_expired: string
    foreign: { group: string; name: string; host: string; pid: number } | null
    elsewhere: ElsewhereRow | null
  }>`
    WITH gone AS (
      DELETE FROM modulo_group.members
       WHERE group_id = ${groupId}::text
         AND (${reapable(sql, now)}
              OR (member_id = ${memberId}::uuid
                  AND (${instanceId}::text IS NULL OR instance_id IS DISTINCT FROM ${instanceId}::text)
                  AND (${written(sql, "", writer)} OR lease_expires_at <= ${at(sql, now)})))
      RETURNING member_id, group_id, instance_id
    )
    SELECT (SELECT count(*) FROM modulo_group.members m
             WHERE m.group_id = ${groupId}::text AND m.lease_expires_at > ${at(sql, now)}
               AND m.member_id <> ${memberId}::uuid AND ${member(sql, "m")}) AS survivors,
           (SELECT count(*) FROM gone
             WHERE instance_id IS NOT NULL AND member_id <> ${memberId}::uuid) AS grace_expired,
           (SELECT pg_catalog.json_build_object('group', f.group_id, 'name', f.name, 'host', f.host, 'pid', f.pid)
              FROM modulo_group.members f
             WHERE f.member_id = ${memberId}::uuid AND f.lease_expires_at > ${at(sql, now)}
               AND f.writer IS DISTINCT FROM ${writer}::uuid) AS foreign,
           (SELECT ${elsewhereRow(sql, now)}
              FROM modulo_group.members e
             WHERE e.member_id = ${memberId}::uuid AND e.group_id <> ${groupId}::text) AS elsewhere`

/**
 * Join: the new member's row, with no index yet, acknowledging the epoch the join creates (with its
 * instance id and rejoin grace when static).
 */
export const insertMember = (
  sql: Sql,
  groupId: string,
  member: { readonly memberId: string; readonly host: string; readonly pid: number; readonly name: string },
  ackedEpoch: number,
  leaseMs: number,
  now: string | null,
  seq: number,
  writer: string,
  instance: { readonly instanceId: string | null; readonly rejoinGraceMs: number } = { instanceId: null, rejoinGraceMs: 0 }
) =>
  sql`
    INSERT INTO modulo_group.members
      (member_id, group_id, idx, acked_epoch, lease_expires_at, heartbeat_at, joined_at, host, pid, name,
       instance_id, rejoin_grace_ms, renewal_seq, writer, lease_ms)
    VALUES (${member.memberId}::uuid, ${groupId}::text, NULL, ${ackedEpoch}::int8,
            ${at(sql, now)} + ${leaseMs}::float8 * interval '1 millisecond',
            ${at(sql, now)}, ${at(sql, now)}, ${member.host}::text, ${member.pid}::int4, ${member.name}::text,
            ${instance.instanceId}::text, ${instance.rejoinGraceMs}::int4, ${seq}::int8, ${writer}::uuid, ${leaseMs}::float8)`

/** A sub-select of member ids, passed as one JSON array parameter (riders: up to `maxRiders` of them). */
const memberIdList = (sql: Sql, memberIds: ReadonlyArray<string>): Statement.Fragment =>
  sql`(SELECT value::uuid FROM pg_catalog.json_array_elements_text(${JSON.stringify(memberIds)}::json))`

/**
 * A change that takes along other calls of the same store (internal/pg/riders.ts), under the group
 * lock, in that group only. Joins: before the leading join's `deleteExpiredAndOwnRow`, the riders'
 * earlier rows (a join that failed with an unknown outcome may have left one), as
 * `deleteExpiredAndOwnRow` deletes the joiner's own (a rider with a row in another group is not
 * inserted: `insertRiders`). Leaves: the riders' rows, as `deleteMember` for each (`waiting`: a
 * waiting joiner's row).
 */
export const deleteRiderRows = (sql: Sql, memberIds: ReadonlyArray<string>, writer: string, groupId: string) =>
  sql<{ member_id: string; waiting: boolean }>`
    DELETE FROM modulo_group.members
     WHERE member_id IN ${memberIdList(sql, memberIds)} AND ${written(sql, "", writer)}
       AND group_id = ${groupId}::text
    RETURNING member_id::text AS member_id, idx IS NULL AS waiting`

/**
 * After `deleteRiderRows`: the riders' rows, no index, acknowledging the epoch the change creates,
 * as `insertMember` for each (no instance id: riders are never static), in one statement.
 */
export const insertRiders = (
  sql: Sql,
  groupId: string,
  riders: ReadonlyArray<{
    readonly member: { readonly memberId: string; readonly host: string; readonly pid: number; readonly name: string }
    readonly leaseMs: number
  }>,
  ackedEpoch: number,
  now: string | null,
  seq: number,
  writer: string
) => {
  const json = JSON.stringify(riders.map((r) => ({
    member_id: r.member.memberId,
    host: r.member.host,
    pid: r.member.pid,
    name: r.member.name,
    lease_ms: r.leaseMs
  })))
  return sql`
    INSERT INTO modulo_group.members
      (member_id, group_id, idx, acked_epoch, lease_expires_at, heartbeat_at, joined_at, host, pid, name,
       instance_id, rejoin_grace_ms, renewal_seq, writer, lease_ms)
    SELECT r.member_id, ${groupId}::text, NULL, ${ackedEpoch}::int8,
           ${at(sql, now)} + r.lease_ms * interval '1 millisecond',
           ${at(sql, now)}, ${at(sql, now)}, r.host, r.pid, r.name, NULL, 0, ${seq}::bigint, ${writer}::uuid, r.lease_ms
      FROM ROWS FROM (pg_catalog.json_to_recordset(${json}::json)
                        AS (member_id uuid, host text, pid integer, name text, lease_ms float8))
           WITH ORDINALITY AS r(member_id, host, pid, name, lease_ms, ord)
     ORDER BY r.ord
    -- A rider whose id another store's live row holds, or a row in another group (left by
    -- deleteRiderRows): not inserted, so it gets no index (selectRiderIndices) and joins alone, where
    -- its join is refused naming that row.
    -- It failed the whole change (23505), the leader's join with it (a review of migration 0012).
    ON CONFLICT (member_id) DO NOTHING`
}

/** What `selectOverdue` read: the member that keeps a join waiting. */
export interface OverdueRow {
  readonly name: string
  readonly host: string
  readonly pid: number
  readonly heartbeat_age_ms: string
  readonly lease_left_ms: string
}

/**
 * Join, under the group lock, before anything else changes: the member of the group that is
 * **overdue** (its last renewal is at least `overdueMs` old on this clock while its lease has not run
 * out: crashed or hung, or slow), the most overdue first; none when this member already holds an
 * indexed row, or its waiting row has waited `waitLimitMs` already (a deferral is bounded).
 */
export const selectOverdue = (
  sql: Sql,
  groupId: string,
  memberId: string,
  overdueMs: number,
  waitLimitMs: number,
  now: string | null
) =>
  sql<OverdueRow>`
    SELECT o.name, o.host, o.pid,
           (extract(epoch FROM ${at(sql, now)} - o.heartbeat_at) OPERATOR(pg_catalog.*) 1000)::bigint AS heartbeat_age_ms,
           (extract(epoch FROM o.lease_expires_at - ${at(sql, now)}) OPERATOR(pg_catalog.*) 1000)::bigint AS lease_left_ms
      FROM modulo_group.members o
     WHERE o.group_id = ${groupId}::text AND o.member_id <> ${memberId}::uuid AND ${member(sql, "o")}
       AND o.lease_expires_at > ${at(sql, now)}
       AND o.heartbeat_at + ${overdueMs}::float8 * interval '1 millisecond' <= ${at(sql, now)}
       AND NOT EXISTS (SELECT 1 FROM modulo_group.members m
                        WHERE m.member_id = ${memberId}::uuid
                          AND (${member(sql, "m")} OR m.group_id <> ${groupId}::text
                               OR m.joined_at + ${waitLimitMs}::float8 * interval '1 millisecond' <= ${at(sql, now)}))
     ORDER BY o.heartbeat_at
     LIMIT 1`

/**
 * Join deferred, under the group lock (or, for a busy join, under it shared: `tryShareGroup`): this
 * member's **waiting row**, no index, inserted or (when it polls again) renewed, keeping the time it began to wait (`joined_at`). It acknowledges
 * `ackedEpoch`, the group's epoch as the join read it (it runs no work), and changes nothing else: no
 * reap, no new epoch, no notification. The next change gives it an index (`reassignIndices`), and the
 * barrier of that change's epoch waits for its joiner to take the place (`adoptRow`). It once
 * acknowledged the epoch its promotion would create, ahead of time, so the change admitting it did not
 * wait for it; but a backup holding the waiting row, restored after its joiner had been promoted and
 * had started work, then had that acknowledgement count for the epoch issued again under that number,
 * and a newcomer started beside the joiner's work (a review, attack92). `expiresInMs`: the row's lease
 * from now (default `leaseMs`, which `lease_ms` records in any case). A deferred join passes its
 * overdue threshold (eight polls), a busy join that plus the store's lock wait (it touches the row
 * again within that): a joiner that dies while it waits leaves a row that runs out soon, so a change
 * that promotes it holds the barrier that long at most (then the reap of it), not the joiner's whole
 * lease (reviews of that fix, attack93 and attack94: 1.7 s of a 2 s lease, 19.8 s of a 20 s lease,
 * with every survivor stopped). Without an overdue threshold (a caller of the store that passes
 * none) a busy join's row keeps the lease. A static member's waiting row carries its instance id but
 * no rejoin grace until its joiner takes the index it is given (`adoptRow`): the grace keeps a place
 * for a restart, and a waiting row holds none. With the grace, the row of a static joiner that died or
 * stopped while it waited was given an index at the next change and held it, unworked, for the rest
 * of the grace (a review, attack96: 28 s of the default 30 s).
 */
export const deferJoin = (
  sql: Sql,
  groupId: string,
  member: { readonly memberId: string; readonly host: string; readonly pid: number; readonly name: string },
  ackedEpoch: number,
  leaseMs: number,
  now: string | null,
  seq: number,
  writer: string,
  instanceId: string | null,
  expiresInMs: number = leaseMs
) =>
  sql<{ waited_ms: string }>`
    INSERT INTO modulo_group.members AS m
      (member_id, group_id, idx, acked_epoch, lease_expires_at, heartbeat_at, joined_at, host, pid, name,
       instance_id, rejoin_grace_ms, renewal_seq, writer, lease_ms)
    VALUES (${member.memberId}::uuid, ${groupId}::text, NULL, ${ackedEpoch}::int8,
            ${at(sql, now)} + ${expiresInMs}::float8 * interval '1 millisecond',
            ${at(sql, now)}, ${at(sql, now)}, ${member.host}::text, ${member.pid}::int4, ${member.name}::text,
            ${instanceId}::text, 0, ${seq}::int8, ${writer}::uuid, ${leaseMs}::float8)
    ON CONFLICT (member_id) DO UPDATE
       SET lease_expires_at = EXCLUDED.lease_expires_at, heartbeat_at = EXCLUDED.heartbeat_at,
           acked_epoch = EXCLUDED.acked_epoch, renewal_seq = EXCLUDED.renewal_seq, lease_ms = EXCLUDED.lease_ms
     WHERE m.group_id = EXCLUDED.group_id AND m.idx IS NULL AND ${written(sql, "m.", writer)}
    RETURNING (extract(epoch FROM ${at(sql, now)} - m.joined_at) OPERATOR(pg_catalog.*) 1000)::bigint AS waited_ms`

/**
 * A deferred static join, under the group lock, before `deferJoin`: deletes a waiting row of the same
 * instance id left by another member id (an earlier process of the instance) whose lease has run out.
 * Such a row has no grace (see `deferJoin`) and any reap deletes it without a change; left, it made
 * this join's insert fail on the instance's unique index (a review, attack97: "duplicate key value
 * violates unique constraint members_group_instance", logged, the join retried).
 */
export const deleteRunOutWaiting = (sql: Sql, groupId: string, instanceId: string, memberId: string, now: string | null) =>
  sql`
    DELETE FROM modulo_group.members
     WHERE group_id = ${groupId}::text AND instance_id = ${instanceId}::text AND idx IS NULL
       AND member_id <> ${memberId}::uuid AND lease_expires_at <= ${at(sql, now)}`

/**
 * Join of a member that was waiting, under the group lock (or shared: `tryShareGroup`): if a change
 * has given its waiting row an index in the current `epoch` (and its lease holds), that is its join:
 * the row acknowledges `epoch` (the member runs no work) and renews its lease, and a static member's
 * row takes its rejoin grace (`deferJoin`: a waiting row has none); nothing else changes. No row
 * otherwise.
 */
export const adoptRow = (
  sql: Sql,
  groupId: string,
  memberId: string,
  epoch: number,
  leaseMs: number,
  now: string | null,
  seq: number,
  writer: string,
  rejoinGraceMs: number
) =>
  sql<{ idx: number; assigned_size: number }>`
    UPDATE modulo_group.members
       SET acked_epoch = GREATEST(acked_epoch, ${epoch}::int8),
           rejoin_grace_ms = ${rejoinGraceMs}::int4,
           lease_expires_at = ${renewedLease(sql, "", sql`${at(sql, now)} + ${leaseMs}::float8 * interval '1 millisecond'`)},
           lease_ms = ${leaseMs}::float8,
           heartbeat_at = ${at(sql, now)}, renewal_seq = ${seq}::int8
     WHERE member_id = ${memberId}::uuid AND group_id = ${groupId}::text AND idx IS NOT NULL AND ${written(sql, "", writer)}
       AND assigned_epoch = ${epoch}::int8 AND lease_expires_at > ${at(sql, now)}
    RETURNING idx, assigned_size`

/**
 * A join that found the group's lock held by another change (`PgMembershipStore`, "a busy join"):
 * sets the transaction's bounds and tries the group's advisory lock **shared**, without waiting, as
 * fenced transactions hold it. While it is held no change runs (every change takes it exclusively),
 * so the group read next stays as it is until the commit. Not got: the caller does nothing.
 */
export const tryShareGroup = (sql: Sql, groupId: string, timeoutMs: number) =>
  sql<{ locked: boolean }>`
    SELECT s.locked FROM (
      SELECT pg_catalog.set_config('lock_timeout', ${String(timeoutMs)}::text, true) AS lt,
             pg_catalog.set_config('statement_timeout', ${String(timeoutMs)}::text, true) AS st,
             pg_catalog.set_config('idle_in_transaction_session_timeout', ${String(timeoutMs)}::text, true) AS idle,
             ${pinnedSearchPath(sql)} AS path,
             ${noJit(sql)} AS jit,
             pg_catalog.pg_try_advisory_xact_lock_shared(${advisoryLockClass}::int4, pg_catalog.hashtext(${groupId}::text)) AS locked
    ) AS s`

/**
 * A busy join, under `tryShareGroup`'s lock: the group row (FOR SHARE, as fenced transactions read
 * it), the highest epoch a member acknowledged (as `selectGroupForUpdate`), and this member's row,
 * if any, in whichever group.
 */
export const selectBusyJoin = (sql: Sql, groupId: string, memberId: string, writer: string, now: string | null) => {
  // The member's own row read by sub-selects (its key), not joined: a join with no clause between the
  // two sides needs a nested loop, which `enable_nestloop = off` costed past every JIT threshold
  // (test/badinput/plannerMethods.pg.test.ts).
  const ownRow = (column: Statement.Fragment) =>
    sql`(SELECT ${column} FROM modulo_group.members me WHERE me.member_id = ${memberId}::uuid AND ${written(sql, "me.", writer)})`
  return sql<{
    epoch: string
    incarnation: string
    slots: number | null
    acked: string
    row_group: string | null
    idx: number | null
    assigned_epoch: string | null
    live: boolean | null
  }>`
    SELECT g.epoch, g.incarnation, g.slots,
           coalesce((SELECT pg_catalog.max(m.acked_epoch) FROM modulo_group.members m
                      WHERE m.group_id = g.group_id AND ${member(sql, "m")}), 0) AS acked,
           ${ownRow(sql`me.group_id`)} AS row_group, ${ownRow(sql`me.idx`)} AS idx,
           ${ownRow(sql`me.assigned_epoch`)} AS assigned_epoch, ${ownRow(sql`me.lease_expires_at > ${at(sql, now)}`)} AS live
      FROM modulo_group.groups g
     WHERE g.group_id = ${groupId}::text
       FOR SHARE OF g`
}

/** What `selectInstance` read. */
export interface InstanceRow {
  readonly member_id: string
  /** The store that wrote the row (migration 0012; null before it). */
  readonly writer: string | null
  readonly idx: number | null
  readonly assigned_epoch: string
  readonly live: boolean
  readonly host: string
  readonly pid: number
  readonly name: string
  readonly lease_left_ms: string
}

/**
 * Static join, under the group lock: the row of this instance id, if any and not past its grace
 * (that one is reaped, not taken over), locked FOR UPDATE (a renewal of its holder that committed
 * meanwhile is read at its new version), and whether its lease is live on this clock (a released
 * row's lease ended at its release).
 */
export const selectInstance = (sql: Sql, groupId: string, instanceId: string, now: string | null) =>
  sql<InstanceRow>`
    SELECT member_id, writer::text AS writer, idx, assigned_epoch, lease_expires_at > ${at(sql, now)} AS live, host, pid, name,
           (extract(epoch FROM lease_expires_at - ${at(sql, now)}) OPERATOR(pg_catalog.*) 1000)::bigint AS lease_left_ms
      FROM modulo_group.members
     WHERE group_id = ${groupId}::text AND instance_id = ${instanceId}::text AND NOT (${reapable(sql, now)})
       FOR UPDATE`

/** A row of this member id in another group than `groupId` (`deleteExpiredAndOwnRow`'s `elsewhere`). */
export type { ElsewhereRow }

/** The row aliased `e` as an `ElsewhereRow` (JSON). */
const elsewhereRow = (sql: Sql, now: string | null): Statement.Fragment =>
  sql`pg_catalog.json_build_object('group', e.group_id, 'name', e.name, 'host', e.host, 'pid', e.pid,
                        'expired', e.lease_expires_at <= ${at(sql, now)}, 'reapable', ${reapable(sql, now, "e")},
                        'instance', e.instance_id, 'grace_ms', e.rejoin_grace_ms)`

/**
 * Static join, before a takeover (which gives the instance's row this member id): a row of this
 * member id in another group, as `deleteExpiredAndOwnRow` reports it for the other joins (the
 * takeover failed on the primary key instead, 23505, and nothing reaped that group: a review).
 */
export const selectElsewhere = (sql: Sql, groupId: string, memberId: string, now: string | null) =>
  sql<{ elsewhere: ElsewhereRow }>`
    SELECT ${elsewhereRow(sql, now)} AS elsewhere
      FROM modulo_group.members e
     WHERE e.member_id = ${memberId}::uuid AND e.group_id <> ${groupId}::text`

/**
 * Static join, under the group lock: the takeover. The row of the instance (`oldMemberId`) becomes
 * this member's: new member id (the old incarnation's renewals and fenced transactions no longer
 * find their row), a fresh lease, not released, and acknowledging `epoch` (its old process cannot be
 * working: it released after its work stopped, or its lease ran out). Its index and its epoch stamp
 * stay: no change, no new epoch. Only while the old lease is not live, also when the row is already
 * this member's (its own live row is never taken over: a rejoin is then a change); no row otherwise.
 */
export const takeOver = (
  sql: Sql,
  groupId: string,
  oldMemberId: string,
  member: { readonly memberId: string; readonly host: string; readonly pid: number; readonly name: string },
  epoch: number,
  leaseMs: number,
  rejoinGraceMs: number,
  now: string | null,
  seq: number,
  writer: string
) =>
  sql<{ idx: number; assigned_epoch: string; assigned_size: number }>`
    WITH taken AS (
    UPDATE modulo_group.members
       SET member_id = ${member.memberId}::uuid, renewal_seq = ${seq}::int8, writer = ${writer}::uuid,
           lease_expires_at = ${at(sql, now)} + ${leaseMs}::float8 * interval '1 millisecond', lease_ms = ${leaseMs}::float8,
           heartbeat_at = ${at(sql, now)}, joined_at = ${at(sql, now)},
           released_at = NULL, stopping_since = NULL,
           acked_epoch = GREATEST(acked_epoch, ${epoch}::int8),
           host = ${member.host}::text, pid = ${member.pid}::int4, name = ${member.name}::text,
           rejoin_grace_ms = ${rejoinGraceMs}::int4
     WHERE member_id = ${oldMemberId}::uuid AND group_id = ${groupId}::text AND idx IS NOT NULL
       AND lease_expires_at <= ${at(sql, now)}
    RETURNING idx, assigned_epoch, assigned_size
    ), longer AS (
      -- No change, but the group's longest lease may now be this one (see markMissing).
      UPDATE modulo_group.groups SET lease_ms = GREATEST(lease_ms, ${leaseMs}::float8)
       WHERE group_id = ${groupId}::text AND EXISTS (SELECT 1 FROM taken)
    )
    SELECT idx, assigned_epoch, assigned_size FROM taken`

/** Static join: deletes the instance's row that cannot be taken over (see the store); a fresh row follows. */
export const deleteInstanceRow = (sql: Sql, groupId: string, memberId: string) =>
  sql`DELETE FROM modulo_group.members WHERE member_id = ${memberId}::uuid AND group_id = ${groupId}::text`

/**
 * Release (graceful leave of a static member), under the group lock: the row stays with its index,
 * its lease ends now (the old incarnation is not live any more: its renewals and fenced transactions
 * fail), and it acknowledges `epoch` (its work has stopped). Reaping deletes it when its rejoin grace
 * has passed; a join with its instance id takes it over before that.
 */
export const releaseMember = (sql: Sql, groupId: string, memberId: string, epoch: number, writer: string, now: string | null) =>
  sql<{ member_id: string }>`
    UPDATE modulo_group.members
       SET released_at = ${at(sql, now)},
           -- Ended now unless a fenced transaction of the member runs (it holds the member's advisory
           -- lock shared, \`memberLockClass\`; in modulo mode it also holds the group's lock, which this
           -- change waits for; a slots-mode fence does not): ended during its COMMIT, after its
           -- commit-time check read the lease, it ended before the commit landed (a review: 246-404 ms,
           -- fenced reported success). Then the lease runs out; the row is released all the same (no
           -- renewal renews it), and a takeover waits for the lease's end.
           lease_expires_at = CASE WHEN lease_expires_at OPERATOR(pg_catalog.<=) ${at(sql, now)}
                                     OR pg_catalog.pg_try_advisory_xact_lock(${memberLockClass}::int4, pg_catalog.hashtext(member_id::text))
                                   THEN LEAST(lease_expires_at, ${at(sql, now)}) ELSE lease_expires_at END,
           acked_epoch = GREATEST(acked_epoch, ${epoch}::int8),
           stopping_since = NULL
     WHERE member_id = ${memberId}::uuid AND group_id = ${groupId}::text AND instance_id IS NOT NULL AND ${written(sql, "", writer)}
    RETURNING member_id`

/**
 * Join, last: the joined member's index, how many members have not acknowledged `epoch`, the clock,
 * and the longest lease of the group's live rows (`GroupView.longestLeaseMs`).
 */
export const selectJoinedView = (sql: Sql, groupId: string, memberId: string, epoch: number, now: string | null) =>
  sql<{ idx: number; unacked: string; clock_ms: string; longest_lease_ms: number | null }>`
    SELECT m.idx,
           (SELECT count(*) FROM modulo_group.members o
             WHERE o.group_id = ${groupId}::text
               AND ${unacked(sql, "o", sql`${epoch}::int8`)}) AS unacked,
           (extract(epoch FROM ${at(sql, now)}) OPERATOR(pg_catalog.*) 1000)::bigint AS clock_ms,
           (SELECT (extract(epoch FROM pg_catalog.max(${leaseOf(sql, "o")})) OPERATOR(pg_catalog.*) 1000)::float8
              FROM modulo_group.members o
             WHERE o.group_id = ${groupId}::text AND o.lease_expires_at > ${at(sql, now)}) AS longest_lease_ms
      FROM modulo_group.members m WHERE m.member_id = ${memberId}::uuid`

/** As `selectJoinedView`, for the joins that rode along a change (`insertRiders`): their indices. */
export const selectRiderIndices = (sql: Sql, groupId: string, memberIds: ReadonlyArray<string>, writer: string) =>
  sql<{ member_id: string; idx: number }>`
    SELECT m.member_id::text AS member_id, m.idx
      FROM modulo_group.members m
     WHERE m.group_id = ${groupId}::text AND ${written(sql, "m.", writer)}
       AND m.member_id IN ${memberIdList(sql, memberIds)}`

/**
 * Reap and leave: deletes the group's members whose lease has run out (static ones: and their rejoin
 * grace too; `instance_id` is returned for them). With `epoch`, in the same statement, held static
 * rows (lease run out, grace not) that have not acknowledged `epoch` acknowledge it (returned with
 * `acked`): their old process cannot be working (G3), and they must not hold the barrier for the
 * rest of their grace. `waiting`: the row was a waiting joiner's (its joiner stopped polling): deleting
 * it changes no epoch.
 */
export const deleteExpired = (sql: Sql, groupId: string, now: string | null, epoch: number | null = null) =>
  sql<{ member_id: string; instance_id: string | null; acked: boolean; waiting: boolean }>`
    WITH gone AS (
      DELETE FROM modulo_group.members
       WHERE group_id = ${groupId}::text AND ${reapable(sql, now)}
      RETURNING member_id, instance_id, idx IS NULL AS waiting
    ), held AS (
      UPDATE modulo_group.members
         SET acked_epoch = ${epoch}::bigint
       WHERE ${epoch}::bigint IS NOT NULL AND group_id = ${groupId}::text AND instance_id IS NOT NULL
         AND lease_expires_at <= ${at(sql, now)} AND NOT (${reapable(sql, now)})
         AND (acked_epoch < ${epoch}::bigint OR acked_epoch >= 4503599627370495) AND idx IS NOT NULL
      RETURNING member_id, instance_id
    )
    SELECT member_id, instance_id, false AS acked, waiting FROM gone
    UNION ALL
    SELECT member_id, instance_id, true AS acked, false AS waiting FROM held`

/**
 * Reap: whether the member rows no longer match the group (a row deleted, added or restamped by
 * hand), and how many members are live (waiting rows are not members: not counted, not checked).
 */
export const selectRowsOff = (sql: Sql, groupId: string) =>
  sql<{ off: boolean; live: string }>`
    SELECT (SELECT count(*) FROM modulo_group.members m WHERE m.group_id = ${groupId}::text AND ${member(sql, "m")}) <> size
           OR EXISTS (SELECT 1 FROM modulo_group.members m
                       WHERE m.group_id = ${groupId}::text AND ${member(sql, "m")}
                         AND (m.assigned_epoch <> g.epoch OR m.assigned_size <> g.size)) AS off,
           (SELECT count(*) FROM modulo_group.members m WHERE m.group_id = ${groupId}::text AND ${member(sql, "m")}) AS live
      FROM modulo_group.groups g WHERE group_id = ${groupId}::text`

/**
 * A leave that found the group's lock held by another change (`PgMembershipStore`, "a busy leave"):
 * ends this member's lease now, in one statement, without the lock and without a change. Its member
 * has stopped its work (the final leave runs after it), so its row is now what a crashed member's
 * is once its lease has run out: the others' renewals count it as expired and reap it, and every
 * change deletes it (`deleteExpired`), so that one change takes out many leaves that came at once
 * instead of each waiting for the lock in turn. Modulo mode, rows without an instance id only (a
 * static member releases instead; slots mode hands slots over at its own changes); no row otherwise,
 * and the leave waits for the lock as before.
 *
 * The lease ends `timeoutMs` before this statement's time, not at it: a renewal renews only a lease
 * that has not run out at its own statement's time (`renewLease`), and a renewal of this member that
 * the server started a moment before this statement (sent before the leave: the batcher runs a
 * renewal it has taken to its end) but reaches the row after it would otherwise find the lease still
 * running at its own, earlier time, and renew it for a whole lease. A statement's time is taken when
 * the server starts to execute it (every statement here is sent with parameters: a wait for a table
 * lock while it is parsed or bound comes before it; an adversarial run checked this, 0 ms between
 * `pg_catalog.statement_timestamp()` and `pg_catalog.clock_timestamp()` after a 2 s wait), and from then a renewal waits
 * at most `timeoutMs` for the row (its `lock_timeout`): none that started earlier than that reaches
 * it. Bounded by `lock_timeout` (`timeoutMs`) itself when a change holds the row. (A renewal now also
 * compares the lease with the clock once it holds the row, which alone keeps such a renewal from
 * renewing this lease: the margin stays, as a second bar.)
 */
export const expireLease = (
  sql: Sql,
  groupId: string,
  memberId: string,
  writer: string,
  now: string | null,
  timeoutMs: number,
  seq: number
) =>
  sql<{ member_id: string }>`
    WITH free AS (
      -- Not while a fenced transaction of this member runs (it holds the member's advisory lock
      -- shared, \`memberLockClass\`): ended during that transaction's COMMIT, after its commit-time
      -- check read the lease, the lease would end before the commit lands (a review: 0.9-1.4 s before,
      -- a COMMIT that wrote the body's notifications, and fenced reported success). No row then, and
      -- the leave waits for the group's lock as before (which waits for that transaction too). Not by
      -- the row's lock: every change holds \`FOR KEY SHARE\` on every member row of its group while it
      -- runs, as a fence does (a review of that first form: the busy leave skipped its row behind
      -- every change, and waited its turn again).
      SELECT pg_catalog.pg_try_advisory_xact_lock(${memberLockClass}::int4, pg_catalog.hashtext(${memberId}::uuid::text)) AS free)
    UPDATE modulo_group.members m
       SET lease_expires_at = LEAST(m.lease_expires_at, ${at(sql, now)} - ${timeoutMs}::float8 * interval '1 millisecond'),
           -- No renewal of this member applies after it (one that ran long on the server would
           -- otherwise find the lease running at its own, earlier time: \`inOrder\`).
           renewal_seq = ${noMoreRenewals}::bigint
      FROM modulo_group.groups g
     WHERE m.member_id = ${memberId}::uuid AND m.group_id = ${groupId}::text AND g.group_id = m.group_id
       AND (SELECT free.free FROM free)
       AND m.instance_id IS NULL AND g.slots IS NULL AND ${written(sql, "m.", writer)}
       -- Only the row of the life that is leaving: one its store wrote before this leave was numbered
       -- (\`seq\`, taken before the statement waits for a connection or a lock). A member id is used
       -- again once its member has left (same process, same store, same writer): the new life's join
       -- numbers its row later, and a late expireLease of the old life (queued for a pool connection
       -- past its caller's give-up) ended the new life's lease and its renewals while it worked
       -- (a review of de8e019: test/connections/lateExpireNewLife*.pg.test.ts).
       AND ${inOrder(sql, sql`${seq}::bigint`, sql`m.`)}
       AND ${lockBounded(sql, timeoutMs)}
    RETURNING m.member_id`

/** Leave: deletes this member's row (`waiting`: it was a waiting joiner's; no change follows). */
export const deleteMember = (sql: Sql, groupId: string, memberId: string, writer: string) =>
  sql<{ member_id: string; waiting: boolean }>`
    DELETE FROM modulo_group.members WHERE member_id = ${memberId}::uuid AND group_id = ${groupId}::text AND ${written(sql, "", writer)}
    RETURNING member_id, idx IS NULL AS waiting`

// ---------------------------------------------------------------------------------------------------
// Slots mode (migration 0007, docs/slots.md).

/**
 * A sub-select (one row) of this member's slots: `held`, a JSON array of `[slot, generation, owned]`
 * for the slots it holds, and `pending`, a JSON array of the slots it owns but does not hold, both
 * ascending. Empty arrays in modulo mode (no slot rows).
 */
const slotViewOf = (sql: Sql, groupId: string, memberId: string): Statement.Fragment =>
  sql`SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_array(s.slot, s.generation, s.owner IS NOT DISTINCT FROM ${memberId}::uuid)
                               ORDER BY s.slot) FILTER (WHERE s.holder = ${memberId}::uuid), '[]'::json) AS held,
             coalesce(pg_catalog.json_agg(s.slot ORDER BY s.slot)
                        FILTER (WHERE s.holder IS DISTINCT FROM ${memberId}::uuid), '[]'::json) AS pending
        FROM modulo_group.slots s
       WHERE s.group_id = ${groupId}::text AND (s.holder = ${memberId}::uuid OR s.owner = ${memberId}::uuid)`

/**
 * Join of a group's first member in slots mode, under the group lock: fixes the group's slot count
 * (only while it has none) and creates its `slots` rows, unowned, at generation 0.
 */
export const createSlots = (sql: Sql, groupId: string, slots: number, now: string | null) =>
  sql`
    WITH g AS (
      UPDATE modulo_group.groups SET slots = ${slots}::int4
       WHERE group_id = ${groupId}::text AND slots IS NULL
      RETURNING group_id
    )
    INSERT INTO modulo_group.slots (group_id, slot, owner, holder, generation, changed_at)
    SELECT (SELECT g.group_id FROM g), s, NULL, NULL, 0, ${at(sql, now)}
      FROM pg_catalog.generate_series(0, ${slots}::int4 - 1) AS s
     -- The group's row read by a sub-select, not joined (no nested loop: test/badinput/plannerMethods.pg.test.ts).
     WHERE EXISTS (SELECT 1 FROM g)
    ON CONFLICT (group_id, slot) DO NOTHING`

/**
 * A change in slots mode, under the group lock: every slot row, ascending, locked FOR NO KEY UPDATE.
 * That lock makes a concurrent release or retake (a generation bump: a key update, which needs FOR
 * UPDATE) wait until the change has committed and then re-check its conditions on the new row, so
 * the holders this change read are the holders its UPDATE overwrites; and it does not wait for
 * fenced transactions, whose FOR KEY SHARE it does not conflict with.
 */
export const selectSlotsForChange = (sql: Sql, groupId: string) =>
  sql<{ slot: number; owner: string | null; holder: string | null; generation: string }>`
    SELECT slot, owner, holder, generation FROM modulo_group.slots
     WHERE group_id = ${groupId}::text ORDER BY slot FOR NO KEY UPDATE`

/** A change in slots mode, under the group lock: the member rows (the live members), in join order. */
export const selectMemberOrder = (sql: Sql, groupId: string) =>
  sql<{ member_id: string }>`
    SELECT member_id FROM modulo_group.members WHERE group_id = ${groupId}::text ORDER BY join_seq`

/**
 * A change in slots mode, under the group lock, after `selectSlotsForChange`: one UPDATE of the
 * changed rows only. `owner` := its target; where `handTo` is set (a move whose old holder is gone or
 * that had none), also holder := `handTo`, generation + 1. Arrays are passed as one text parameter
 * each (`{...}` literals of integers, uuids or NULL, booleans).
 */
export const updateSlots = (
  sql: Sql,
  groupId: string,
  rows: ReadonlyArray<{ readonly slot: number; readonly owner: string | null; readonly handTo: string | null | undefined }>,
  now: string | null
) => {
  const list = (values: ReadonlyArray<string>) => `{${values.join(",")}}`
  const slotList = list(rows.map((r) => String(r.slot)))
  const ownerList = list(rows.map((r) => r.owner ?? "NULL"))
  const holderList = list(rows.map((r) => r.handTo ?? "NULL"))
  const handList = list(rows.map((r) => (r.handTo === undefined ? "f" : "t")))
  return sql`
    UPDATE modulo_group.slots s
       SET owner = u.owner,
           holder = CASE WHEN u.hand THEN u.holder ELSE s.holder END,
           generation = CASE WHEN u.hand THEN s.generation + 1 ELSE s.generation END,
           changed_at = ${at(sql, now)}
      FROM ROWS FROM (pg_catalog.unnest(${slotList}::int[]), pg_catalog.unnest(${ownerList}::uuid[]),
                      pg_catalog.unnest(${holderList}::uuid[]), pg_catalog.unnest(${handList}::bool[]))
             AS u(slot, owner, holder, hand)
     WHERE s.group_id = ${groupId}::text AND s.slot = u.slot`
}

/**
 * Join in slots mode, under the group lock, after the member's earlier row (same member id) was
 * deleted: the slots that row held move to a new generation. The new row holds them (its view shows
 * them: it releases those it no longer owns and starts the others), but no release, fenced
 * transaction or work of the earlier row can count for them any more.
 */
export const reissueHeldSlots = (sql: Sql, groupId: string, memberId: string, now: string | null) =>
  sql`
    UPDATE modulo_group.slots SET generation = generation + 1, changed_at = ${at(sql, now)}
     WHERE group_id = ${groupId}::text AND holder = ${memberId}::uuid`

/** Join in slots mode, last: the joined member's slots (see `slotViewOf`). */
export const selectSlotView = (sql: Sql, groupId: string, memberId: string) =>
  sql<{ held: ReadonlyArray<readonly [number, number | string, boolean]>; pending: ReadonlyArray<number> }>`
    ${slotViewOf(sql, groupId, memberId)}`

/**
 * The release (docs/slots.md, "The release"), one statement outside any transaction: the slots this
 * member has stopped, each at the generation it worked; a slot still held by it at that generation
 * and owned by another member goes to its owner, generation + 1; only while this member's lease is
 * live. Returns the slots released.
 */
export const releaseSlots = (
  sql: Sql,
  groupId: string,
  memberId: string,
  stopped: ReadonlyArray<{ readonly slot: number; readonly generation: number }>,
  writer: string,
  now: string | null,
  timeoutMs: number
) =>
  sql<{ slot: number }>`
    UPDATE modulo_group.slots s
       SET holder = s.owner, generation = s.generation + 1, changed_at = ${at(sql, now)}
      FROM ${slotGenerations(sql, stopped)}
     WHERE s.group_id = ${groupId}::text AND s.slot = r.slot AND s.generation = r.generation
       AND s.holder = ${memberId}::uuid AND s.owner IS DISTINCT FROM ${memberId}::uuid
       AND EXISTS (SELECT 1 FROM modulo_group.members m
                    WHERE m.member_id = ${memberId}::uuid AND m.group_id = ${groupId}::text AND ${written(sql, "m.", writer)}
                      AND m.lease_expires_at > ${at(sql, now)})
       AND ${lockBounded(sql, timeoutMs)}
    RETURNING s.slot`

/**
 * The retake: a slot this member holds and owns at `generation` (after a release of that generation
 * whose outcome it does not know) moves to generation + 1, so the late release is a no-op. Only while
 * its lease is live.
 */
export const retakeSlot = (
  sql: Sql,
  groupId: string,
  memberId: string,
  slot: number,
  generation: number,
  writer: string,
  now: string | null,
  timeoutMs: number
) =>
  sql<{ slot: number }>`
    UPDATE modulo_group.slots s
       SET generation = s.generation + 1, changed_at = ${at(sql, now)}
     WHERE s.group_id = ${groupId}::text AND s.slot = ${slot}::int4 AND s.generation = ${generation}::int8
       AND s.holder = ${memberId}::uuid AND s.owner = ${memberId}::uuid
       AND EXISTS (SELECT 1 FROM modulo_group.members m
                    WHERE m.member_id = ${memberId}::uuid AND m.group_id = ${groupId}::text AND ${written(sql, "m.", writer)}
                      AND m.lease_expires_at > ${at(sql, now)})
       AND ${lockBounded(sql, timeoutMs)}
    RETURNING s.slot`

/** A group's slot rows, ascending (none in modulo mode). */
export const selectSlotRows = (sql: Sql, groupId: string) =>
  sql<{ slot: number; owner: string | null; holder: string | null; generation: string }>`
    SELECT slot, owner, holder, generation FROM modulo_group.slots WHERE group_id = ${groupId}::text ORDER BY slot`

// ---------------------------------------------------------------------------------------------------
// Heartbeat, notifications and reads: single statements outside any explicit transaction.

/**
 * Renewals in the order they were sent (`renewal_seq`, migration 0010). Two renewals of one member
 * can be on the server at once: the batcher sends the next when the one in flight has run past its
 * patience (2 × the statement timeout), and nothing bounds how long a statement stalls on the server
 * before it reaches the row. The older one, reaching the row after the newer committed, would set the
 * lease to its own time + lease: before the newer one's, on whose send time the member bases its
 * local deadline. So every write of a member's lease (a join, a takeover, a renewal) records a number
 * from its store's counter (`seq`: increasing per store, so per member), and a renewal applies only
 * when its number is above the row's (a row without one, from before the migration, takes any). An
 * older renewal writes nothing and its answer says no row; its caller stopped waiting for it before
 * the newer one was sent. No clock decides the order: three earlier rules on `heartbeat_at` each fell
 * to an adversarial review (docs/protocol.md, "Never back").
 */
const inOrder = (sql: Sql, seq: Statement.Fragment, r: Statement.Fragment) =>
  sql`(${r}renewal_seq IS NULL OR ${r}renewal_seq < ${seq}::int8)`

/**
 * `ackCurrent`: the member's work is stopped and it waits (Transition's `Notified`), so it may
 * acknowledge whatever epoch the group is in: the greater of its own row's stamp (`assigned_epoch`,
 * the row as the UPDATE writes it: a change that restamped it after this statement's snapshot and
 * committed is seen) and the group's epoch in the snapshot. Both are epochs the group has reached,
 * never one ahead of it (a forged notification's claim never gets here: the claim only made the
 * member stop). Else 0 (`GREATEST` keeps the rest).
 */
const ackCurrentEpoch = (sql: Sql, ackCurrent: Statement.Fragment, groupId: Statement.Fragment, r: Statement.Fragment) =>
  sql`CASE WHEN ${ackCurrent}
           THEN GREATEST(${r}assigned_epoch,
                         (SELECT g0.epoch FROM modulo_group.groups g0 WHERE g0.group_id = ${groupId}::text))
           ELSE 0 END`

/**
 * A renewal's acknowledgement `ack` as it is recorded: `ack`, unless the member named the place it holds
 * in that epoch (`size`, `index`: `MembershipStore`'s `ackPlace`; NULL: none named) and its row was
 * stamped with that epoch at another place (`assigned_epoch = ack`, and another `assigned_size` or
 * `idx`): then nothing (0; the row's own acknowledgement stays, `saneAck`). The epoch's number was
 * issued twice (a restore took back the change that issued it, and another change issued it again:
 * docs/guarantees.md, "Fencing tokens"), and the member's acknowledgement is of the first: counted
 * for the second, it lowered that barrier while the member still worked the first (a review, attack83).
 * The row's values are the locked row's (the UPDATE's target as it re-read it).
 */
const placedAck = (
  sql: Sql,
  ack: Statement.Fragment,
  size: Statement.Fragment,
  index: Statement.Fragment,
  prefix: "" | "m."
): Statement.Fragment =>
  prefix === "m."
    ? sql`CASE WHEN ${size} IS NOT NULL AND ${ack} = m.assigned_epoch
                    AND (m.assigned_size IS DISTINCT FROM ${size} OR m.idx IS DISTINCT FROM ${index})
               THEN 0 ELSE ${ack} END`
    : sql`CASE WHEN ${size} IS NOT NULL AND ${ack} = assigned_epoch
                    AND (assigned_size IS DISTINCT FROM ${size} OR idx IS DISTINCT FROM ${index})
               THEN 0 ELSE ${ack} END`

/** A renewal's number past any store's counter: `expireLease` ends a member's renewals with it. */
const noMoreRenewals = "9223372036854775807"

/** What `renewLease` returns: the member's row after renewal, its group, and the others' counts. */
export interface RenewedRow {
  readonly idx: number
  readonly acked: string
  readonly prev_acked: string | null
  readonly assigned_epoch: string
  readonly assigned_size: number
  readonly epoch: string
  readonly size: number
  readonly incarnation: string
  readonly unacked: string
  readonly expired: string
  readonly rows: string
  readonly clock_ms: string
  /**
   * The longest lease of the group's live rows other than this member's (the batch: its own renewed
   * row too), null when none: the store takes the longer of it and the member's own lease
   * (`GroupView.longestLeaseMs`).
   */
  readonly longest_lease_ms: number | null
  /**
   * The group's slot count (null: modulo mode), whatever the member's mode: a member of the other
   * mode takes no view (`groups.slots` edited by hand past migration 0019's guard). This member's
   * slots (see `slotViewOf`) only when it renews in slots mode.
   */
  readonly slots: number | null
  readonly held: ReadonlyArray<readonly [number, number | string, boolean]>
  readonly pending: ReadonlyArray<number>
}

/**
 * The heartbeat, one statement: renews this member's lease (only if it has not run out), records its
 * acknowledgement (`ack`) and whether its work is stuck stopping, and reads the group and the other
 * members' counts. No row when the lease had run out, the row is gone, or its index is not one of
 * 0..N-1 of its own epoch (set by hand: the member rejoins, which reassigns).
 *
 * Its server-side bound, in the statement itself (no round trip of its own): `lock_timeout` of
 * `timeoutMs`, set local to the statement's own transaction before the UPDATE can wait for the
 * member's row lock (an InitPlan of its WHERE, evaluated before any row is read), so a renewal
 * queued behind a change or any other holder of the row ends with SQLSTATE 55P03 after `timeoutMs`.
 * (`statement_timeout` cannot bound the statement that sets it: the server arms it when the
 * statement starts.)
 *
 * "Not run out" is read twice: at the statement's time (the member's deadline counts from its send
 * time, before it), and on the clock once the row is locked (`lk`, before the UPDATE reads the clock).
 * The statement's time alone let a renewal that began before the lease's end and waited for the row
 * (a change held it) revive a lease that had ended meanwhile: PostgreSQL evaluates the WHERE before
 * the wait, and after it only when the holder updated the row and committed. A fenced transaction that
 * committed in that gap then found its lease live again after its COMMIT (`leasesAfterCommit`) and
 * reported success (a review: a write visible 0.4-1.5 s past the lease's end, slots mode;
 * test/safety/lateRenewal.pg.test.ts).
 */
export const renewLease = (
  sql: Sql,
  groupId: string,
  memberId: string,
  ack: number,
  leaseMs: number,
  stuck: boolean,
  now: string | null,
  timeoutMs: number,
  seq: number,
  writer: string,
  slots = false,
  ackCurrent = false,
  /** The place the member holds in epoch `ack` (`placedAck`); absent: `ack` as it is. */
  ackPlace: { readonly size: number; readonly index: number } | undefined = undefined
) => {
  // The statement's time, one fragment for every use.
  const t = at(sql, now)
  // The group's rows read as sub-selects of one row, not joined: no join needs a nested loop, so
  // the plan's cost stays what it is under `enable_nestloop = off` (a review: cross joins of these
  // one-row CTEs were costed past every JIT threshold there, and each heartbeat was compiled at every
  // execution, 0.3 s of the server's CPU; test/badinput/plannerMethods.pg.test.ts).
  const epochOfG = sql`(SELECT epoch FROM g)`
  return sql<RenewedRow>`
    WITH prev AS (
      SELECT acked_epoch FROM modulo_group.members WHERE member_id = ${memberId}::uuid
    ), lk AS MATERIALIZED (
      SELECT member_id AS locked FROM modulo_group.members
       WHERE member_id = ${memberId}::uuid AND group_id = ${groupId}::text AND ${lockBounded(sql, timeoutMs)}
         FOR NO KEY UPDATE
    ), me AS (
      UPDATE modulo_group.members
         SET lease_expires_at = ${renewedLease(sql, "", sql`${t} + ${leaseMs}::float8 * interval '1 millisecond'`)},
             lease_ms = ${leaseMs}::float8,
             heartbeat_at = ${t},
             acked_epoch = GREATEST(${saneAck(sql, "")},
                                    ${placedAck(sql, sql`${ack}::int8`, sql`${ackPlace?.size ?? null}::int4`, sql`${ackPlace?.index ?? null}::int4`, "")},
                                    ${ackCurrentEpoch(sql, sql`${ackCurrent}::boolean`, sql`${groupId}`, sql``)}),
             stopping_since = CASE WHEN ${stuck}::boolean THEN coalesce(stopping_since, ${t}) END,
             renewal_seq = ${seq}::int8
       WHERE member_id = ${memberId}::uuid AND group_id = ${groupId}::text
         AND lease_expires_at > ${t}
         -- And live once the row is ours (\`lk\` has its lock when the clock is read): a renewal that
         -- waited for its row past the lease's end does not revive it (see the comment above).
         AND lease_expires_at > COALESCE(${now}::timestamptz, (SELECT pg_catalog.clock_timestamp() FROM lk))
         -- A released row (a static member's graceful leave) is never renewed: a renewal that started
         -- before the release would find its lease still running at its own, earlier time.
         AND released_at IS NULL
         AND ${written(sql, "", writer)}
         AND ${inOrder(sql, sql`${seq}::bigint`, sql``)}
         AND ${lockBounded(sql, timeoutMs)}
      RETURNING idx, acked_epoch, assigned_epoch, assigned_size
    ), g AS (
      SELECT epoch, size, incarnation, slots FROM modulo_group.groups WHERE group_id = ${groupId}::text
    ), mine AS (
      ${slots ? slotViewOf(sql, groupId, memberId) : sql`SELECT '[]'::json AS held, '[]'::json AS pending`}
    ), others AS (
      SELECT count(*) FILTER (WHERE ${member(sql, "o")}) AS n,
             count(*) FILTER (WHERE ${unacked(sql, "o", epochOfG)}) AS unacked,
             count(*) FILTER (WHERE ${reapable(sql, now, "o")}
                                 OR (o.instance_id IS NOT NULL AND o.lease_expires_at <= ${t}
                                     AND o.acked_epoch < ${epochOfG})
                                 OR (${member(sql, "o")} AND ${ahead(sql, "o", epochOfG)})) AS expired,
             pg_catalog.max(${leaseOf(sql, "o")}) FILTER (WHERE o.lease_expires_at > ${t}) AS longest
        FROM modulo_group.members o
       WHERE o.group_id = ${groupId}::text AND o.member_id <> ${memberId}::uuid
    )
    SELECT me.idx, me.acked_epoch AS acked, (SELECT acked_epoch FROM prev) AS prev_acked,
           me.assigned_epoch, me.assigned_size, ${epochOfG} AS epoch, (SELECT size FROM g) AS size,
           (SELECT incarnation FROM g) AS incarnation,
           (SELECT unacked FROM others) AS unacked, (SELECT expired FROM others) AS expired,
           (SELECT n FROM others) + 1 AS rows,
           (extract(epoch FROM ${t}) OPERATOR(pg_catalog.*) 1000)::bigint AS clock_ms,
           (extract(epoch FROM (SELECT longest FROM others)) OPERATOR(pg_catalog.*) 1000)::float8 AS longest_lease_ms,
           (SELECT g.slots FROM g) AS slots,
           (SELECT held FROM mine) AS held, (SELECT pending FROM mine) AS pending
      FROM me
     -- An index that is not one of 0..N-1 of its own epoch (set by hand): rejoin, which reassigns.
     -- No row without the group's row (\`g\`, one row at most: its key).
     WHERE me.idx IS NOT NULL AND EXISTS (SELECT 1 FROM g)
       AND me.idx < CASE WHEN me.assigned_epoch >= ${epochOfG} THEN me.assigned_size ELSE (SELECT size FROM g) END`
}

/** One member's renewal in a batch (`renewLeases`). */
export interface RenewalRequest {
  /** Its number in its store's order of lease writes (`inOrder`). */
  readonly seq: number
  readonly memberId: string
  readonly groupId: string
  readonly ack: number
  readonly leaseMs: number
  readonly stuck: boolean
  readonly slots: boolean
  /** Acknowledge the group's epoch as the statement reads it (`ackCurrentEpoch`); absent: false. */
  readonly ackCurrent?: boolean | undefined
  /** The place the member holds in epoch `ack` (`placedAck`); absent: `ack` as it is. */
  readonly ackPlace?: { readonly size: number; readonly index: number } | undefined
}

/** What `renewLeases` returns per request: `renewLease`'s row, and whether the member's row was busy. */
export interface BatchRenewedRow extends Omit<RenewedRow, "idx" | "acked" | "assigned_epoch" | "assigned_size" | "epoch" | "size" | "incarnation"> {
  readonly member_id: string
  /**
   * The member's row was locked by another transaction (a change in progress) and skipped: nothing
   * was written for it; send `renewLease` for it alone (which waits for the lock, as always).
   */
  readonly busy: boolean
  /** The renewal's view is valid (`renewLease` would have returned this row); else no row: rejoin. */
  readonly ok: boolean
  readonly idx: number | null
  readonly acked: string | null
  readonly assigned_epoch: string | null
  readonly assigned_size: number | null
  readonly epoch: string | null
  readonly size: number | null
  readonly incarnation: string | null
}

/**
 * The heartbeats of many members (any groups) in one statement (docs/protocol.md, "The heartbeat"):
 * per member exactly `renewLease` (renew only a live lease, record the acknowledgement and `stuck`,
 * the group's row, the member's slot view, the others' counts, the idx sanity check), with three
 * differences, none of which a member can tell from a `renewLease` that ran just after the other
 * renewals of the batch:
 *
 * - It never waits for a row lock. The rows are locked first, `SKIP LOCKED`, and the UPDATE reads
 *   only the rows locked (`lk`, which carries the requests); a member whose row was locked by someone else (a change between
 *   its reassignment and its commit) comes back `busy`, with nothing written, for `renewLease` alone.
 *   So a batch cannot deadlock with a change that locks the same rows in another order, and one
 *   group's change does not delay another group's members.
 * - Each group's counts are computed once (one scan of its rows), then the member's own row is
 *   taken out of them: the others' counts of `renewLease`.
 * - The counts see the rows this statement renewed as it leaves them (their new acknowledgement
 *   and lease) and every other row as in the statement's snapshot. That is the state this
 *   statement commits whenever the member's own row carries the group's epoch and size (the
 *   stamp rule of `renewLease`): a change that committed after the snapshot restamped every row it
 *   kept, so it committed before the member's row was locked (the row would carry its stamp), and a
 *   change that had not committed by then must lock that row too, so it commits after this
 *   statement. Between the snapshot and the commit, other transactions can then only raise
 *   acknowledgements (renewals of other processes, releases, reaps of held rows, takeovers) or add or
 *   remove rows that acknowledge ahead (waiting joiners): a barrier found down is down in the
 *   committed state. When the stamp differs, the view is built from the row alone, as in `renewLease`.
 *
 * One row per request. `requests` goes as one JSON parameter (group ids are arbitrary text). The
 * groups' rows and their members are looked up by `= ANY` of the batch's distinct group ids, an
 * index scan whatever the planner estimates of the JSON (`IN (SELECT ...)` let it hash-join a
 * sequential scan of every group in the database: test/batch/plans.pg.test.ts).
 */
export const renewLeases = (
  sql: Sql,
  requests: ReadonlyArray<RenewalRequest>,
  writer: string,
  now: string | null,
  timeoutMs: number
) => {
  // The statement's time, one fragment for every use.
  const t = at(sql, now)
  const json = JSON.stringify(requests.map((r) => ({
    member_id: r.memberId,
    group_id: r.groupId,
    ack: r.ack,
    lease_ms: r.leaseMs,
    stuck: r.stuck,
    slots: r.slots,
    seq: r.seq,
    ack_current: r.ackCurrent === true,
    ack_size: r.ackPlace?.size ?? null,
    ack_idx: r.ackPlace?.index ?? null
  })))
  // Only a batch with a slots-mode member reads the slots table (a modulo-mode member's role needs no
  // grant on it). Two sub-selects per request (each by its own index, holder and owner), joined to
  // nothing: a lateral join needs a nested loop, which `enable_nestloop = off` costed past every JIT
  // threshold (test/badinput/plannerMethods.pg.test.ts).
  const slotView = requests.some((r) => r.slots)
    ? sql`(SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_array(s.slot, s.generation, s.owner IS NOT DISTINCT FROM r.member_id)
                                   ORDER BY s.slot), '[]'::json)
             FROM modulo_group.slots s
            WHERE r.slots AND s.group_id = r.group_id AND s.holder = r.member_id) AS held,
          (SELECT coalesce(pg_catalog.json_agg(s.slot ORDER BY s.slot), '[]'::json)
             FROM modulo_group.slots s
            WHERE r.slots AND s.group_id = r.group_id AND s.owner = r.member_id AND s.holder IS DISTINCT FROM r.member_id) AS pending`
    : sql`'[]'::json AS held, '[]'::json AS pending`
  // A row a reap would count: its lease and grace ran out, or a held static row behind the epoch.
  const expiredRow = (x: "x" | "me") =>
    x === "x"
      ? sql`(x.lease_expires_at + x.rejoin_grace_ms::float8 * interval '1 millisecond' <= ${t}
             OR (x.instance_id IS NOT NULL AND x.lease_expires_at <= ${t} AND x.acked_epoch < g.epoch)
             OR (x.idx IS NOT NULL AND ${ahead(sql, "x")}))`
      : sql`(me.lease_expires_at + me.rejoin_grace_ms::float8 * interval '1 millisecond' <= ${t}
             OR (me.instance_id IS NOT NULL AND me.lease_expires_at <= ${t} AND me.acked_epoch < g.epoch)
             OR (me.idx IS NOT NULL AND ${ahead(sql, "me")}))`
  return sql<BatchRenewedRow>`
    WITH req AS MATERIALIZED (
      SELECT * FROM pg_catalog.json_to_recordset(${json}::json)
        AS r(member_id uuid, group_id text, ack bigint, lease_ms float8, stuck boolean, slots boolean, seq bigint,
             ack_current boolean, ack_size int4, ack_idx int4)
    ), bound AS MATERIALIZED (
      SELECT pg_catalog.set_config('lock_timeout', ${String(timeoutMs)}::text, true) AS lt
    ), lk AS MATERIALIZED (
      SELECT m.member_id, r.group_id, r.ack, r.lease_ms, r.stuck, r.seq, r.ack_current, r.ack_size, r.ack_idx
        FROM modulo_group.members m JOIN req r ON r.member_id = m.member_id
       WHERE (SELECT lt FROM bound) IS NOT NULL AND ${written(sql, "m.", writer)}
         -- The rows by their key, whatever join the planner picks (a hash join read every row of the
         -- table under enable_nestloop = off: test/batch/plans.pg.test.ts).
         AND m.member_id = ANY (ARRAY(SELECT member_id FROM req))
         FOR NO KEY UPDATE OF m SKIP LOCKED
    ), gids AS MATERIALIZED (
      SELECT ARRAY(SELECT DISTINCT group_id FROM req) AS ids
    ), snap AS MATERIALIZED (
      SELECT o.member_id, o.group_id, o.idx, o.acked_epoch, o.lease_expires_at, o.instance_id, o.rejoin_grace_ms,
             o.writer, o.heartbeat_at, o.lease_ms
        FROM modulo_group.members o WHERE o.group_id = ANY ((SELECT ids FROM gids)::text[])
    ), me AS (
      UPDATE modulo_group.members m
         SET lease_expires_at = ${renewedLease(sql, "m.", sql`${t} + r.lease_ms * interval '1 millisecond'`)}, lease_ms = r.lease_ms,
             heartbeat_at = ${t},
             acked_epoch = GREATEST(${saneAck(sql, "m.")}, ${placedAck(sql, sql`r.ack`, sql`r.ack_size`, sql`r.ack_idx`, "m.")},
                                    ${ackCurrentEpoch(sql, sql`r.ack_current`, sql`m.group_id`, sql`m.`)}),
             stopping_since = CASE WHEN r.stuck THEN coalesce(m.stopping_since, ${t}) END,
             renewal_seq = r.seq
        FROM lk r
       WHERE m.member_id = r.member_id AND m.group_id = r.group_id
         AND m.member_id = ANY (ARRAY(SELECT member_id FROM lk))
         AND m.lease_expires_at > ${t}
         -- Live when written too (\`renewLease\`): the rows are locked (\`lk\`, which waits for none).
         AND m.lease_expires_at > COALESCE(${now}::timestamptz, pg_catalog.clock_timestamp())
         AND m.released_at IS NULL
         AND ${inOrder(sql, sql`r.seq`, sql`m.`)}
      RETURNING m.member_id, m.group_id, m.idx, m.acked_epoch, m.assigned_epoch, m.assigned_size,
                m.lease_expires_at, m.instance_id, m.rejoin_grace_ms, m.heartbeat_at, m.lease_ms
    ), g AS (
      SELECT group_id, epoch, size, incarnation, slots FROM modulo_group.groups
       WHERE group_id = ANY ((SELECT ids FROM gids)::text[])
    ), x AS (
      SELECT member_id, group_id, idx, acked_epoch, lease_expires_at, instance_id, rejoin_grace_ms, heartbeat_at, lease_ms FROM me
      UNION ALL
      SELECT member_id, group_id, idx, acked_epoch, lease_expires_at, instance_id, rejoin_grace_ms, heartbeat_at, lease_ms FROM snap
       WHERE member_id NOT IN (SELECT member_id FROM me)
    ), agg AS (
      SELECT x.group_id,
             count(*) FILTER (WHERE x.idx IS NOT NULL) AS n,
             count(*) FILTER (WHERE ${unacked(sql, "x")}) AS unacked,
             count(*) FILTER (WHERE ${expiredRow("x")}) AS expired,
             pg_catalog.max(${leaseOf(sql, "x")}) FILTER (WHERE x.lease_expires_at > ${t}) AS longest
        FROM x JOIN g ON g.group_id = x.group_id
       GROUP BY x.group_id
    )
    SELECT r.member_id::text AS member_id,
           (me.member_id IS NULL AND lk.member_id IS NULL AND s.member_id IS NOT NULL AND ${written(sql, "s.", writer)}) AS busy,
           (me.member_id IS NOT NULL AND g.group_id IS NOT NULL AND me.idx IS NOT NULL
            -- An index that is not one of 0..N-1 of its own epoch (set by hand): rejoin, which reassigns.
            AND me.idx < CASE WHEN me.assigned_epoch >= g.epoch THEN me.assigned_size ELSE g.size END) AS ok,
           me.idx, me.acked_epoch AS acked,
           s.acked_epoch AS prev_acked,
           me.assigned_epoch, me.assigned_size, g.epoch, g.size, g.incarnation,
           agg.unacked - (CASE WHEN ${unacked(sql, "me")} THEN 1 ELSE 0 END) AS unacked,
           agg.expired - (CASE WHEN ${expiredRow("me")} THEN 1 ELSE 0 END) AS expired,
           agg.n - (CASE WHEN me.idx IS NOT NULL THEN 1 ELSE 0 END) + 1 AS rows,
           (extract(epoch FROM ${t}) OPERATOR(pg_catalog.*) 1000)::bigint AS clock_ms,
           (extract(epoch FROM agg.longest) OPERATOR(pg_catalog.*) 1000)::float8 AS longest_lease_ms,
           g.slots AS slots, ${slotView}
      FROM req r
      LEFT JOIN snap s ON s.member_id = r.member_id AND s.group_id = r.group_id
      LEFT JOIN lk ON lk.member_id = r.member_id
      LEFT JOIN me ON me.member_id = r.member_id
      LEFT JOIN g ON g.group_id = r.group_id
      LEFT JOIN agg ON agg.group_id = r.group_id`
}

/**
 * Wakes the group's listeners (`SELECT pg_notify`, since `NOTIFY` takes no bound parameters). Its
 * commit waits for any other transaction that notified and has not committed yet: `lock_timeout`
 * (`timeoutMs`, local to the statement's transaction, still in force at its commit) bounds that wait.
 */
export const notifyGroup = (sql: Sql, groupId: string, payload: string, timeoutMs: number) =>
  sql`SELECT pg_catalog.pg_notify(${channelFor(groupId)}::text, ${payload}::text)
        FROM (SELECT pg_catalog.set_config('lock_timeout', ${String(timeoutMs)}::text, true)) AS bound`

/**
 * A timestamp column as milliseconds since the epoch (float8), read as a number: node-postgres parses
 * timestamp text only in the ISO `DateStyle`, and under another (`German`, `SQL`, `Postgres`: a
 * database's or role's default) read such columns as null (an outsider's review: `status` failed on
 * `.toISOString()` of null). Every timestamp the library and the CLI read goes through this (or an
 * `extract(epoch ...)` of their own).
 */
export const epochMs = (sql: Sql, column: Statement.Fragment): Statement.Fragment =>
  sql`(extract(epoch FROM ${column}) OPERATOR(pg_catalog.*) 1000)::float8`

/** A time read by `epochMs` as a `Date` (null stays null). */
export const dateOf = (ms: number | string | null): Date | null => (ms === null ? null : new Date(Number(ms)))

/** A group row as stored (`changed_at` in milliseconds since the epoch: `epochMs`). */
export interface GroupRow {
  readonly group_id: string
  readonly epoch: string
  readonly size: number
  readonly changed_at: number
  readonly incarnation: string
  readonly slots: number | null
}

/** One group's row, if any. */
export const selectGroup = (sql: Sql, groupId: string) =>
  sql<GroupRow>`
    SELECT group_id, epoch, size, ${epochMs(sql, sql`changed_at`)} AS changed_at, incarnation, slots
      FROM modulo_group.groups WHERE group_id = ${groupId}::text`

/** Every group's row, by id. */
export const selectGroups = (sql: Sql) =>
  sql<GroupRow>`
    SELECT group_id, epoch, size, ${epochMs(sql, sql`changed_at`)} AS changed_at, incarnation, slots
      FROM modulo_group.groups ORDER BY group_id`

/** A member row as `selectMembers` reads it, with its heartbeat's age and its lease's time left (times: `epochMs`). */
export interface MemberRow {
  readonly member_id: string
  readonly name: string
  readonly host: string
  readonly pid: number
  readonly idx: number | null
  readonly acked_epoch: string
  readonly joined_at: number
  readonly stopping_since: number | null
  readonly heartbeat_age_ms: string
  readonly lease_left_ms: string
  readonly instance_id: string | null
  readonly released_at: number | null
  /** Static rows: milliseconds until reaping may delete the row (lease and rejoin grace). */
  readonly grace_left_ms: string | null
}

/** A group's members, by index (members without one last, in join order). */
export const selectMembers = (sql: Sql, groupId: string, now: string | null) =>
  sql<MemberRow>`
    SELECT member_id, name, host, pid, idx, acked_epoch, ${epochMs(sql, sql`joined_at`)} AS joined_at,
           ${epochMs(sql, sql`stopping_since`)} AS stopping_since, instance_id, ${epochMs(sql, sql`released_at`)} AS released_at,
           (extract(epoch FROM ${at(sql, now)} - heartbeat_at) OPERATOR(pg_catalog.*) 1000)::bigint AS heartbeat_age_ms,
           (extract(epoch FROM lease_expires_at - ${at(sql, now)}) OPERATOR(pg_catalog.*) 1000)::bigint AS lease_left_ms,
           CASE WHEN instance_id IS NOT NULL
                THEN (extract(epoch FROM lease_expires_at + rejoin_grace_ms::float8 * interval '1 millisecond'
                                         - ${at(sql, now)}) OPERATOR(pg_catalog.*) 1000)::bigint END AS grace_left_ms
      FROM modulo_group.members WHERE group_id = ${groupId}::text
     ORDER BY idx NULLS LAST, join_seq`

// ---------------------------------------------------------------------------------------------------
// Waiters for an instance id (migration 0006), for `status` only: nothing in the protocol reads them.
// Single statements outside any transaction and lock of the protocol's.

/**
 * A waiting member's row: written at each busy join (its first one sets `since`), with its lease
 * length (at most an hour) as its freshness window. In the same statement, the group's waiter rows
 * not seen for twice their window go (rows of waiters that crashed).
 */
export const upsertWaiter = (
  sql: Sql,
  groupId: string,
  member: { readonly memberId: string; readonly host: string; readonly pid: number; readonly name: string },
  instanceId: string,
  leaseMs: number,
  now: string | null,
  timeoutMs: number
) =>
  sql`
    WITH stale AS (
      DELETE FROM modulo_group.instance_waiters
       WHERE group_id = ${groupId}::text AND member_id <> ${member.memberId}::uuid
         AND seen_at + (2 * lease_ms)::float8 * interval '1 millisecond' <= ${at(sql, now)}
    )
    INSERT INTO modulo_group.instance_waiters
      (member_id, group_id, instance_id, host, pid, name, since, seen_at, lease_ms)
    VALUES (${member.memberId}::uuid, ${groupId}::text, ${instanceId}::text, ${member.host}::text, ${member.pid}::int4, ${member.name}::text,
            ${at(sql, now)}, ${at(sql, now)},
            -- Its server-side bound, set before any row lock is waited for (the values come first; the
            -- DELETE above runs after the INSERT): a row held by another session ends the statement
            -- at the timeout on the server, not by a cancel from the client.
            LEAST(GREATEST(${leaseMs}::bigint, 1), 3600000)::integer
              + 0 * pg_catalog.length(pg_catalog.set_config('lock_timeout', ${String(timeoutMs)}::text, true)))
    ON CONFLICT (member_id) DO UPDATE
       SET group_id = EXCLUDED.group_id, instance_id = EXCLUDED.instance_id, host = EXCLUDED.host,
           pid = EXCLUDED.pid, name = EXCLUDED.name, seen_at = EXCLUDED.seen_at, lease_ms = EXCLUDED.lease_ms,
           since = CASE WHEN modulo_group.instance_waiters.group_id = EXCLUDED.group_id
                         AND modulo_group.instance_waiters.instance_id = EXCLUDED.instance_id
                        THEN modulo_group.instance_waiters.since ELSE EXCLUDED.since END`

/** Deletes this member's waiter row (it took the instance over, or stopped waiting). */
export const deleteWaiter = (sql: Sql, memberId: string, timeoutMs: number) =>
  sql`DELETE FROM modulo_group.instance_waiters
       WHERE member_id = ${memberId}::uuid
         AND ${lockBounded(sql, timeoutMs)}`

/** A waiter row as `selectWaiters` (and `status`) read it. */
export interface WaiterRow {
  readonly member_id: string
  readonly instance_id: string
  readonly name: string
  readonly host: string
  readonly pid: number
  readonly waiting_ms: string
  readonly seen_ago_ms: string
}

/**
 * The group's waiters seen within their freshness window (`seen_at + lease_ms` ahead) that hold no
 * member row (one that took over and has not deleted its waiter row yet is a member), oldest first.
 */
export const selectWaiters = (sql: Sql, groupId: string, now: string | null) =>
  sql<WaiterRow>`
    SELECT w.member_id, w.instance_id, w.name, w.host, w.pid,
           (extract(epoch FROM ${at(sql, now)} - w.since) OPERATOR(pg_catalog.*) 1000)::bigint AS waiting_ms,
           (extract(epoch FROM ${at(sql, now)} - w.seen_at) OPERATOR(pg_catalog.*) 1000)::bigint AS seen_ago_ms
      FROM modulo_group.instance_waiters w
     WHERE w.group_id = ${groupId}::text
       AND w.seen_at + w.lease_ms::float8 * interval '1 millisecond' > ${at(sql, now)}
       -- (The group's waiters' rows by their key, whatever join the planner picks: test/batch/plans.pg.test.ts.)
       AND NOT EXISTS (SELECT 1 FROM modulo_group.members m
                        WHERE m.member_id = w.member_id
                          AND m.member_id = ANY (ARRAY(SELECT v.member_id FROM modulo_group.instance_waiters v
                                                        WHERE v.group_id = ${groupId}::text)))
     ORDER BY w.instance_id, w.since, w.member_id`

// ---------------------------------------------------------------------------------------------------
// The fence (`Fenced.fencedWith`): fenceBegin, fenceQueue, fenceGroup, fenceMember, the app's body,
// fenceEnd, all in one READ COMMITTED transaction (or a savepoint of the app's).

/** What `fenceBegin` read and set. */
export interface FenceBegun {
  readonly old_st: string
  readonly old_idle: string
  readonly old_tx: string | null
  readonly old_lock: string
  /** The transaction's isolation level (`transaction_isolation`): an app's, when nested. */
  readonly iso: string
  readonly st: string
  readonly idle: string
  readonly tx: string | null
  readonly xact: string
}

/**
 * A setting of the library's own, local to the transaction: a chain of the fences whose locks stand,
 * each as `/<id>:<stage>` (`/a:3/b:1`). Every statement that takes a lock of a fence stamps it: the
 * first appends `/<id>:1`, each later one moves the fence's own stamp from the stage before to its
 * own, and only from there (`stampMarker`); the fence checks each stamp as it comes back, and its end
 * (`fenceEnd`) checks the last and only then puts back what the first found (a nested fence's end,
 * for the outer fence). A `ROLLBACK TO SAVEPOINT` that undoes one of a fence's locks (of the fence's
 * own savepoint, of an app's savepoint from before it, or of a concurrent block's or transaction's
 * savepoint taken between the fence's statements: @effect/sql names savepoints by depth) undoes that
 * statement's stamp and every later one: the next statement or the end finds the stamp behind and the
 * fence fails (`FenceBroken`). No other fence's end can put a stamp of this one back: an end restores
 * only the chain its own first stamp found, and only if its own last stamp is still there
 * (adversarial reviews: a rollback after the fence's start with tight app timeouts; a concurrent
 * rollback between two of the fence's locks; a nested fence's end restoring an outer stamp whose
 * locks a concurrent rollback had undone).
 */
export const fenceMarkerSetting = "modulo_group.fence"

/**
 * A setting of the library's own, local to the transaction: every fence target checked in it (JSON,
 * one object per target, `targetEntries`: `m` member, `g` group, `e` epoch and `i` index, or in slots
 * mode `s` slot and `n` generation of one of its slots), appended by `fenceMember` and
 * `fenceSlotMember`. A `ROLLBACK TO SAVEPOINT` undoes what was appended after the savepoint, as it
 * undoes that fence's writes. The last statement (`fenceEnd`) of a fence of its own transaction queues a commit-time check for every target
 * in it: such a fence runs `SET CONSTRAINTS ALL IMMEDIATE` first (`fenceDeferredNow`), which runs the
 * checks of the blocks nested in its body early, and its `COMMIT` then checked its own target only (a
 * block of another group committed 400 ms past that group's lease: an adversarial review). Kept in
 * the transaction, not in the process: a nested block run through an app's wrapper of the connection,
 * or interrupted after its savepoint was kept, is in it all the same (a review of the first fix).
 */
export const fencedTargetsSetting = "modulo_group.fenced"

/** `fencedTargetsSetting` as jsonb (an empty array when unset). */
const fencedTargets = (sql: Sql) =>
  sql`(coalesce(NULLIF(pg_catalog.current_setting(${fencedTargetsSetting}::text, true), ''), '[]'))::jsonb`

/**
 * Appends `entries` (a jsonb array) to `fencedTargetsSetting`, unless they are all in it already (a
 * loop of fenced calls of one target in one transaction records it once).
 */
const appendFencedTargets = (sql: Sql, entries: Statement.Fragment) =>
  sql`pg_catalog.set_config(${fencedTargetsSetting}::text,
        (SELECT CASE WHEN f.v OPERATOR(pg_catalog.@>) e.v THEN f.v ELSE f.v OPERATOR(pg_catalog.||) e.v END
           FROM (SELECT ${fencedTargets(sql)} AS v) f, (SELECT ${entries} AS v) e)::text, true)`

/**
 * `target`'s entry in `fencedTargetsSetting` (a jsonb array of one): in slots mode one of its slots
 * stands for all (the first named): what a check queued again must see is the member's lease, and
 * every slot the fence named stays locked (`FOR KEY SHARE` on its row, which a release, a retake and
 * a hand-over wait for) until the transaction ends. One entry per slot made the record's containment
 * checks quadratic: a fence of 16,384 slots spent tens of seconds in them (a review).
 */
const targetEntries = (sql: Sql, target: FenceTarget): Statement.Fragment => {
  const first = target.slots?.[0]
  return first === undefined
    ? sql`pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('m', ${target.memberId}::text, 'g', ${target.groupId}::text,
                                         'e', ${target.epoch}::int8, 'i', ${target.index}::int4))`
    : sql`pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('m', ${target.memberId}::text, 'g', ${target.groupId}::text,
                                         's', ${first.slot}::int4, 'n', ${first.generation}::int8))`
}

/** A fence's stamp at `stage` (`fenceMarkerSetting`). */
export const markerStamp = (id: string, stage: number) => `/${id}:${stage}`

/**
 * Stamps the chain (`fenceMarkerSetting`) with fence `id` at `stage` and returns it: stage 1 appends
 * the stamp; a later stage replaces the stamp of the stage before, and leaves the chain as it is when
 * that is not its end (the caller then refuses). Idempotent within a statement of several rows.
 */
const stampMarker = (sql: Sql, id: string, stage: number) => {
  const stamp = markerStamp(id, stage)
  const current = sql`coalesce(pg_catalog.current_setting(${fenceMarkerSetting}::text, true), '')`
  if (stage === 1) {
    return sql`pg_catalog.set_config(${fenceMarkerSetting}::text,
           CASE WHEN pg_catalog.right(${current}, ${stamp.length}::int4) = ${stamp}::text THEN ${current} ELSE ${current} || ${stamp}::text END, true)`
  }
  const previous = markerStamp(id, stage - 1)
  return sql`pg_catalog.set_config(${fenceMarkerSetting}::text,
           CASE WHEN pg_catalog.right(${current}, ${stamp.length}::int4) = ${stamp}::text THEN ${current}
                WHEN pg_catalog.right(${current}, ${previous.length}::int4) = ${previous}::text
                THEN pg_catalog.left(${current}, pg_catalog.length(${current}) - ${previous.length}::int4) || ${stamp}::text
                ELSE ${current} END, true)`
}

/**
 * The fence's first statement: sets the server-side backstop (statement_timeout,
 * idle_in_transaction_session_timeout and, on PostgreSQL 17+, transaction_timeout, each `backstopMs`,
 * local to the transaction), and `lock_timeout` to 0: the fence's lock waits, and the body's, are
 * bounded by its `timeout` and that backstop, not by a session's default `lock_timeout` (an outsider's
 * review: a database's `lock_timeout` of 50 ms failed a fenced call waiting 400 ms behind a change,
 * within its `timeout` of 3 s). Returns the values it replaced (read first: MATERIALIZED; a nested
 * block's `fenceEnd` restores them), the values set, and the transaction's id (an app COMMIT or
 * ROLLBACK inside the body changes it).
 */
export const fenceBegin = (
  sql: Sql,
  backstopMs: string,
  /** A fence of its own transaction: JIT off for the rest of it (`noJit`; inside an app's transaction the app's setting stays). */
  ownTransaction: boolean
) =>
  sql<FenceBegun>`
    WITH old AS MATERIALIZED (
      SELECT pg_catalog.current_setting('statement_timeout') AS old_st,
             pg_catalog.current_setting('idle_in_transaction_session_timeout') AS old_idle,
             pg_catalog.current_setting('transaction_timeout', true) AS old_tx,
             pg_catalog.current_setting('lock_timeout') AS old_lock)
    SELECT old.old_st, old.old_idle, old.old_tx, old.old_lock,
           pg_catalog.set_config('statement_timeout', ${backstopMs}::text, true) AS st,
           pg_catalog.set_config('idle_in_transaction_session_timeout', ${backstopMs}::text, true) AS idle,
           pg_catalog.set_config('lock_timeout', '0', true) AS lock,
           pg_catalog.current_setting('transaction_isolation') AS iso,
           CASE WHEN old.old_tx IS NOT NULL THEN pg_catalog.set_config('transaction_timeout', ${backstopMs}::text, true) END AS tx,
           pg_catalog.txid_current()::text AS xact${ownTransaction ? sql`, ${noJit(sql)} AS jit` : sql``}
      FROM old`

/**
 * Fair queueing: the group's advisory lock, shared, waits behind a change already waiting for it. A
 * change that comes later cannot overtake it: `tryLockGroup` fails while anyone waits for the lock
 * (PostgreSQL grants no conflicting lock past a waiter), and then waits behind it (`lockGroup`).
 */
export const fenceQueue = (sql: Sql, groupId: string, marker: string) =>
  sql<{ marker: string }>`SELECT pg_catalog.pg_advisory_xact_lock_shared(${advisoryLockClass}::int4, pg_catalog.hashtext(${groupId}::text)), ${stampMarker(sql, marker, 1)} AS marker`

/**
 * The group's epoch and size, FOR SHARE: no change (every change bumps the epoch there, after
 * taking the row FOR UPDATE) can happen until the transaction ends.
 */
export const fenceGroup = (sql: Sql, groupId: string, marker: string) =>
  sql<{ epoch: string; size: number; marker: string }>`
    SELECT epoch, size, ${stampMarker(sql, marker, 2)} AS marker FROM modulo_group.groups WHERE group_id = ${groupId}::text FOR SHARE`

/**
 * The member's index and lease on `pg_catalog.clock_timestamp()`, FOR KEY SHARE (blocks its DELETE and index
 * changes, not its own heartbeat); also inserts a `fence_checks` row, which queues the commit-time
 * check now, so even a COMMIT sent by the body itself is checked.
 */
export const fenceMember = (sql: Sql, target: FenceTarget, marker: string) =>
  sql<{ idx: number | null; live: boolean; lease_left_ms: string; marker: string }>`
    WITH queued AS (
      INSERT INTO modulo_group.fence_checks (member_id, group_id, epoch, idx)
      VALUES (${target.memberId}::uuid, ${target.groupId}::text, ${target.epoch}::int8, ${target.index}::int4))
    SELECT idx, lease_expires_at > pg_catalog.clock_timestamp() AS live,
           ${stampMarker(sql, marker, 3)} AS marker,
           -- Held until the transaction ends: a busy leave of this member does not end its lease
           -- meanwhile (\`memberLockClass\`, \`expireLease\`).
           pg_catalog.pg_advisory_xact_lock_shared(${memberLockClass}::int4, pg_catalog.hashtext(${target.memberId}::uuid::text)) AS member_lock,
           ${appendFencedTargets(sql, targetEntries(sql, target))} AS fenced,
           (extract(epoch FROM lease_expires_at - pg_catalog.clock_timestamp()) OPERATOR(pg_catalog.*) 1000)::bigint AS lease_left_ms
      FROM modulo_group.members
     WHERE member_id = ${target.memberId}::uuid AND group_id = ${target.groupId}::text
       FOR KEY SHARE`

/**
 * Slots mode, instead of `fenceMember`: the member's lease on `pg_catalog.clock_timestamp()`, FOR KEY SHARE
 * (blocks its DELETE: a leave, a reap), and one `fence_checks` row naming every slot (`slots` and
 * `generations`; epoch and index NULL), which queues the commit-time check of the lease and of each
 * slot's holder and generation, in one statement (migration 0018: one row per slot made a COMMIT's
 * checks quadratic in the slots).
 */
export const fenceSlotMember = (sql: Sql, target: FenceTarget, slots: SlotGenerations, marker: string) =>
  sql<{ live: boolean; lease_left_ms: string; marker: string }>`
    WITH queued AS (
      INSERT INTO modulo_group.fence_checks (member_id, group_id, epoch, idx, slots, generations)
      VALUES (${target.memberId}::uuid, ${target.groupId}::text, NULL, NULL, ${slotArray(sql, slots)}, ${generationArray(sql, slots)}))
    SELECT lease_expires_at > pg_catalog.clock_timestamp() AS live,
           (extract(epoch FROM lease_expires_at - pg_catalog.clock_timestamp()) OPERATOR(pg_catalog.*) 1000)::bigint AS lease_left_ms
           , ${stampMarker(sql, marker, 1)} AS marker
           , ${appendFencedTargets(sql, targetEntries(sql, { ...target, slots }))} AS fenced
           -- Held until the transaction ends: a renewal of this member does not cut its lease back
           -- meanwhile (\`memberLockClass\`, \`renewedLease\`; a review: a slots member's lease ended
           -- during its fenced COMMIT by a renewal with a shorter lease).
           , pg_catalog.pg_advisory_xact_lock_shared(${memberLockClass}::int4, pg_catalog.hashtext(${target.memberId}::uuid::text)) AS member_lock
      FROM modulo_group.members
     WHERE member_id = ${target.memberId}::uuid AND group_id = ${target.groupId}::text
       FOR KEY SHARE`

/**
 * Slots mode: each slot's holder and generation, FOR KEY SHARE on its row: a release or a retake of
 * it (a generation bump, a key update) and a change that hands it over wait until this transaction
 * ends; a change that only retargets its owner does not.
 */
export const fenceSlots = (sql: Sql, groupId: string, slots: ReadonlyArray<number>, marker: string) =>
  sql<{ slot: number; holder: string | null; generation: string; marker: string }>`
    SELECT slot, holder, generation, ${stampMarker(sql, marker, 2)} AS marker FROM modulo_group.slots
     WHERE group_id = ${groupId}::text AND slot = ANY(${`{${slots.map(String).join(",")}}`}::int[])
     ORDER BY slot
       FOR KEY SHARE`

/** What `fenceEnd` read. */
export interface FenceEnded {
  readonly xact: string
  /** `modulo_group.fence` when the body ended (the fence's own value unless the body rolled back past its start). */
  readonly marker: string | null
  readonly st: string
  readonly idle: string
  readonly tx: string | null
  readonly replication: string
  /** Whether `fencedTargetsSetting` still records this fence's target (the body did not reset it). */
  readonly recorded: boolean
  /**
   * Cursors `WITH HOLD` declared in this transaction (`pg_cursors`, created since it began): PostgreSQL
   * runs their queries to the end at `COMMIT`, after every deferred check, the fence's included.
   */
  readonly held_cursors: number
  readonly live: boolean | null
  readonly lease_left_ms: string | null
  /**
   * The rows of the members `fencedTargetsSetting` records (this fence's and the blocks nested in its
   * body), as a JSON array of `[member id, group id, joined_at in µs since the epoch]` (the row's
   * identity: a rejoin inserts a new row, a static takeover sets it anew), and the least lease any of
   * them has left (ms; null if none has a row).
   */
  readonly recorded_members: string
  readonly recorded_left_ms: string | null
}

/**
 * A time setting as `current_setting` shows it ("0", "500ms", "7s", "2min", "1h", "1d") in
 * milliseconds; undefined for any other form (or a negative value).
 */
export const settingMs = (value: string): number | undefined => {
  const m = /^\s*(\d+)\s*(ms|s|min|h|d)?\s*$/.exec(value)
  if (m === null) return undefined
  const n = Number(m[1])
  const unit = m[2] ?? "ms"
  return n * (unit === "ms" ? 1 : unit === "s" ? 1_000 : unit === "min" ? 60_000 : unit === "h" ? 3_600_000 : 86_400_000)
}

/**
 * Whether a time setting (as `current_setting` shows it) bounds a wait at least as tightly as
 * `boundMs`: non-zero and at most `boundMs` (false for a form `settingMs` does not read).
 */
export const boundsWithin = (value: string, boundMs: number): boolean => {
  const ms = settingMs(value)
  return ms !== undefined && ms > 0 && ms <= boundMs
}

/**
 * What a timeout the app had before a nested fence becomes for the rest of the app's transaction:
 * the app's own value when it bounds at least as tightly as `boundMs` (`boundsWithin`), otherwise
 * `boundMs`. The fence's locks stay held until the app's transaction ends, and every change of the
 * group waits for them: a client that hangs after the block (or a statement that does) must not hold
 * them for longer than this bound.
 */
const boundedAfterFence = (app: string, boundMs: string): string => (boundsWithin(app, Number(boundMs)) ? app : boundMs)

/**
 * After a fence's own transaction committed, when its `COMMIT` took as long as the least lease of the
 * members fenced in it had left at the fence's last check: each such member's row (`members`: member
 * id, group id and `joined_at` in µs, as `fenceEnd` read them), if it is still that row (the same
 * `joined_at`), with whether its lease is live now on `pg_catalog.clock_timestamp()`, and how long ago
 * it ended if not, and whether its lease is still the one `fenceEnd` recorded (`same_lease`); a member
 * whose row is gone or another (a rejoin, a static takeover) is not returned. A renewal renews only a
 * lease still running when it has the row locked (`renewLease`; one that started before the lease's end
 * and reached the row after it used to revive it, test/safety/lateRenewal.pg.test.ts), but it commits
 * later, possibly after the `COMMIT` landed: so only a lease of the same row, live now and not renewed
 * since, was live when the `COMMIT` landed (test/fenced/renewalUnreadReply.pg.test.ts). A member recorded
 * twice is returned once, its not-renewed-since false if either record says so. Outside any
 * transaction: every operator named in `pg_catalog`.
 */
export const leasesAfterCommit = (sql: Sql, members: ReadonlyArray<readonly [string, string, string, string | null]>) =>
  sql<{ member_id: string; group_id: string; live: boolean; past_ms: string; same_lease: boolean }>`
    SELECT DISTINCT ON (m.member_id) m.member_id::text AS member_id, m.group_id,
           m.lease_expires_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp() AS live,
           (extract(epoch FROM pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) m.lease_expires_at)
              OPERATOR(pg_catalog.*) 1000)::bigint AS past_ms,
           -- The lease as the fence's last statement read it: not renewed since. A renewal checks the
           -- lease before it commits, and can commit after the COMMIT landed, the lease ended in
           -- between (its reply written first, to a client that does not read: a review of de8e019).
           (CASE WHEN pg_catalog.isfinite(m.lease_expires_at)
                 THEN (extract(epoch FROM m.lease_expires_at) OPERATOR(pg_catalog.*) 1000000)::int8 END)
             IS NOT DISTINCT FROM (e.value OPERATOR(pg_catalog.->>) 3)::int8 AS same_lease
      FROM modulo_group.members m
      JOIN pg_catalog.jsonb_array_elements(${JSON.stringify(members)}::jsonb) e
        ON m.member_id OPERATOR(pg_catalog.=) (e.value OPERATOR(pg_catalog.->>) 0)::uuid
       AND m.group_id OPERATOR(pg_catalog.=) (e.value OPERATOR(pg_catalog.->>) 1)
       AND (extract(epoch FROM m.joined_at) OPERATOR(pg_catalog.*) 1000000)::int8
           OPERATOR(pg_catalog.=) (e.value OPERATOR(pg_catalog.->>) 2)::int8
     ORDER BY m.member_id, same_lease`

/**
 * A fence of its own transaction, after the body and before its last statement: runs every deferred
 * check and trigger the body queued (the app's `DEFERRABLE INITIALLY DEFERRED` foreign keys and
 * constraint triggers, and what those queue in turn) now, under the fence's timer, and the fence's
 * own first commit-time check with them. PostgreSQL runs deferred events at `COMMIT` in the order they
 * were queued, later ones (an app's trigger cascading into a deferred foreign key) at the end: such a
 * check, waiting for a row lock after the fence's check at `COMMIT` had passed, held the `COMMIT` open
 * past the lease's end, and it committed then (an adversarial review: 0.7-1.3 s past the lease). So
 * at `COMMIT` only the check `fenceEnd` queues is left. Not inside an app's transaction: the app's
 * later statements there must keep their own constraint modes (docs/fencing.md, "Nesting").
 */
export const fenceDeferredNow = (sql: Sql) => sql`SET CONSTRAINTS ALL IMMEDIATE`

/**
 * The fence's last statement, after the body: the transaction's id, the backstop settings and
 * `session_replication_role` (did the body end the transaction, remove the backstop or disable
 * triggers?), the lease again on `pg_catalog.clock_timestamp()`, and a second `fence_checks` row (only if still
 * in the fence's transaction: it queues the commit-time check again even after the body's
 * `SET CONSTRAINTS ALL IMMEDIATE`). Inside an app's transaction (`nestedBoundMs`, the backstop), it
 * also sets the timeouts for the rest of the app's transaction, which holds the fence's locks until it
 * ends: `statement_timeout` and `idle_in_transaction_session_timeout` each to the app's value from
 * before `fenceBegin` if that is non-zero and at most the backstop, else to the backstop
 * (`boundedAfterFence`); `transaction_timeout` (PostgreSQL 17+) and `lock_timeout` back to the app's
 * values.
 */
export const fenceEnd = (
  sql: Sql,
  target: FenceTarget,
  begun: FenceBegun,
  nestedBoundMs: string | undefined,
  /** The chain the fence's last lock left (`fenceMarkerSetting`), and what its first found there. */
  marker: { readonly chain: string; readonly before: string }
) => {
  // Nested in an app's transaction (no `SET CONSTRAINTS ALL IMMEDIATE`: no check has run early), its
  // own target (slots mode: one row naming every slot). Of its own transaction, every target recorded
  // in it (`fencedTargetsSetting`: its own, and the blocks nested in its body whose savepoints stand),
  // each once (a slots-mode fence by one of its slots: the lease is what moves, its slot rows stay
  // locked), its own last: PostgreSQL runs the checks at COMMIT in the order queued, and every check
  // after a lease's last check is time before the COMMIT lands (reviews: the 3,000 slots of a nested
  // block queued again one by one after the outer target, or of the outer fence itself after a nested
  // one, committed 0.7-1.4 s past a lease, when each check also scanned the transaction's rows: until
  // migration 0018). Its own is in the record unless the body reset it (`recorded`: then the fence
  // fails before COMMIT).
  const own = target.slots === undefined
    ? sql`SELECT ${target.memberId}::uuid, ${target.groupId}::text, ${target.epoch}::int8, ${target.index}::int4, NULL::int4[], NULL::int8[]
        FROM now WHERE now.xact = ${begun.xact}::text`
    : sql`SELECT ${target.memberId}::uuid, ${target.groupId}::text, NULL::int8, NULL::int4, ${slotArray(sql, target.slots)}, ${generationArray(sql, target.slots)}
        FROM now WHERE now.xact = ${begun.xact}::text`
  const queue = nestedBoundMs !== undefined
    ? sql`INSERT INTO modulo_group.fence_checks (member_id, group_id, epoch, idx, slots, generations) ${own}`
    : sql`INSERT INTO modulo_group.fence_checks (member_id, group_id, epoch, idx, slot, generation)
      SELECT t.m, t.g, t.e, t.i, t.s, t.n
        FROM ROWS FROM (pg_catalog.jsonb_to_recordset((SELECT now.fenced FROM now)) AS (m uuid, g text, e int8, i int4, s int4, n int8))
                  WITH ORDINALITY AS t(m, g, e, i, s, n, o)
       WHERE (SELECT now.xact FROM now) = ${begun.xact}::text
       ORDER BY (t.m OPERATOR(pg_catalog.=) ${target.memberId}::uuid AND t.g OPERATOR(pg_catalog.=) ${target.groupId}::text), t.o`
  const restoreOld = nestedBoundMs !== undefined
    ? sql`, pg_catalog.set_config('statement_timeout', ${boundedAfterFence(begun.old_st, nestedBoundMs)}::text, true) AS restored_st,
            pg_catalog.set_config('idle_in_transaction_session_timeout', ${boundedAfterFence(begun.old_idle, nestedBoundMs)}::text, true) AS restored_idle,
            CASE WHEN ${begun.old_tx}::text IS NOT NULL
                 THEN pg_catalog.set_config('transaction_timeout', ${begun.old_tx}::text, true) END AS restored_tx,
            pg_catalog.set_config('lock_timeout', ${begun.old_lock}::text, true) AS restored_lock,
            CASE WHEN now.marker = ${marker.chain}::text
                 THEN pg_catalog.set_config(${fenceMarkerSetting}::text, ${marker.before}::text, true) END AS restored_marker`
    : sql``
  // Nothing joined (the member's row and the record read as sub-selects): no join needs a nested
  // loop, so the plan's cost stays what it is under `enable_nestloop = off` (a review: there the
  // statement was costed past every JIT threshold and compiled at every fence, 0.3 s of the server's
  // CPU; test/badinput/plannerMethods.pg.test.ts). The recorded members' rows are found by their key
  // first: the semi-join alone read every row of the table there (test/batch/plans.pg.test.ts).
  const recordedIds = sql`ARRAY(SELECT (e.value OPERATOR(pg_catalog.->>) 'm')::uuid
                                  FROM pg_catalog.jsonb_array_elements((SELECT now.fenced FROM now)) e)`
  return sql<FenceEnded>`
    WITH now AS MATERIALIZED (
      SELECT pg_catalog.txid_current()::text AS xact,
             pg_catalog.current_setting(${fenceMarkerSetting}::text, true) AS marker,
             pg_catalog.current_setting('statement_timeout') AS st,
             pg_catalog.current_setting('idle_in_transaction_session_timeout') AS idle,
             pg_catalog.current_setting('transaction_timeout', true) AS tx,
             pg_catalog.current_setting('session_replication_role') AS replication,
             ${fencedTargets(sql)} AS fenced),
    queued AS (${queue})
    SELECT now.xact, now.marker, now.st, now.idle, now.tx, now.replication,
           now.fenced OPERATOR(pg_catalog.@>) ${targetEntries(sql, target)} AS recorded,
           (SELECT pg_catalog.count(*) FROM pg_catalog.pg_cursors c
             WHERE c.is_holdable AND c.creation_time OPERATOR(pg_catalog.>=) pg_catalog.now())::int4 AS held_cursors,
           (SELECT m.lease_expires_at > pg_catalog.clock_timestamp()
              FROM modulo_group.members m WHERE m.member_id = ${target.memberId}::uuid) AS live,
           (SELECT (extract(epoch FROM m.lease_expires_at - pg_catalog.clock_timestamp()) OPERATOR(pg_catalog.*) 1000)::bigint
              FROM modulo_group.members m WHERE m.member_id = ${target.memberId}::uuid) AS lease_left_ms,
           (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(
                     r.member_id::text, r.group_id,
                     ((extract(epoch FROM r.joined_at) OPERATOR(pg_catalog.*) 1000000)::int8)::text,
                     CASE WHEN pg_catalog.isfinite(r.lease_expires_at)
                          THEN ((extract(epoch FROM r.lease_expires_at) OPERATOR(pg_catalog.*) 1000000)::int8)::text END)), '[]'::jsonb)::text
              FROM modulo_group.members r
             WHERE r.member_id OPERATOR(pg_catalog.=) ANY (${recordedIds})
               AND EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(now.fenced) e
                            WHERE r.member_id OPERATOR(pg_catalog.=) (e.value OPERATOR(pg_catalog.->>) 'm')::uuid
                              AND r.group_id OPERATOR(pg_catalog.=) (e.value OPERATOR(pg_catalog.->>) 'g'))) AS recorded_members,
           (SELECT pg_catalog.min((extract(epoch FROM r.lease_expires_at OPERATOR(pg_catalog.-) pg_catalog.clock_timestamp())
                                     OPERATOR(pg_catalog.*) 1000)::bigint)
              FROM modulo_group.members r
             WHERE r.member_id OPERATOR(pg_catalog.=) ANY (${recordedIds})
               AND EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(now.fenced) e
                            WHERE r.member_id OPERATOR(pg_catalog.=) (e.value OPERATOR(pg_catalog.->>) 'm')::uuid
                              AND r.group_id OPERATOR(pg_catalog.=) (e.value OPERATOR(pg_catalog.->>) 'g'))) AS recorded_left_ms
           ${restoreOld}
      FROM now`
}

/**
 * The schemas of the session's search path (besides pg_catalog) in which every role may create objects
 * (PUBLIC holds CREATE: `public` on a database created before PostgreSQL 15, or upgraded from one).
 * A function or operator planted there runs in the members' statements wherever PostgreSQL matches its
 * argument types more exactly than pg_catalog's; the store warns of them as it starts.
 */
export const selectOpenSchemas = (sql: Sql) =>
  sql<{ schema: string }>`
    SELECT n.nspname AS schema
      FROM pg_catalog.pg_namespace n
     WHERE n.nspname = ANY (pg_catalog.current_schemas(false)) AND n.nspname <> 'pg_catalog'
       AND EXISTS (SELECT 1 FROM pg_catalog.aclexplode(n.nspacl) a WHERE a.grantee = 0::oid AND a.privilege_type = 'CREATE')
     ORDER BY n.nspname`

/**
 * The session's settings a store checks as it starts (`PgMembershipStore.prepare`):
 * `session_replication_role` (under `replica`, a superuser's default for the database or the role, or
 * in the URL's options, PostgreSQL fires no ordinary trigger and no constraint's trigger, so the
 * database's own checks of the schema, the deferrable `UNIQUE (group_id, idx)`, the foreign keys, the
 * fence's commit-time check, do not run), the planner's methods turned off (`enable_*` below their
 * default), and whether JIT is on.
 */
export const selectSessionSettings = (sql: Sql) =>
  sql<{ role: string; disabled: ReadonlyArray<string>; jit: boolean; jit_above_cost: number }>`
    SELECT pg_catalog.current_setting('session_replication_role') AS role,
           ARRAY(SELECT s.name::text FROM pg_catalog.pg_settings s
                  WHERE s.name LIKE 'enable\_%' AND s.vartype = 'bool' AND s.boot_val = 'on' AND s.setting = 'off'
                  ORDER BY s.name) AS disabled,
           pg_catalog.current_setting('jit') = 'on' AND pg_catalog.pg_jit_available() AS jit,
           pg_catalog.current_setting('jit_above_cost')::float8 AS jit_above_cost`


// ---------------------------------------------------------------------------------------------------
// Migrations (`Migrations.run/check/repair`).

/** The highest migration recorded (null when none). */
export const selectInstalledVersion = (sql: Sql) =>
  sql<{ version: number | null }>`
    SELECT pg_catalog.max(version)::int AS version FROM modulo_group.schema_migrations`

/**
 * Every table of the schema with its columns (a row with a null column for a table without any),
 * which also says whether the migrations table exists. From pg_catalog, which every role can read
 * (`information_schema` hides tables a role has no privilege on); a scan, not to_regclass(): a
 * backend's catalog cache can miss a table that another transaction created while this one waited
 * on the migration lock.
 */
export const selectSchemaColumns = (sql: Sql) =>
  sql<{
    table_name: string
    column_name: string | null
    trigger_name: string | null
    trigger_always: boolean | null
    disabled_constraint: string | null
  }>`
    SELECT c.relname AS table_name, a.attname AS column_name, NULL::name AS trigger_name, NULL::bool AS trigger_always,
           NULL::name AS disabled_constraint
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
     WHERE n.nspname = ${schema}::text AND c.relkind IN ('r', 'p')
    UNION ALL
    -- The enabled triggers (origin or always, and which; not replica-only, not disabled) of the schema's tables,
    -- and the constraints whose internal triggers are not (DISABLE TRIGGER ALL: a deferrable UNIQUE,
    -- a foreign key, no longer checked).
    SELECT c.relname, NULL,
           CASE WHEN NOT t.tgisinternal AND t.tgenabled IN ('O', 'A') THEN t.tgname END,
           t.tgenabled OPERATOR(pg_catalog.=) 'A',
           CASE WHEN t.tgisinternal AND t.tgenabled NOT IN ('O', 'A') THEN COALESCE(con.conname, t.tgname) END
      FROM pg_catalog.pg_trigger t
      JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_catalog.pg_constraint con ON con.oid = t.tgconstraint
     WHERE n.nspname = ${schema}::text
       AND ((NOT t.tgisinternal AND t.tgenabled IN ('O', 'A')) OR (t.tgisinternal AND t.tgenabled NOT IN ('O', 'A')))`

/**
 * Enables the internal triggers of the schema's tables that are not (the checks of its constraints,
 * after a `DISABLE TRIGGER ALL`), for `repair`. Needs a superuser, as disabling them did.
 */
export const enableConstraintTriggers = (sql: Sql) =>
  sql`
    DO $$
    DECLARE r record;
    BEGIN
      FOR r IN
        SELECT c.relname, t.tgname
          FROM pg_catalog.pg_trigger t
          JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'modulo_group' AND t.tgisinternal AND t.tgenabled NOT IN ('O', 'A')
      LOOP
        EXECUTE pg_catalog.format('ALTER TABLE modulo_group.%I ENABLE TRIGGER %I', r.relname, r.tgname);
      END LOOP;
    END
    $$`

/** The migration lock, held until the migrating transaction ends. */
export const lockMigrations = (sql: Sql) => sql`SELECT pg_catalog.pg_advisory_xact_lock(${migrationLockKey}::int8)`

/**
 * After `lockMigrations`, for the rest of the migrating transaction: a statement that waits for a
 * table lock longer than `lockWaitMs` fails (55P03) instead of waiting. A migration's DDL waits for
 * an ACCESS EXCLUSIVE lock, and while it waits every later statement on that table queues behind it:
 * the members' renewals would wait as long as the oldest transaction on the table runs. And the
 * search path is pinned (`pinnedSearchPath`): a default or a check a migration creates binds its
 * functions and operators then, for good (a review: a `*(numeric, integer)` planted in `public`
 * before `migrate` was bound into migration 0002's `incarnation` default; migration 0013).
 */
export const boundMigrationLockWaits = (sql: Sql, lockWaitMs: number) =>
  sql`SELECT pg_catalog.set_config('lock_timeout', ${String(lockWaitMs)}::text, true), ${pinnedSearchPath(sql)}`

/**
 * The oldest transactions (at most 3) of other backends that hold a lock on a table of the schema:
 * whom a migration that could not get its lock waited for. From pg_locks and pg_stat_activity, which
 * every role can read (another role's query text is hidden, its pid and start are not).
 */
export const selectSchemaLockHolders = (sql: Sql) =>
  sql<{ pid: number; tables: string; xact_ms: string | null }>`
    SELECT l.pid, pg_catalog.string_agg(DISTINCT c.relname, ', ') AS tables,
           (extract(epoch FROM pg_catalog.clock_timestamp() - a.xact_start) OPERATOR(pg_catalog.*) 1000)::bigint AS xact_ms
      FROM pg_catalog.pg_locks l
      JOIN pg_catalog.pg_class c ON c.oid = l.relation
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
     WHERE n.nspname = ${schema}::text AND c.relkind IN ('r', 'p') AND l.granted AND l.pid <> pg_catalog.pg_backend_pid()
     GROUP BY l.pid, a.xact_start
     ORDER BY a.xact_start NULLS LAST
     LIMIT 3`

/** Runs one shipped migration file (`text`, read by `Migrations.sqlOf` from a constant list of names). */
export const applyMigration = (sql: Sql, text: string) => sql.unsafe(text)

/** Records that a migration was applied. */
export const recordMigration = (sql: Sql, version: number, name: string) =>
  sql`INSERT INTO modulo_group.schema_migrations (version, name) VALUES (${version}::int4, ${name}::text)
      ON CONFLICT (version) DO NOTHING`
