/**
 * Statement-level interleavings on real PostgreSQL. Operation A runs one statement at a time (the
 * store's `onStatement` hook, and a `Statement` transformer for fenced transactions, pause it before
 * its k-th statement); while it is paused, operation B runs to completion or until it waits for a
 * lock (seen in `pg_stat_activity`); then A finishes, then B.
 *
 * Ground truth comes from the database itself. In a database of the explorer's own, deferred
 * constraint triggers on the membership tables log the group's whole state (epoch, size, every
 * member's index, acknowledgement and stamps) as each transaction commits, in commit order; a
 * fenced transaction's body inserts a mark whose trigger logs the state at that transaction's
 * COMMIT. Only A and B run, and A is resumed only when B is done or blocked, so no two commits race
 * and the log is the sequence of committed states.
 */
import { SqlClient } from "@effect/sql"
import * as Statement from "@effect/sql/Statement"
import { Deferred, Duration, Effect, Fiber, FiberRef, Option } from "effect"
import { randomUUID } from "node:crypto"
import pg from "pg"
import { fencedWith } from "../../src/Fenced.js"
import { InstanceBusy } from "../../src/MembershipError.js"
import type { GroupView, MemberRow, MembershipStoreService } from "../../src/MembershipStore.js"
import { MemberState } from "../../src/MemberState.js"
import * as Transition from "../../src/Transition.js"
import { ownDatabase, randomGroupId } from "../support/Database.js"

// --- the explorer's database ------------------------------------------------------------------

/** A database of the explorer's own (its triggers must not see other suites), dropped at scope end. */
export const explorerDatabase = ownDatabase("explorer", { maxConnections: 8, applicationName: "mg-explorer" })

/** The commit log: run once after the migrations. */
export const installLog = `
  CREATE TABLE public.mg_explorer_log (
    seq      bigserial PRIMARY KEY,
    xid      xid8   NOT NULL,
    kind     text   NOT NULL,
    group_id text   NOT NULL,
    epoch    bigint NOT NULL,
    size     int    NOT NULL,
    members  jsonb  NOT NULL
  );
  CREATE INDEX ON public.mg_explorer_log (group_id, xid);
  CREATE TABLE public.mg_explorer_marks (group_id text NOT NULL);
  CREATE FUNCTION public.mg_explorer_snap() RETURNS trigger LANGUAGE plpgsql AS $$
  DECLARE
    gid  text := CASE WHEN TG_OP = 'DELETE' THEN OLD.group_id ELSE NEW.group_id END;
    k    text := CASE WHEN TG_TABLE_NAME = 'mg_explorer_marks' THEN 'fence' ELSE 'state' END;
  BEGIN
    IF EXISTS (SELECT 1 FROM public.mg_explorer_log l
                WHERE l.xid = pg_current_xact_id() AND l.group_id = gid AND l.kind = k) THEN
      RETURN NULL;
    END IF;
    INSERT INTO public.mg_explorer_log (xid, kind, group_id, epoch, size, members)
    SELECT pg_current_xact_id(), k, g.group_id, g.epoch, g.size,
           coalesce((SELECT jsonb_agg(jsonb_build_object(
                              'id', m.member_id, 'idx', m.idx, 'acked', m.acked_epoch,
                              'ae', m.assigned_epoch, 'as', m.assigned_size) ORDER BY m.join_seq)
                       FROM modulo_group.members m WHERE m.group_id = g.group_id), '[]'::jsonb)
      FROM modulo_group.groups g WHERE g.group_id = gid;
    RETURN NULL;
  END $$;
  CREATE CONSTRAINT TRIGGER mg_explorer_members AFTER INSERT OR UPDATE OR DELETE ON modulo_group.members
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.mg_explorer_snap();
  CREATE CONSTRAINT TRIGGER mg_explorer_groups AFTER INSERT OR UPDATE ON modulo_group.groups
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.mg_explorer_snap();
  CREATE CONSTRAINT TRIGGER mg_explorer_marks AFTER INSERT ON public.mg_explorer_marks
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.mg_explorer_snap();
`

export interface MemberSnap {
  readonly id: string
  readonly idx: number | null
  readonly acked: number
  readonly ae: number
  readonly as: number
}

export interface Snap {
  readonly seq: number
  readonly kind: "state" | "fence"
  readonly epoch: number
  readonly size: number
  readonly members: ReadonlyArray<MemberSnap>
}

/** Observer queries on a plain pool of their own: no hook, no transformer, never blocked. */
export const makeObserver = (url: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const pool = new pg.Pool({ connectionString: url, max: 3, application_name: "mg-explorer-observer" })
      pool.on("error", () => undefined)
      return pool
    }),
    (pool) => Effect.promise(() => pool.end())
  ).pipe(Effect.map((pool) => {
    const q = <R extends pg.QueryResultRow>(text: string, values: ReadonlyArray<unknown> = []) =>
      Effect.promise(() => pool.query<R>(text, values as Array<unknown>))
    return {
      query: q,
      maxSeq: (gid: string) =>
        Effect.map(
          q<{ s: string | null }>("SELECT max(seq) AS s FROM public.mg_explorer_log WHERE group_id = $1", [gid]),
          (r) => Number(r.rows[0]?.s ?? 0)
        ),
      /** Backends of the explorer's database waiting for a lock (only B can be). */
      lockWaiters: Effect.map(
        q<{ n: string }>(
          `SELECT count(*) AS n FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock'`
        ),
        (r) => Number(r.rows[0]!.n)
      ),
      snaps: (gid: string) =>
        Effect.map(
          q<{ seq: string; kind: "state" | "fence"; epoch: string; size: number; members: Array<MemberSnap> }>(
            "SELECT seq, kind, epoch, size, members FROM public.mg_explorer_log WHERE group_id = $1 ORDER BY seq",
            [gid]
          ),
          (r) =>
            r.rows.map((row): Snap => ({
              seq: Number(row.seq),
              kind: row.kind,
              epoch: Number(row.epoch),
              size: Number(row.size),
              members: row.members.map((m) => ({
                id: m.id,
                idx: m.idx,
                acked: Number(m.acked),
                ae: Number(m.ae),
                as: Number(m.as)
              }))
            }))
        )
    }
  }))

export type Observer = Effect.Effect.Success<ReturnType<typeof makeObserver>>

// --- pausing A --------------------------------------------------------------------------------

export interface Pause {
  readonly at: number
  count: number
  readonly steps: Array<string>
  readonly paused: Deferred.Deferred<string>
  readonly resume: Deferred.Deferred<void>
}

/** A fresh pause at statement boundary `at` (-1: never pause, only count the steps). */
export const makePause = (at: number): Effect.Effect<Pause> =>
  Effect.gen(function*() {
    return {
      at,
      count: 0,
      steps: [],
      paused: yield* Deferred.make<string>(),
      resume: yield* Deferred.make<void>()
    }
  })

/** Set on A's fiber only: where to pause, and the steps it went through. */
export const controlled = FiberRef.unsafeMake<Pause | undefined>(undefined)

/** Times B found the group's lock held by A and backed off (a change waits without a backend). */
let busyB = 0

/** The store's `onStatement` hook (and the fenced transformer's): pauses A before its `at`-th statement. */
export const onStatement = (operation: string, step: string): Effect.Effect<void> =>
  Effect.flatMap(FiberRef.get(controlled), (p) => {
    if (p === undefined) {
      if (step === "busy") busyB++
      return Effect.void
    }
    const k = p.count++
    p.steps.push(`${operation}:${step}`)
    return k === p.at ? Effect.zipRight(Deferred.succeed(p.paused, step), Deferred.await(p.resume)) : Effect.void
  })

/** Hooks every statement of `effect` (for fenced transactions, which the store's hook does not see). */
const stepwise = <A, E, R>(operation: string, effect: Effect.Effect<A, E, R>) =>
  Statement.withTransformer(effect, (statement) => {
    const text = statement.compile()[0].replace(/\s+/g, " ").trim().slice(0, 40)
    return Effect.as(onStatement(operation, text), statement)
  })

/** How an interleaving went: where A paused, what B did meanwhile, both outcomes, A's steps. */
export interface Interleaved<A, B> {
  /** The step A was paused before, or "end" (A ran to completion first). */
  readonly pausedAt: string
  /** What B did while A was paused: finished, waited for a lock (or backed off), or neither within 3 s. */
  readonly b: "done" | "blocked" | "slow" | "after"
  readonly outcomeA: A
  readonly outcomeB: B
  readonly steps: ReadonlyArray<string>
}

/**
 * One interleaving: A runs until its `k`-th statement boundary (`controlled`), then B runs to
 * completion or until it waits for a lock or backs off from a busy one; then A resumes and both are
 * joined (each bounded by `timeout`, past which its `timedOut` outcome stands). When A finishes
 * before its `k`-th boundary, B runs after it.
 */
export const interleave = <A, B, R>(options: {
  readonly k: number
  readonly a: Effect.Effect<A, never, R>
  readonly b: Effect.Effect<B, never, R>
  readonly aTimedOut: () => A
  readonly bTimedOut: () => B
  readonly observer: Observer
  readonly timeout: Duration.Duration
}): Effect.Effect<Interleaved<A, B>, never, R> =>
  Effect.gen(function*() {
    const within = <X, R2>(effect: Effect.Effect<X, never, R2>, onTimeout: () => X) =>
      Effect.timeoutTo(effect, { duration: options.timeout, onSuccess: (x: X) => x, onTimeout })
    const pause = yield* makePause(options.k)
    const fa = yield* Effect.fork(Effect.locally(options.a, controlled, pause))
    const first = yield* Effect.raceFirst(
      Effect.map(Deferred.await(pause.paused), (step): string | undefined => step),
      Effect.as(Fiber.await(fa), undefined)
    )
    if (first === undefined) {
      const outcomeA = yield* within(Fiber.join(fa), options.aTimedOut)
      const outcomeB = yield* within(options.b, options.bTimedOut)
      return { pausedAt: "end", b: "after", outcomeA, outcomeB, steps: pause.steps }
    }
    busyB = 0
    const fb = yield* Effect.fork(options.b)
    const t0 = Date.now()
    let b: Interleaved<A, B>["b"]
    while (true) {
      if (Option.isSome(yield* Fiber.poll(fb))) {
        b = "done"
        break
      }
      // Blocked: waiting for a lock, or (a change behind A's change) backing off to try again.
      if (busyB > 0 || (yield* options.observer.lockWaiters) > 0) {
        b = "blocked"
        break
      }
      if (Date.now() - t0 > 3_000) {
        b = "slow"
        break
      }
      yield* Effect.sleep(Duration.millis(2))
    }
    yield* Deferred.succeed(pause.resume, undefined)
    const outcomeA = yield* within(Fiber.join(fa), options.aTimedOut)
    const outcomeB = yield* within(Fiber.join(fb), options.bTimedOut)
    return { pausedAt: first, b, outcomeA, outcomeB, steps: pause.steps }
  })

// --- the known state and the operations -------------------------------------------------------

export const LEASE_MS = 60_000
/** a's rejoin grace: longer than any schedule, so its released row is held throughout. */
const STATIC_GRACE_MS = 3_600_000

/**
 * Epoch 4, size 4: a (index 0), b (1), x (2, lease expired), c (3), stamped with epoch 4 as a change
 * would have. Everyone has acknowledged 4 but b (still at 2, as after its own join): the barrier is
 * up, and b's next heartbeat lowers it. a is a static member (instance id "ia", a grace of an hour):
 * `release` releases it, `takeover` is e joining with its instance id.
 */
/**
 * The store id (`writer`, migration 0012) on the known state's rows: both stores of a schedule are
 * given it (`PgMembershipStore.make({ writer })`), as the process that wrote those rows. A row with
 * no writer, or another, is another process's member, which no operation of these stores touches.
 */
export const explorerWriter = randomUUID()

export const setupGroup = (observer: Observer) =>
  Effect.gen(function*() {
    const gid = randomGroupId("ex")
    const ids = {
      a: randomUUID(),
      b: randomUUID(),
      x: randomUUID(),
      c: randomUUID(),
      d: randomUUID(),
      e: randomUUID()
    }
    const epoch = 4
    yield* observer.query(
      `WITH g AS (
         INSERT INTO modulo_group.groups (group_id, epoch, size, changed_at) VALUES ($1, ${epoch}, 4, now()) RETURNING group_id
       )
       INSERT INTO modulo_group.members
         (member_id, group_id, idx, acked_epoch, assigned_epoch, assigned_size, lease_expires_at, heartbeat_at, joined_at, name,
          instance_id, rejoin_grace_ms, writer)
       SELECT v.id::uuid, g.group_id, v.idx, v.acked, ${epoch}, 4,
              now() + CASE WHEN v.expired THEN interval '-1 hour' ELSE ${LEASE_MS} * interval '1 millisecond' END,
              now(), now(), v.name,
              CASE WHEN v.name = 'a' THEN 'ia' END, CASE WHEN v.name = 'a' THEN ${STATIC_GRACE_MS} ELSE 0 END, $6::uuid
         FROM g, (VALUES ($2, 0, ${epoch}, false, 'a', 1), ($3, 1, 2, false, 'b', 2),
                         ($4, 2, ${epoch}, true, 'x', 3), ($5, 3, ${epoch}, false, 'c', 4))
                 AS v (id, idx, acked, expired, name, ord)
        ORDER BY v.ord`,
      [gid, ids.a, ids.b, ids.x, ids.c, explorerWriter]
    )
    const [row] = (yield* observer.query<{ incarnation: string }>(
      "SELECT incarnation FROM modulo_group.groups WHERE group_id = $1",
      [gid]
    )).rows
    return { gid, ids, epoch, incarnation: Number(row!.incarnation) }
  })

export type Known = Effect.Effect.Success<ReturnType<typeof setupGroup>>

/** What an operation returned, and the log positions around it. */
export interface Outcome {
  readonly op: string
  readonly member?: "a" | "b" | "c" | "d" | "e" | undefined
  /** `takeover` found a's instance id held by a live member (an answer: nothing changed). */
  readonly busy?: boolean | undefined
  readonly view?: GroupView | undefined
  readonly rows?: ReadonlyArray<MemberRow> | undefined
  readonly fencedCommitted?: boolean | undefined
  readonly error?: string | undefined
  readonly startSeq: number
  readonly endSeq: number
}

export const operations = [
  "join",
  "leave",
  "reap",
  "hb-renew",
  "hb-ack",
  "hb-move",
  "members",
  "fenced",
  "release",
  "takeover"
] as const
export type Operation = (typeof operations)[number]

const describeError = (e: unknown): string => {
  const tag = (e as { _tag?: unknown })?._tag
  const reason = (e as { reason?: unknown; message?: unknown })?.reason ?? (e as { message?: unknown })?.message
  return `${String(tag ?? "error")}: ${String(reason ?? e)}`
}

/** Runs one operation against the known group; never fails (an error is part of the outcome). */
export const runOperation = (
  op: Operation,
  known: Known,
  store: MembershipStoreService,
  observer: Observer
): Effect.Effect<Outcome, never, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const { gid, ids, epoch } = known
    const startSeq = yield* observer.maxSeq(gid)
    const heartbeat = (member: "a" | "b" | "c") =>
      Effect.map(store.heartbeat(gid, ids[member], epoch, LEASE_MS), (v) => ({ member, view: Option.getOrUndefined(v) }))
    const body: Effect.Effect<Omit<Outcome, "op" | "startSeq" | "endSeq">, unknown, SqlClient.SqlClient> = (() => {
      switch (op) {
        case "join":
          return Effect.map(
            store.join(gid, { memberId: ids.d, name: "d", host: "explorer", pid: 0 }, LEASE_MS),
            (view) => ({ member: "d" as const, view })
          )
        case "leave":
          return Effect.as(store.leave(gid, ids.a), {})
        case "reap":
          return Effect.as(store.reap(gid), {})
        case "hb-renew":
          return heartbeat("a")
        case "hb-ack":
          return heartbeat("b")
        case "hb-move":
          return heartbeat("c")
        case "members":
          return Effect.map(store.members(gid), (rows) => ({ rows }))
        case "release":
          return Effect.as(store.release(gid, ids.a), {})
        case "takeover":
          return store.join(gid, { memberId: ids.e, name: "e", host: "explorer", pid: 0 }, LEASE_MS, {
            instanceId: "ia",
            rejoinGraceMs: STATIC_GRACE_MS
          }).pipe(
            Effect.map((view) => ({ member: "e" as const, view })),
            Effect.catchIf((e) => e instanceof InstanceBusy, () => Effect.succeed({ busy: true }))
          )
        case "fenced":
          return Effect.flatMap(SqlClient.SqlClient, (sql) =>
            stepwise(
              "fenced",
              fencedWith(
                { groupId: gid, memberId: ids.c, epoch, index: 3, size: 4 },
                sql`INSERT INTO public.mg_explorer_marks (group_id) VALUES (${gid})`,
                { timeout: Duration.seconds(8) }
              )
            ).pipe(
              Effect.as({ fencedCommitted: true }),
              Effect.catchIf(
                (e) => (e as { _tag?: unknown })._tag === "StaleAssignment",
                () => Effect.succeed({ fencedCommitted: false })
              )
            ))
      }
    })()
    const result = yield* Effect.either(body)
    const endSeq = yield* observer.maxSeq(gid)
    return result._tag === "Right"
      ? { op, ...result.right, startSeq, endSeq }
      : { op, error: describeError(result.left), startSeq, endSeq }
  })

// --- one schedule -----------------------------------------------------------------------------

export interface Schedule {
  readonly a: Operation
  readonly b: Operation
  readonly k: number
}

export interface ScheduleResult {
  readonly schedule: Schedule
  readonly known: Known
  /** Where A was when B ran: the step it was paused before, or "end" (A ran to completion first). */
  readonly pausedAt: string
  /** What B did while A was paused: finished, waited for a lock, or neither within the bound. */
  readonly b: "done" | "blocked" | "slow" | "after"
  readonly outcomes: ReadonlyArray<Outcome>
  readonly snaps: ReadonlyArray<Snap>
  readonly steps: ReadonlyArray<string>
  readonly ms: number
}

const opTimeout = Duration.seconds(10)

export const runSchedule = (
  schedule: Schedule,
  store: MembershipStoreService,
  observer: Observer,
  /**
   * B's store: another process's (a store's own changes of a group take turns in the process, so B
   * on A's store would wait for A's turn in the process, not interleave with it in the database).
   */
  storeB: MembershipStoreService = store
): Effect.Effect<ScheduleResult, never, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const started = Date.now()
    const known = yield* setupGroup(observer)
    const r = yield* interleave({
      k: schedule.k,
      a: runOperation(schedule.a, known, store, observer),
      b: runOperation(schedule.b, known, storeB, observer),
      aTimedOut: (): Outcome => ({ op: schedule.a, error: `did not finish within ${Duration.format(opTimeout)}`, startSeq: 0, endSeq: 0 }),
      bTimedOut: (): Outcome => ({ op: schedule.b, error: `did not finish within ${Duration.format(opTimeout)}`, startSeq: 0, endSeq: 0 }),
      observer,
      timeout: opTimeout
    })
    const snaps = yield* observer.snaps(known.gid)
    return {
      schedule,
      known,
      pausedAt: r.pausedAt,
      b: r.b,
      outcomes: [r.outcomeA, r.outcomeB],
      snaps,
      steps: r.steps,
      ms: Date.now() - started
    }
  })

/** How many statements `op` sends on its own from the known state (its boundaries are 0..n). */
export const countSteps = (op: Operation, store: MembershipStoreService, observer: Observer) =>
  Effect.gen(function*() {
    const known = yield* setupGroup(observer)
    const pause = yield* makePause(-1)
    yield* Effect.locally(runOperation(op, known, store, observer), controlled, pause)
    return pause.steps
  })

// --- the checks -------------------------------------------------------------------------------

const label = (known: Known, id: string): string =>
  (Object.entries(known.ids).find(([, v]) => v === id)?.[0]) ?? id

/** The committed states an operation may have seen: the one current at its start, through its end. */
const windowOf = (snaps: ReadonlyArray<Snap>, o: Outcome): ReadonlyArray<Snap> => {
  const states = snaps.filter((s) => s.kind === "state")
  const before = states.filter((s) => s.seq <= o.startSeq)
  const from = before.length > 0 ? before[before.length - 1]!.seq : -Infinity
  return states.filter((s) => s.seq >= from && s.seq <= o.endSeq)
}

const barrierDown = (s: Snap, epoch: number) => s.members.every((m) => m.acked >= epoch)

/** Violations of (i)-(iv) and G6 in one schedule; empty when all hold. */
export const check = (r: ScheduleResult): Array<string> => {
  const out: Array<string> = []
  const { known, snaps } = r
  const states = snaps.filter((s) => s.kind === "state")
  const fmt = (s: Snap) =>
    `#${s.seq} e${s.epoch}/n${s.size} [${s.members.map((m) => `${label(known, m.id)}:${m.idx}@${m.acked}`).join(" ")}]`

  // (ii) G1 in every committed state, one assignment per epoch; and every row stamped with the
  // state's epoch and size (what lets a renewal tell which state it read).
  const byEpoch = new Map<number, string>()
  for (const s of states) {
    // A waiting joiner's row (a deferred or busy join: no index, never stamped, acknowledging the
    // epoch it waited in; src/internal/pg/statements.ts `member`) is in no assignment.
    const members = s.members.filter((m) => !(m.idx === null && m.ae === 0))
    const idx = members.map((m) => m.idx).sort((x, y) => (x ?? -1) - (y ?? -1))
    if (members.length !== s.size || !idx.every((x, i) => x === i)) out.push(`G1 broken in ${fmt(s)}`)
    // A takeover (e taking over a's released row) keeps the row's index in the same epoch under a new
    // member id: the same assignment, by instance. Any other change of ids within an epoch is not.
    const assignment = JSON.stringify([
      s.size,
      members.map((m) => [m.id === known.ids.e ? known.ids.a : m.id, m.idx])
    ])
    const prev = byEpoch.get(s.epoch)
    if (prev !== undefined && prev !== assignment) out.push(`two assignments in epoch ${s.epoch}: ${fmt(s)}`)
    byEpoch.set(s.epoch, assignment)
    for (const m of members) {
      if (m.ae !== s.epoch || m.as !== s.size) {
        out.push(`row ${label(known, m.id)} stamped e${m.ae}/n${m.as} in ${fmt(s)}`)
      }
    }
  }

  for (const o of r.outcomes) {
    // (iv) every operation finished, without an error (a stale fence is an answer, not an error).
    if (o.error !== undefined) out.push(`${o.op} failed: ${o.error}`)
    const window = windowOf(snaps, o)

    // (i) a view is one committed state: epoch, size, own index and acknowledgement together, and
    // the barrier only if that state had every acknowledgement.
    if (o.view !== undefined && o.member !== undefined) {
      const v = o.view
      const me = known.ids[o.member]
      const matches = window.some((s) => {
        const m = s.members.find((x) => x.id === me)
        return m !== undefined && s.epoch === v.epoch && s.size === v.size && m.idx === v.index && m.acked === v.acked &&
          (!v.allAcked || barrierDown(s, v.epoch))
      })
      if (!matches) {
        out.push(
          `${o.op} view e${v.epoch}/n${v.size} index ${v.index} acked ${v.acked} barrier ${v.allAcked} is no committed state of ${
            window.map(fmt).join(", ")
          }`
        )
      }

      // (iii) the decision the member takes on this view, from the state it was in, starts work only
      // where the database assigned it with the barrier down.
      const start: Array<readonly [MemberState, Transition.Event]> = o.op === "join" || o.op === "takeover"
        ? [[MemberState.Joining(), Transition.Event.Joined({ view: v })]]
        : [[
          MemberState.Awaiting({
            epoch: known.epoch,
            index: o.member === "a" ? 0 : o.member === "b" ? 1 : 3,
            size: 4,
            incarnation: known.incarnation
          }),
          Transition.Event.Renewed({ view: v })
        ]]
      for (const [prior, event] of start) {
        const [, commands] = Transition.transition(prior, event)
        for (const c of commands) {
          if (c._tag !== "StartWork") continue
          const ok = window.some((s) => {
            const m = s.members.find((x) => x.id === me)
            return m !== undefined && s.epoch === c.slot.epoch && s.size === c.slot.size && m.idx === c.slot.index &&
              barrierDown(s, c.slot.epoch)
          })
          if (!ok) {
            out.push(`${o.op}: StartWork e${c.slot.epoch} [${c.slot.index}/${c.slot.size}] from ${prior._tag} was never assigned with the barrier down`)
          }
        }
      }
    }

    // (i) member rows are one committed state.
    if (o.rows !== undefined) {
      const rows = o.rows
      const key = (xs: ReadonlyArray<{ id: string; idx: number | null; acked: number }>) =>
        JSON.stringify([...xs].map((x) => [x.id, x.idx, x.acked]).sort())
      const got = key(rows.map((m) => ({ id: m.memberId, idx: m.index, acked: m.ackedEpoch })))
      if (!window.some((s) => key(s.members) === got)) {
        out.push(`members returned a mix: ${got} is none of ${window.map(fmt).join(", ")}`)
      }
    }

  }

  // G6: a fenced transaction commits only while its target is current (the state at its COMMIT), and
  // it answers "committed" exactly when it did.
  const marks = snaps.filter((s) => s.kind === "fence")
  const committed = r.outcomes.filter((o) => o.fencedCommitted === true).length
  if (committed !== marks.length) {
    out.push(`${committed} fenced transaction(s) answered committed but ${marks.length} commit(s) were logged`)
  }
  for (const s of marks) {
    const c = s.members.find((m) => m.id === known.ids.c)
    if (s.epoch !== known.epoch || s.size !== 4 || c?.idx !== 3) {
      out.push(`fenced committed in ${fmt(s)}, not its target e${known.epoch} [3/4]`)
    }
  }
  return out
}
