/**
 * The demo's ledger: its SQL, and only that. One row per item in `modulo_group_demo.items`, every
 * processing (duplicates included) in `modulo_group_demo.processed`, and per run the pace at which
 * items are released (`modulo_group_demo.runs.released`). Rows of different runs are told apart by
 * `run_id`.
 *
 * Nothing hides a duplicate: the `UPDATE` that marks an item done has no "not done yet" condition
 * and `processed` has no unique key, so an item processed twice shows up as two rows.
 *
 * @since 0.1.0
 * @internal
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { Fenced, type MemberState, Ownership, type Work } from "modulo-group"

/**
 * The group of a demo run.
 *
 * @since 0.1.0
 * @internal
 */
export const groupOf = (run: string): string => `modulo-group-demo-${run}`

// The demo's own schema, created under an advisory lock: concurrent `CREATE ... IF NOT EXISTS` of
// one table can still collide.
const setupLock = 0x64656d6f // "demo"

/** Creates the demo's schema and tables unless they exist. */
export const createSchema = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.withTransaction(Effect.gen(function*() {
    yield* sql`SELECT pg_catalog.pg_advisory_xact_lock(${setupLock}::int8)`
    yield* sql`CREATE SCHEMA IF NOT EXISTS modulo_group_demo`
    yield* sql`
      CREATE TABLE IF NOT EXISTS modulo_group_demo.runs (
        run_id     text        PRIMARY KEY,
        group_id   text        NOT NULL,
        items      integer     NOT NULL,
        -- Items with id <= released may be taken: the controller raises it at a steady pace.
        released   integer     NOT NULL DEFAULT 0,
        started_at timestamptz NOT NULL DEFAULT pg_catalog.now()
      )`
    // The ledger: one row per item, marked with the epoch and member that did it (last one wins).
    yield* sql`
      CREATE TABLE IF NOT EXISTS modulo_group_demo.items (
        run_id     text        NOT NULL,
        id         integer     NOT NULL,
        done_at    timestamptz,
        done_epoch bigint,
        done_by    text,
        PRIMARY KEY (run_id, id)
      )`
    yield* sql`
      CREATE INDEX IF NOT EXISTS items_pending ON modulo_group_demo.items (run_id, id) WHERE done_at IS NULL`
    // Every processing, duplicates included: no unique key on purpose.
    yield* sql`
      CREATE TABLE IF NOT EXISTS modulo_group_demo.processed (
        run_id  text        NOT NULL,
        item_id integer     NOT NULL,
        epoch   bigint      NOT NULL,
        idx     integer     NOT NULL,
        size    integer     NOT NULL,
        member  text        NOT NULL,
        at      timestamptz NOT NULL DEFAULT clock_timestamp()
      )`
    yield* sql`CREATE INDEX IF NOT EXISTS processed_run_item ON modulo_group_demo.processed (run_id, item_id)`
    // Slots mode (`demo --slots`): the generation of the item's slot the processing ran under (`idx`
    // is then the slot, `size` the slot count). Added to tables of earlier versions too.
    yield* sql`ALTER TABLE modulo_group_demo.processed ADD COLUMN IF NOT EXISTS generation bigint`
  }))
})

/** A run's row and its `items` pending items, none released yet. */
export const createRun = (run: string, items: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`INSERT INTO modulo_group_demo.runs (run_id, group_id, items) VALUES (${run}::text, ${groupOf(run)}::text, ${items}::int4)`
      yield* sql`
        INSERT INTO modulo_group_demo.items (run_id, id)
        SELECT ${run}::text, g FROM pg_catalog.generate_series(1, ${items}::int) AS g`
    }))
  })

/** Removes a run's rows, and its group's row if nobody is left in the group. */
export const deleteRun = (run: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const group = groupOf(run)
    yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`DELETE FROM modulo_group_demo.processed WHERE run_id = ${run}::text`
      yield* sql`DELETE FROM modulo_group_demo.items WHERE run_id = ${run}::text`
      yield* sql`DELETE FROM modulo_group_demo.runs WHERE run_id = ${run}::text`
      // The group row stays after its last member left; drop it if nobody is left in it. Rows whose
      // lease (and rejoin grace) has run out are nobody: members that left while the group's lock was
      // busy end their lease instead of deleting their row (docs/protocol.md, "Leaves of many
      // processes at once"), and the group's next change would delete them.
      yield* sql`
        DELETE FROM modulo_group.members m
         WHERE m.group_id = ${group}::text
           AND NOT EXISTS (
             SELECT 1 FROM modulo_group.members o
              WHERE o.group_id = ${group}::text
                AND o.lease_expires_at + o.rejoin_grace_ms::float8 * interval '1 millisecond' > pg_catalog.now())`
      yield* sql`
        DELETE FROM modulo_group.groups g
         WHERE g.group_id = ${group}::text
           AND NOT EXISTS (SELECT 1 FROM modulo_group.members m WHERE m.group_id = ${group}::text)`
    }))
  })

/** Lets members take the items with id <= `n` (best effort: the next call raises it again). */
export const release = (run: string, n: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`UPDATE modulo_group_demo.runs SET released = ${n}::int4 WHERE run_id = ${run}::text`
  }).pipe(Effect.timeout(Duration.seconds(2)), Effect.ignore)

/**
 * Items done so far, and the group's epoch and size (0 before the group exists).
 *
 * @since 0.1.0
 * @internal
 */
export interface Progress {
  readonly done: number
  readonly epoch: number
  readonly size: number
}

/** The run's progress, or nothing when the database did not answer within 2 s. */
export const readProgress = (run: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* sql<{ done: string; epoch: string | null; size: number | null }>`
      SELECT (SELECT pg_catalog.count(*) FROM modulo_group_demo.items WHERE run_id = ${run}::text AND done_at IS NOT NULL) AS done,
             g.epoch, g.size
        FROM (SELECT 1) AS one LEFT JOIN modulo_group.groups g ON g.group_id = ${groupOf(run)}::text`
    return row === undefined
      ? undefined
      : { done: Number(row.done), epoch: Number(row.epoch ?? 0), size: Number(row.size ?? 0) } satisfies Progress
  }).pipe(Effect.timeout(Duration.seconds(2)), Effect.orElseSucceed(() => undefined))

/**
 * One fenced transaction of a tick: takes up to `batch` of the run's pending, released items that
 * `owned` selects, marks them done at `epoch`, and records one `processed` row per item (`record`).
 * Fails as `Fenced.fenced` does: nothing commits then.
 */
const drain = (
  run: string,
  member: string,
  batch: number,
  epoch: number,
  owned: Parameters<typeof Ownership.owned>[2],
  record: (id: number) => Record<string, unknown>,
  fence: Parameters<typeof Fenced.fenced>[1]
) =>
  Fenced.fenced(
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const picked = yield* sql<{ id: number }>`
        SELECT id FROM modulo_group_demo.items
         WHERE run_id = ${run}::text AND done_at IS NULL AND ${Ownership.owned(sql, "id", owned)}
           AND id <= (SELECT released FROM modulo_group_demo.runs WHERE run_id = ${run}::text)
         ORDER BY id
         LIMIT ${batch}::int8`
      if (picked.length === 0) return 0
      const ids = picked.map((r) => r.id)
      // No "AND done_at IS NULL" and no ON CONFLICT: a second processing must be seen, not hidden.
      yield* sql`
        UPDATE modulo_group_demo.items
           SET done_at = clock_timestamp(), done_epoch = ${epoch}::int8, done_by = ${member}::text
         WHERE run_id = ${run}::text AND ${sql.in("id", ids)}`
      yield* sql`
        INSERT INTO modulo_group_demo.processed ${
        sql.insert(ids.map((id) => ({ run_id: run, item_id: id, epoch, member, ...record(id) })))
      }`
      return ids.length
    }),
    fence
  )

/** One tick of a member: its pending, released items of this assignment. */
export const drainBatch = (run: string, member: string, batch: number, tick: Work.Tick) =>
  drain(run, member, batch, tick.epoch, tick, () => ({ idx: tick.index, size: tick.size }), { assignment: tick })

/**
 * Slots mode: one tick of a member, over the set of slots it works (`owned`: their generations too),
 * in one transaction fenced with those slots at those generations. Each processing records its slot
 * (`idx`), the slot count (`size`), the slot's generation, and the member's epoch (`epoch`: in slots
 * mode it orders the changes but is no barrier).
 */
export const drainSlots = (run: string, member: string, batch: number, owned: MemberState.OwnedSlots, epoch: number) => {
  const generationOf = new Map(owned.slots.map((slot, i) => [slot, owned.generations[i]!]))
  return drain(run, member, batch, epoch, owned, (id) => {
    const slot = Ownership.ownerOf(id, owned.count)
    return { idx: slot, size: owned.count, generation: generationOf.get(slot) ?? null }
  }, { slots: owned })
}

/**
 * What the ledger says at the end of a run: per item how often it was processed, per epoch its
 * processings (and whether they overlap in time the previous epoch's), per member its processings.
 *
 * @since 0.1.0
 * @internal
 */
export interface Verdict {
  readonly items: number
  readonly once: number
  readonly duplicates: number
  readonly missing: number
  /** Processings beyond the first, over all duplicated items. */
  readonly extraProcessings: number
  readonly epochs: ReadonlyArray<{
    readonly epoch: number
    readonly size: number
    readonly processed: number
    readonly members: number
    readonly first: Date
    readonly last: Date
    /** Its first processing is not after the previous epoch's last (G2 says never). */
    readonly overlapsPrevious: boolean
  }>
  readonly processedBy: ReadonlyMap<string, number>
  /**
   * Slots mode: per slot, consecutive generations that both processed items (`handoffs`), and those
   * whose processings overlap in time on the database clock (`overlaps`: per-slot G2 says never).
   */
  readonly slotHandoffs: number
  readonly slotOverlaps: number
}

/** Reads the verdict of a run from the ledger. */
export const readVerdict = (run: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [counts] = yield* sql<{ items: string; once: string; duplicates: string; missing: string; extra: string }>`
      WITH counts AS (
        SELECT i.id, pg_catalog.count(p.item_id) AS n
          FROM modulo_group_demo.items i
          LEFT JOIN modulo_group_demo.processed p ON p.run_id = i.run_id AND p.item_id = i.id
         WHERE i.run_id = ${run}::text
         GROUP BY i.id
      )
      SELECT pg_catalog.count(*) AS items,
             pg_catalog.count(*) FILTER (WHERE n = 1) AS once,
             pg_catalog.count(*) FILTER (WHERE n > 1) AS duplicates,
             pg_catalog.count(*) FILTER (WHERE n = 0) AS missing,
             coalesce(pg_catalog.sum(n - 1) FILTER (WHERE n > 1), 0) AS extra
        FROM counts`
    const epochRows = yield* sql<{ epoch: string; size: number; n: string; members: string; first_ms: number; last_ms: number; overlaps: boolean | null }>`
      WITH e AS (
        SELECT epoch, pg_catalog.max(size) AS size, pg_catalog.count(*) AS n, pg_catalog.count(DISTINCT member) AS members, pg_catalog.min(at) AS first, pg_catalog.max(at) AS last
          FROM modulo_group_demo.processed WHERE run_id = ${run}::text GROUP BY epoch
      )
      SELECT epoch, size, n, members, (extract(epoch FROM first) OPERATOR(pg_catalog.*) 1000)::float8 AS first_ms,
             (extract(epoch FROM last) OPERATOR(pg_catalog.*) 1000)::float8 AS last_ms, pg_catalog.lag(last) OVER (ORDER BY epoch) >= first AS overlaps
        FROM e ORDER BY epoch`
    const perMember = yield* sql<{ member: string; n: string }>`
      SELECT member, pg_catalog.count(*) AS n FROM modulo_group_demo.processed WHERE run_id = ${run}::text GROUP BY member`
    const [slotRow] = yield* sql<{ handoffs: string; overlaps: string }>`
      WITH g AS (
        SELECT idx AS slot, generation, pg_catalog.min(at) AS first, pg_catalog.max(at) AS last
          FROM modulo_group_demo.processed WHERE run_id = ${run}::text AND generation IS NOT NULL
         GROUP BY idx, generation
      ), l AS (
        SELECT first, pg_catalog.lag(last) OVER (PARTITION BY slot ORDER BY generation) AS previous FROM g
      )
      SELECT pg_catalog.count(previous) AS handoffs, pg_catalog.count(*) FILTER (WHERE previous >= first) AS overlaps FROM l`
    return {
      items: Number(counts?.items ?? 0),
      once: Number(counts?.once ?? 0),
      duplicates: Number(counts?.duplicates ?? 0),
      missing: Number(counts?.missing ?? 0),
      extraProcessings: Number(counts?.extra ?? 0),
      epochs: epochRows.map((r) => ({
        epoch: Number(r.epoch),
        size: Number(r.size),
        processed: Number(r.n),
        members: Number(r.members),
        // Milliseconds since the epoch: node-postgres parses timestamp text only in the ISO DateStyle.
        first: new Date(Number(r.first_ms)),
        last: new Date(Number(r.last_ms)),
        overlapsPrevious: r.overlaps === true
      })),
      processedBy: new Map(perMember.map((r) => [r.member, Number(r.n)])),
      slotHandoffs: Number(slotRow?.handoffs ?? 0),
      slotOverlaps: Number(slotRow?.overlaps ?? 0)
    } satisfies Verdict
  })
