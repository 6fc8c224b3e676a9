/**
 * The interleaving explorer's slots-mode schedules (docs/slots.md; the runner and the pause are
 * harness.ts's). Operation A pauses before its k-th statement (the store's `onStatement` hook; a
 * statement transformer inside `fenced`); meanwhile B, a sequence of one or more operations (of other
 * members, or of the same member as another request in flight), runs until it is done or waits for a
 * lock; then A finishes, then B.
 *
 * Ground truth: in a database of the explorer's own, deferred constraint triggers on `members`,
 * `groups` and `slots` log the whole state of the group (every member row with its `join_seq`, every
 * slot's owner, holder and generation) as each transaction commits, in commit order; a fenced
 * transaction's body inserts a mark (which member row, which slot at which generation) whose trigger
 * logs the state at that transaction's COMMIT. The checks run on every logged state (every committed
 * step of every operation) and on each pair of consecutive states.
 *
 * Mutants (`Mutant`): a statement transformer rewrites one of the store's slot statements as it is
 * sent, re-introducing a bug docs/slots.md's "Where the wiring departs" (or "The release") guards
 * against, without any change to the store; each rewrite counts its hits, so a mutant that no longer
 * matches the store's text fails the test instead of passing silently.
 */
import { SqlClient } from "@effect/sql"
import * as Statement from "@effect/sql/Statement"
import { Duration, Effect, Option } from "effect"
import { randomUUID } from "node:crypto"
import { fencedWith } from "../../src/Fenced.js"
import * as Holdings from "../../src/internal/slots/holdings.js"
import type { MembershipStoreService, SlotView, StoppedSlot } from "../../src/MembershipStore.js"
import { randomGroupId } from "../support/Database.js"
import { controlled, explorerWriter, interleave, LEASE_MS, makePause, type Observer, onStatement } from "./harness.js"

// --- the log ----------------------------------------------------------------------------------

/** The slots log: run once after the migrations, in the explorer's own database. */
export const installSlotLog = `
  CREATE TABLE public.mg_slot_log (
    seq      bigserial PRIMARY KEY,
    xid      xid8  NOT NULL,
    kind     text  NOT NULL,
    group_id text  NOT NULL,
    members  jsonb NOT NULL,
    slots    jsonb NOT NULL,
    mark     jsonb
  );
  CREATE INDEX ON public.mg_slot_log (group_id, xid);
  CREATE TABLE public.mg_slot_marks (
    group_id text NOT NULL, member_id uuid NOT NULL, join_seq bigint NOT NULL,
    slot int NOT NULL, generation bigint NOT NULL, tag text NOT NULL
  );
  CREATE FUNCTION public.mg_slot_snap() RETURNS trigger LANGUAGE plpgsql AS $$
  DECLARE
    gid text := CASE WHEN TG_OP = 'DELETE' THEN OLD.group_id ELSE NEW.group_id END;
    k   text := 'state';
    mk  jsonb;
  BEGIN
    IF TG_TABLE_NAME = 'mg_slot_marks' THEN
      k := 'fence';
      mk := jsonb_build_object('member', NEW.member_id, 'seq', NEW.join_seq, 'slot', NEW.slot,
                               'generation', NEW.generation, 'tag', NEW.tag);
    ELSIF EXISTS (SELECT 1 FROM public.mg_slot_log l
                   WHERE l.xid = pg_current_xact_id() AND l.group_id = gid AND l.kind = 'state') THEN
      RETURN NULL;
    END IF;
    INSERT INTO public.mg_slot_log (xid, kind, group_id, members, slots, mark)
    SELECT pg_current_xact_id(), k, g.group_id,
           coalesce((SELECT jsonb_agg(jsonb_build_object('id', m.member_id, 'seq', m.join_seq,
                                                         'live', m.lease_expires_at > clock_timestamp())
                                      ORDER BY m.join_seq)
                       FROM modulo_group.members m WHERE m.group_id = g.group_id), '[]'::jsonb),
           coalesce((SELECT jsonb_agg(jsonb_build_array(s.slot, s.owner, s.holder, s.generation) ORDER BY s.slot)
                       FROM modulo_group.slots s WHERE s.group_id = g.group_id), '[]'::jsonb),
           mk
      FROM modulo_group.groups g WHERE g.group_id = gid AND g.slots IS NOT NULL;
    RETURN NULL;
  END $$;
  CREATE CONSTRAINT TRIGGER mg_slot_members AFTER INSERT OR UPDATE OR DELETE ON modulo_group.members
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.mg_slot_snap();
  CREATE CONSTRAINT TRIGGER mg_slot_groups AFTER INSERT OR UPDATE ON modulo_group.groups
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.mg_slot_snap();
  CREATE CONSTRAINT TRIGGER mg_slot_slots AFTER INSERT OR UPDATE ON modulo_group.slots
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.mg_slot_snap();
  CREATE CONSTRAINT TRIGGER mg_slot_marks AFTER INSERT ON public.mg_slot_marks
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.mg_slot_snap();
`

export interface RowSnap {
  readonly id: string
  readonly seq: number
  readonly live: boolean
}

export interface SlotSnap {
  readonly owner: string | null
  readonly holder: string | null
  readonly generation: number
}

export interface Mark {
  readonly member: string
  readonly seq: number
  readonly slot: number
  readonly generation: number
  readonly tag: string
}

/** One committed state of the group. */
export interface State {
  readonly seq: number
  readonly kind: "state" | "fence"
  readonly members: ReadonlyArray<RowSnap>
  readonly slots: ReadonlyArray<SlotSnap>
  readonly mark: Mark | undefined
}

const maxSeq = (observer: Observer, gid: string) =>
  Effect.map(
    observer.query<{ s: string | null }>("SELECT max(seq) AS s FROM public.mg_slot_log WHERE group_id = $1", [gid]),
    (r) => Number(r.rows[0]?.s ?? 0)
  )

const states = (observer: Observer, gid: string) =>
  Effect.map(
    observer.query<{
      seq: string
      kind: "state" | "fence"
      members: Array<{ id: string; seq: number | string; live: boolean }>
      slots: Array<[number, string | null, string | null, number | string]>
      mark: { member: string; seq: number | string; slot: number; generation: number | string; tag: string } | null
    }>("SELECT seq, kind, members, slots, mark FROM public.mg_slot_log WHERE group_id = $1 ORDER BY seq", [gid]),
    (r) =>
      r.rows.map((row): State => ({
        seq: Number(row.seq),
        kind: row.kind,
        members: row.members.map((m) => ({ id: m.id, seq: Number(m.seq), live: m.live })),
        slots: row.slots.map(([, owner, holder, generation]) => ({ owner, holder, generation: Number(generation) })),
        mark: row.mark === null ? undefined : {
          member: row.mark.member,
          seq: Number(row.mark.seq),
          slot: row.mark.slot,
          generation: Number(row.mark.generation),
          tag: row.mark.tag
        }
      }))
  )

// --- the known state --------------------------------------------------------------------------

export const SLOTS = 8

/**
 * Slots mode, S = 8, epoch 4. Members in join order: a, b, x (lease expired: crashed), c, two slots
 * owned each. Slot rows (owner/holder@generation):
 *
 *   0 a/a@5  a works it              4 x/x@4  x crashed
 *   1 a/a@3  a released it at 3 and  5 b/x@1  on its way from x (crashed) to b
 *            does not know the outcome: 6 c/c@1  c works it
 *            it retakes it            7 x/x@2  x crashed
 *   2 c/a@7  on its way from a to c: a has stopped it and releases it at 7
 *   3 b/b@2  b works it
 *
 * d is a newcomer; `rejoin-a` is a's process joining again with the same member id.
 */
export const setupSlotGroup = (observer: Observer) =>
  Effect.gen(function*() {
    const gid = randomGroupId("sx")
    const ids = { a: randomUUID(), b: randomUUID(), x: randomUUID(), c: randomUUID(), d: randomUUID() }
    const epoch = 4
    const table: Array<readonly [number, string, string, number]> = [
      [0, ids.a, ids.a, 5],
      [1, ids.a, ids.a, 3],
      [2, ids.c, ids.a, 7],
      [3, ids.b, ids.b, 2],
      [4, ids.x, ids.x, 4],
      [5, ids.b, ids.x, 1],
      [6, ids.c, ids.c, 1],
      [7, ids.x, ids.x, 2]
    ]
    // One statement (one commit, one logged state): the group, its members, its slot rows.
    yield* observer.query(
      `WITH g AS (
         INSERT INTO modulo_group.groups (group_id, epoch, size, changed_at, slots) VALUES ($1, ${epoch}, 4, now(), ${SLOTS})
         RETURNING group_id
       ), m AS (
         INSERT INTO modulo_group.members
           (member_id, group_id, idx, acked_epoch, assigned_epoch, assigned_size, lease_expires_at, heartbeat_at, joined_at, name,
            writer)
         SELECT v.id::uuid, g.group_id, v.idx, ${epoch}, ${epoch}, 4,
                now() + CASE WHEN v.expired THEN interval '-1 hour' ELSE ${LEASE_MS} * interval '1 millisecond' END,
                now(), now(), v.name, $7::uuid
           FROM g, (VALUES ($2, 0, false, 'a'), ($3, 1, false, 'b'), ($4, 2, true, 'x'), ($5, 3, false, 'c'))
                   AS v (id, idx, expired, name)
          ORDER BY v.idx
         RETURNING member_id
       )
       INSERT INTO modulo_group.slots (group_id, slot, owner, holder, generation, changed_at)
       SELECT g.group_id, t.slot, t.owner, t.holder, t.generation, now()
         FROM g, jsonb_to_recordset($6::jsonb) AS t (slot int, owner uuid, holder uuid, generation bigint)`,
      [
        gid,
        ids.a,
        ids.b,
        ids.x,
        ids.c,
        JSON.stringify(table.map(([slot, owner, holder, generation]) => ({ slot, owner, holder, generation }))),
        explorerWriter
      ]
    )
    const rows = (yield* observer.query<{ member_id: string; join_seq: string }>(
      "SELECT member_id, join_seq FROM modulo_group.members WHERE group_id = $1",
      [gid]
    )).rows
    const seqOf = (id: string) => Number(rows.find((r) => r.member_id === id)!.join_seq)
    return { gid, ids, epoch, seqs: { a: seqOf(ids.a), b: seqOf(ids.b), c: seqOf(ids.c), x: seqOf(ids.x) } }
  })

export type SlotKnown = Effect.Effect.Success<ReturnType<typeof setupSlotGroup>>

type Name = "a" | "b" | "c" | "d" | "x"

/** What each member of the known state works, and its `Holdings`, before the schedule. */
const initialWork: ReadonlyArray<readonly [Name, number, number]> = [["a", 0, 5], ["b", 3, 2], ["c", 6, 1]]
const initialHoldings = (name: Name): Holdings.Holdings => {
  const h = Holdings.empty(SLOTS)
  switch (name) {
    case "a":
      return {
        ...h,
        working: new Map([[0, 5]]),
        inflight: new Map([[2, { generation: 7, uncertain: false, unanswered: 1 }], [1, { generation: 3, uncertain: true, unanswered: 0 }]])
      }
    case "b":
      return { ...h, working: new Map([[3, 2]]) }
    case "c":
      return { ...h, working: new Map([[6, 1]]) }
    default:
      return h
  }
}

// --- the operations ---------------------------------------------------------------------------

export const slotOperations = [
  "join-d", // a change: d joins (reaps x, d takes x's two slots)
  "leave-a", // a change: a leaves after stopping its work (its slots are handed over at once)
  "reap", // a change: x is reaped (its slots go to live owners at once)
  "rejoin-a", // a change: a's process joins again with the same member id (a new row)
  "release-a", // a releases slot 2 at generation 7
  "retake-a", // a retakes slot 1 at generation 3
  "hb-a", // a's renewal (slots view)
  "hb-c", // c's renewal: the new owner of slot 2 learns it holds it
  "fenced-a2", // a's fenced transaction on slot 2 at 7 (the old holder, releasing)
  "fenced-a0", // a's fenced transaction on slot 0 at 5 (a slot it keeps), from its first row
  "fenced-c2" // c's fenced transaction on slot 2 at 8 (the new holder, once the release applied)
] as const
export type SlotOperation = (typeof slotOperations)[number]

const releaseA: ReadonlyArray<StoppedSlot> = [{ slot: 2, generation: 7 }]
const fencedTargets: Record<string, readonly [Name, number, number]> = {
  "fenced-a2": ["a", 2, 7],
  "fenced-a0": ["a", 0, 5],
  "fenced-c2": ["c", 2, 8]
}
const changeOps = new Set<SlotOperation>(["join-d", "leave-a", "reap", "rejoin-a"])

export interface SlotOutcome {
  readonly op: SlotOperation
  readonly member: Name | undefined
  readonly view?: SlotView | undefined
  /** A renewal answered None (the member's row is gone or its lease expired). */
  readonly none?: boolean | undefined
  readonly released?: ReadonlyArray<number> | undefined
  readonly retook?: boolean | undefined
  readonly fencedCommitted?: boolean | undefined
  readonly error?: string | undefined
  /** Logical times: the request sent, its reply received (one counter per schedule). */
  readonly sentAt: number
  readonly answeredAt: number
  readonly startSeq: number
  readonly endSeq: number
}

const describeError = (e: unknown): string => {
  const tag = (e as { _tag?: unknown })?._tag
  const reason = (e as { reason?: unknown; message?: unknown })?.reason ?? (e as { message?: unknown })?.message
  return `${String(tag ?? "error")}: ${String(reason ?? e)}`
}

// --- mutants ----------------------------------------------------------------------------------

export const mutants = {
  /** Departure 1: the change reads the slot rows without locking them (both of its reads: the orphans', and the rows it rewrites). */
  "change-reads-unlocked": {
    match: /ORDER BY (s\.)?slot FOR NO KEY UPDATE/,
    rewrite: (text: string) => text.replace(/ORDER BY (s\.)?slot FOR NO KEY UPDATE( OF s)?/, "ORDER BY $1slot")
  },
  /** Departure 2: a rejoin keeps the generations its earlier row held. */
  "rejoin-keeps-generations": {
    match: /UPDATE modulo_group\.slots SET generation = generation \+ 1/,
    rewrite: (text: string) => text.replace(/WHERE group_id =/, "WHERE false AND group_id =")
  },
  /** "The release": a release not checked against the generation it names. */
  "release-ignores-generation": {
    match: /SET holder = s\.owner, generation = s\.generation \+ 1/,
    rewrite: (text: string) => text.replace(/AND s\.generation = r\.generation/, "")
  }
} as const
export type Mutant = keyof typeof mutants

/** Hits of the current mutant's rewrite (the test asserts it applied). */
export const mutantHits: Record<string, number> = {}

/**
 * The statement transformer of a schedule: the mutant's rewrite (if any), and for a fenced
 * transaction (`step` set) the pause hook before each statement.
 */
const transformer = (mutant: Mutant | undefined, step: string | undefined): Statement.Statement.Transformer =>
(statement, sql) =>
  Effect.gen(function*() {
    let out: Statement.Statement<unknown> = statement
    const [text, params] = statement.compile()
    if (mutant !== undefined && mutants[mutant].match.test(text)) {
      const rewritten = mutants[mutant].rewrite(text)
      if (rewritten !== text) {
        mutantHits[mutant] = (mutantHits[mutant] ?? 0) + 1
        out = sql.unsafe(rewritten, params)
      }
    }
    if (step !== undefined) yield* onStatement(step, text.replace(/\s+/g, " ").trim().slice(0, 40))
    return out
  })

const withTransformerOf = <A, E, R>(mutant: Mutant | undefined, step: string | undefined, effect: Effect.Effect<A, E, R>) =>
  mutant === undefined && step === undefined ? effect : Statement.withTransformer(effect, transformer(mutant, step))

// --- running ----------------------------------------------------------------------------------

let clock = 0

const runSlotOperation = (
  op: SlotOperation,
  known: SlotKnown,
  store: MembershipStoreService,
  observer: Observer,
  mutant: Mutant | undefined
): Effect.Effect<SlotOutcome, never, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const { gid, ids } = known
    const startSeq = yield* maxSeq(observer, gid)
    const sentAt = clock++
    const info = (name: Name) => ({ memberId: ids[name], name, host: "explorer", pid: 0 })
    const heartbeat = (name: Name) =>
      Effect.map(
        store.heartbeat(gid, ids[name], known.epoch, LEASE_MS, { slots: true }),
        (v) => Option.isNone(v) ? { member: name, none: true } : { member: name, view: v.value.slots }
      )
    const body: Effect.Effect<Partial<SlotOutcome>, unknown, SqlClient.SqlClient> = (() => {
      switch (op) {
        case "join-d":
          return Effect.map(
            store.join(gid, info("d"), LEASE_MS, undefined, { slots: SLOTS }),
            (v) => ({ member: "d" as const, view: v.slots })
          )
        case "rejoin-a":
          return Effect.map(
            store.join(gid, info("a"), LEASE_MS, undefined, { slots: SLOTS }),
            (v) => ({ member: "a" as const, view: v.slots })
          )
        case "leave-a":
          return Effect.as(store.leave(gid, ids.a), { member: "a" as const })
        case "reap":
          return Effect.as(store.reap(gid), {})
        case "release-a":
          return Effect.map(store.releaseSlots(gid, ids.a, releaseA), (released) => ({ member: "a" as const, released }))
        case "retake-a":
          return Effect.map(store.retakeSlot(gid, ids.a, 1, 3), (retook) => ({ member: "a" as const, retook }))
        case "hb-a":
          return heartbeat("a")
        case "hb-c":
          return heartbeat("c")
        case "fenced-a2":
        case "fenced-a0":
        case "fenced-c2": {
          const [name, slot, generation] = fencedTargets[op]!
          const seq = known.seqs[name as "a" | "c"]
          return Effect.flatMap(SqlClient.SqlClient, (sql) =>
            withTransformerOf(
              mutant,
              op,
              fencedWith(
                { groupId: gid, memberId: ids[name], epoch: 0, index: 0, size: 0, slots: [{ slot, generation }] },
                sql`INSERT INTO public.mg_slot_marks (group_id, member_id, join_seq, slot, generation, tag)
                    VALUES (${gid}, ${ids[name]}, ${seq}, ${slot}, ${generation}, ${op})`,
                { timeout: Duration.seconds(8) }
              )
            ).pipe(
              Effect.as({ member: name, fencedCommitted: true }),
              Effect.catchIf(
                (e) => (e as { _tag?: unknown })._tag === "StaleAssignment",
                () => Effect.succeed({ member: name, fencedCommitted: false })
              )
            ))
        }
      }
    })()
    const result = yield* Effect.either(withTransformerOf(mutant, undefined, body))
    const answeredAt = clock++
    const endSeq = yield* maxSeq(observer, gid)
    const base = { op, member: undefined, sentAt, answeredAt, startSeq, endSeq }
    return result._tag === "Right"
      ? { ...base, ...result.right }
      : { ...base, error: describeError(result.left) }
  })

/** B: its operations in order, each to its end (an error is part of its outcome). */
const runSequence = (
  ops: ReadonlyArray<SlotOperation>,
  known: SlotKnown,
  store: MembershipStoreService,
  observer: Observer,
  mutant: Mutant | undefined
) => Effect.forEach(ops, (op) => runSlotOperation(op, known, store, observer, mutant))

export interface SlotSchedule {
  readonly a: SlotOperation
  readonly b: ReadonlyArray<SlotOperation>
  readonly k: number
}

export interface SlotScheduleResult {
  readonly schedule: SlotSchedule
  readonly known: SlotKnown
  readonly pausedAt: string
  readonly b: "done" | "blocked" | "slow" | "after"
  readonly outcomes: ReadonlyArray<SlotOutcome>
  readonly states: ReadonlyArray<State>
  readonly steps: ReadonlyArray<string>
  readonly ms: number
}

const opTimeout = Duration.seconds(15)

export const runSlotSchedule = (
  schedule: SlotSchedule,
  store: MembershipStoreService,
  observer: Observer,
  storeB: MembershipStoreService,
  mutant?: Mutant
): Effect.Effect<SlotScheduleResult, never, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const started = Date.now()
    clock = 0
    const known = yield* setupSlotGroup(observer)
    const failed = (op: SlotOperation): SlotOutcome => ({
      op,
      member: undefined,
      error: "did not finish",
      sentAt: 0,
      answeredAt: 0,
      startSeq: 0,
      endSeq: 0
    })
    const r = yield* interleave({
      k: schedule.k,
      a: runSlotOperation(schedule.a, known, store, observer, mutant),
      b: runSequence(schedule.b, known, storeB, observer, mutant),
      aTimedOut: () => failed(schedule.a),
      bTimedOut: () => schedule.b.map(failed),
      observer,
      timeout: opTimeout
    })
    return {
      schedule,
      known,
      pausedAt: r.pausedAt,
      b: r.b,
      outcomes: [r.outcomeA, ...r.outcomeB],
      states: yield* states(observer, known.gid),
      steps: r.steps,
      ms: Date.now() - started
    }
  })

/** The statements `op` sends on its own from the known state (its boundaries are 0..n). */
export const countSlotSteps = (op: SlotOperation, store: MembershipStoreService, observer: Observer) =>
  Effect.gen(function*() {
    const known = yield* setupSlotGroup(observer)
    const pause = yield* makePause(-1)
    yield* Effect.locally(runSlotOperation(op, known, store, observer, undefined), controlled, pause)
    return pause.steps
  })

// --- the checks -------------------------------------------------------------------------------

/** A member row doing work on a slot at a generation, from state `from` on. */
interface Claim {
  readonly id: string
  readonly seq: number
  readonly slot: number
  readonly generation: number
  readonly from: number
  readonly why: string
}

/**
 * Violations in one schedule; empty when all hold. On every committed state:
 * (1) every slot's owner and holder is a member with a row, and owned counts differ by at most one;
 * (2) every member row working a slot (from the known state, or started by `Holdings.onView` on a
 *     view it received) is that slot's holder at the generation it works, and no two rows work one
 *     slot; a start is made only on a slot the member held and owned at that generation.
 * On each pair of consecutive committed states, per slot:
 * (3) the generation never decreases, and bumps whenever the holder changes;
 * (4) a holder whose row lives on loses the slot (or its generation) only by its own release of that
 *     slot at that generation (holder := owner, generation + 1) or its own retake (generation + 1),
 *     sent by that very row; owners change only in a change (join, leave, reap).
 * On each fenced transaction: (5) it committed only if, at its COMMIT, its member row (the one that
 * started it) held the slot at its generation with a live lease, and it answered committed exactly
 * when it did. And every operation finished without error (a stale fence is an answer).
 */
export const checkSlots = (r: SlotScheduleResult): Array<string> => {
  const out: Array<string> = []
  const { known, states: all } = r
  const names = Object.entries(known.ids) as Array<[Name, string]>
  const label = (id: string | null) => id === null ? "nobody" : names.find(([, v]) => v === id)?.[0] ?? id
  const fmt = (s: State) =>
    `#${s.seq} [${s.slots.map((x, i) => `${i}:${label(x.owner)}/${label(x.holder)}@${x.generation}`).join(" ")}] rows ${
      s.members.map((m) => `${label(m.id)}#${m.seq}`).join(",")
    }`
  const rowOf = (s: State, id: string | null) => s.members.find((m) => m.id === id)
  if (all.length === 0) return ["no state logged"]

  // Who sent which request, from which row: a's requests come from its first row unless it rejoined
  // and they were sent after the rejoin's reply.
  const stateAt = (seq: number) => [...all].reverse().find((x) => x.seq <= seq) ?? all[0]!
  const isJoin = (o: SlotOutcome) => o.op === "join-d" || o.op === "rejoin-a"
  // A join answered after the same member sent another join was given up on (a retry is sent only
  // after the member stopped waiting for the first): the member never acts on its reply.
  const superseded = (o: SlotOutcome) =>
    isJoin(o) && r.outcomes.some((p) => p !== o && p.op === o.op && p.sentAt > o.sentAt && p.sentAt < o.answeredAt)
  // The row a join inserted: the member's first row in its window that was not there at its start.
  const joinedRow = (o: SlotOutcome, name: Name): number | undefined => {
    const before = rowOf(stateAt(o.startSeq), known.ids[name])?.seq
    for (const s of all) {
      if (s.seq <= o.startSeq || s.seq > o.endSeq) continue
      const seq = rowOf(s, known.ids[name])?.seq
      if (seq !== undefined && seq !== before) return seq
    }
    return undefined
  }
  // The row that sent a request: the one of the member's latest join answered before it was sent.
  const senderSeq = (o: SlotOutcome, name: Name): number | undefined => {
    const joins = r.outcomes.filter((p) => isJoin(p) && p.member === name && p.error === undefined && p.answeredAt < o.sentAt)
    if (joins.length > 0) return joinedRow(joins.sort((x, y) => x.answeredAt - y.answeredAt)[joins.length - 1]!, name)
    return name === "d" ? undefined : known.seqs[name as "a" | "b" | "c" | "x"]
  }

  // (1)
  for (const s of all) {
    const counts = new Map(s.members.map((m) => [m.id, 0]))
    s.slots.forEach((x, i) => {
      if (x.owner === null || !counts.has(x.owner)) out.push(`slot ${i} owned by ${label(x.owner)}, not a member, in ${fmt(s)}`)
      else counts.set(x.owner, counts.get(x.owner)! + 1)
      if (x.holder === null || rowOf(s, x.holder) === undefined) {
        out.push(`slot ${i} held by ${label(x.holder)}, who has no row, in ${fmt(s)}`)
      }
    })
    const sizes = [...counts.values()]
    if (sizes.length > 0 && Math.max(...sizes) - Math.min(...sizes) > 1) out.push(`unbalanced owners in ${fmt(s)}`)
  }

  // (3), (4)
  const windows = (pred: (o: SlotOutcome) => boolean, seq: number) =>
    r.outcomes.filter((o) => pred(o) && o.error === undefined && o.startSeq < seq && seq <= o.endSeq)
  for (let i = 1; i < all.length; i++) {
    const p = all[i - 1]!
    const n = all[i]!
    n.slots.forEach((x, slot) => {
      const y = p.slots[slot]!
      if (x.generation < y.generation) out.push(`slot ${slot} went back from ${y.generation} to ${x.generation} in ${fmt(n)}`)
      if (x.holder !== y.holder && x.generation <= y.generation) {
        out.push(`slot ${slot} changed holder without a new generation in ${fmt(n)}`)
      }
      if (x.owner !== y.owner && windows((o) => changeOps.has(o.op), n.seq).length === 0) {
        out.push(`slot ${slot}'s owner changed outside a change in ${fmt(n)}`)
      }
      if (x.holder === y.holder && x.generation === y.generation) return
      const h = rowOf(p, y.holder)
      const still = h !== undefined && n.members.some((m) => m.id === h.id && m.seq === h.seq)
      if (!still) return // the holder's row was deleted (or replaced) in this commit: a change's handoff
      const byHolder = (op: SlotOperation) =>
        windows((o) => o.op === op && o.member !== undefined && known.ids[o.member] === h.id, n.seq)
          .filter((o) => senderSeq(o, o.member!) === h.seq)
      const released = x.holder === x.owner && x.generation === y.generation + 1 &&
        byHolder("release-a").some(() => releaseA.some((q) => q.slot === slot && q.generation === y.generation))
      const retaken = x.holder === y.holder && x.owner === y.holder && x.generation === y.generation + 1 &&
        byHolder("retake-a").some(() => slot === 1 && y.generation === 3)
      if (!released && !retaken) {
        out.push(
          `slot ${slot} taken from ${label(y.holder)}#${h.seq}@${y.generation} (its row lives) to ${label(x.holder)}@${x.generation} by no release or retake of that row: ${
            fmt(p)
          } -> ${fmt(n)}`
        )
      }
    })
  }

  // (2): the work, from the known state and from each member's decisions on its views, in the order
  // its replies arrived.
  const claims: Array<Claim> = initialWork.map(([name, slot, generation]) => ({
    id: known.ids[name],
    seq: known.seqs[name as "a" | "b" | "c"],
    slot,
    generation,
    from: all[0]!.seq,
    why: "known state"
  }))
  const holdings = new Map<Name, Holdings.Holdings>([["a", initialHoldings("a")], ["c", initialHoldings("c")]])
  const answered = [...r.outcomes].filter((o) => o.error === undefined).sort((x, y) => x.answeredAt - y.answeredAt)
  for (const o of answered) {
    const name = o.member
    if (name === undefined || superseded(o)) continue
    if (isJoin(o)) holdings.set(name, Holdings.empty(SLOTS))
    const h = holdings.get(name)
    if (h === undefined) continue
    if (o.released !== undefined) {
      holdings.set(name, Holdings.onReleased(h, releaseA, o.released, o.answeredAt))
      continue
    }
    if (o.view === undefined) continue
    const [next, actions] = Holdings.onView(h, o.view, true, o.sentAt)
    holdings.set(name, next)
    const endState = stateAt(o.endSeq)
    // The row this view is of: the one the join inserted, or the one that renewed (the sender's).
    const seq = isJoin(o) ? joinedRow(o, name) : senderSeq(o, name)
    const row = endState.members.find((m) => m.id === known.ids[name] && m.seq === seq)
    const inWindow = all.filter((s) => s.seq <= o.endSeq && s.seq >= stateAt(o.startSeq).seq)
    for (const a of actions) {
      if (a._tag !== "Start") continue
      const legit = inWindow.some((s) =>
        s.slots[a.slot]!.holder === known.ids[name] && s.slots[a.slot]!.owner === known.ids[name] &&
        s.slots[a.slot]!.generation === a.generation
      )
      if (!legit) out.push(`${o.op}: ${name} starts slot ${a.slot}@${a.generation}, never held and owned so in its window`)
      if (row !== undefined) {
        claims.push({ id: row.id, seq: row.seq, slot: a.slot, generation: a.generation, from: endState.seq, why: o.op })
      }
    }
  }
  for (const s of all) {
    const working = new Map<number, Claim>()
    for (const c of claims) {
      if (s.seq < c.from || !s.members.some((m) => m.id === c.id && m.seq === c.seq)) continue
      const x = s.slots[c.slot]!
      if (x.holder !== c.id || x.generation !== c.generation) {
        out.push(
          `${label(c.id)}#${c.seq} works slot ${c.slot}@${c.generation} (${c.why}) while it is ${label(x.holder)}@${x.generation} in ${
            fmt(s)
          }`
        )
      }
      const other = working.get(c.slot)
      if (other !== undefined && (other.id !== c.id || other.seq !== c.seq)) {
        out.push(`slot ${c.slot} worked by ${label(other.id)}#${other.seq} and ${label(c.id)}#${c.seq} in ${fmt(s)}`)
      }
      working.set(c.slot, c)
    }
  }

  // (5)
  for (const s of all.filter((x) => x.kind === "fence")) {
    const m = s.mark!
    const x = s.slots[m.slot]!
    const row = rowOf(s, m.member)
    if (x.holder !== m.member || x.generation !== m.generation || row?.seq !== m.seq || row?.live !== true) {
      out.push(
        `${m.tag} of ${label(m.member)}#${m.seq} on slot ${m.slot}@${m.generation} committed in ${fmt(s)}`
      )
    }
  }
  for (const op of Object.keys(fencedTargets)) {
    const said = r.outcomes.filter((o) => o.op === op && o.fencedCommitted === true).length
    const did = all.filter((s) => s.mark?.tag === op).length
    if (said !== did) out.push(`${op}: ${said} answered committed, ${did} committed`)
  }

  for (const o of r.outcomes) if (o.error !== undefined) out.push(`${o.op} failed: ${o.error}`)
  return out
}
