/**
 * A lease cut short during a fenced transaction's COMMIT, after its commit-time check read the lease,
 * by the member's own store: two findings of one review of 5004ff8.
 *
 * G6: a busy leave's \`expireLease\` tried the member's advisory lock on the id as its caller spelt it,
 * while a fence takes it on the id's canonical (lower-case) form: a member joined with its uuid in upper
 * case, its leave behind the fence's shared group lock ("busy") found the lock free and ended the lease
 * during the fenced COMMIT (which wrote the body's notifications): \`fencedWith\` reported success for a
 * commit 0.8-1.1 s past the lease's end. Now both key the lock on the id as a uuid (\`::uuid::text\`).
 *
 * G6: a renewal set \`lease_expires_at = now + leaseMs\`, so a renewal with a
 * shorter lease (a store's \`heartbeat\` called with 20 ms) ended the lease early during a fenced
 * COMMIT (an UPDATE of no key column: the fence's \`FOR KEY SHARE\` does not wait for it), after the
 * commit-time check read it; the COMMIT was far shorter than the lease left at the fence's last
 * statement, so nothing read it again, and \`fencedWith\` reported success for a commit 1.1 s past the
 * lease's end. Now a renewal cuts a lease back only when it gets the member's advisory lock, which a
 * fence holds shared until its transaction ends (in slots mode too: \`fenceSlotMember\`).
 *
 * G6, a review of 3106a5f: a static member's release (\`releaseMember\`: the lease ends now) runs under
 * the group's lock, which a slots-mode fence does not take (the store allows a static member in slots
 * mode; \`Membership\` does not yet): it ended the lease during the fenced COMMIT, 246-404 ms past, a
 * success. Now a release ends the lease only when it gets the member's advisory lock (else the lease
 * runs out; the row is released all the same, and a takeover waits for the lease's end).
 */
import { SqlClient } from "@effect/sql"
import type { Connection } from "@effect/sql/SqlConnection"
import { PgClient } from "@effect/sql-pg"
import { expect, it } from "@effect/vitest"
import { Context, Duration, Effect, Either, Fiber, Layer, Redacted, Ref } from "effect"
import { randomUUID } from "node:crypto"
import * as Fenced from "../../src/Fenced.js"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as Migrations from "../../src/Migrations.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { databaseUrl, randomGroupId } from "../support/Database.js"
import { leaseEndPoll, proxy } from "./support.js"

const attempt = (spell: (id: string) => string, mode: "leave" | "renew" | "release" = "leave", slots?: number) =>
  Effect.gen(function*() {
    const ctx = yield* Layer.build(Notifier.layer.pipe(Layer.provideMerge(PgClient.layer({ url: Redacted.make(databaseUrl()), applicationName: "leaseCutDuringCommit", maxConnections: 6 }))))
    yield* Migrations.run.pipe(Effect.provide(ctx))
    const sql = yield* SqlClient.SqlClient.pipe(Effect.provide(ctx))
    const store = yield* PgMembershipStore.make({ statementTimeout: Duration.millis(300) }).pipe(Effect.provide(ctx))
    const groupId = randomGroupId("lease-cut-during-commit")
    const memberId = spell(randomUUID())
    const statics = mode === "release" ? { instanceId: `w-${memberId.slice(0, 8)}`, rejoinGraceMs: 5_000 } : {}
    // The set-up's join, tried again when it times out (300 ms, this store's bound for the leave under
    // test): with the chaos runs beside this file it did, once in four runs on a loaded machine.
    const view = yield* store.join(groupId, { memberId, name: "M", host: "h", pid: 1 }, 60_000, statics, slots === undefined ? {} : { slots }).pipe(
      Effect.retry({ times: 3, while: (e) => e.reason.startsWith("timed out") })
    )
    // Slots mode: the slots this member holds (a group's first member holds them all).
    const held = slots === undefined ? [] : yield* sql<{ slot: number; generation: string }>`
      SELECT slot, generation FROM modulo_group.slots WHERE group_id = ${groupId} AND holder = ${memberId}::uuid ORDER BY slot`
    const table = `att_${groupId.replace(/-/g, "_")}`
    yield* sql`CREATE TABLE ${sql(table)} (note text NOT NULL)`
    const outside = Effect.mapInputContext((c: Context.Context<never>) => Context.omit(SqlClient.TransactionConnection)(c))
    const { poll, unseenAfterEnd } = yield* leaseEndPoll(sql, { table, note: "w", groupId, memberId })
    const fibers: Array<Fiber.RuntimeFiber<unknown, unknown>> = []
    const leaveResult = yield* Ref.make<unknown>(undefined)
    const atCommit = Effect.gen(function*() {
      fibers.push(yield* Effect.forkDaemon(Effect.repeat(Effect.zipLeft(poll, Effect.sleep("10 millis")), { until: (s) => s })))
      fibers.push(yield* Effect.forkDaemon(
        (mode === "leave"
          ? Effect.asVoid(store.leave(groupId, memberId))
          : mode === "release"
          ? Effect.asVoid(store.release(groupId, memberId))
          : Effect.asVoid(store.heartbeat(groupId, memberId, view.epoch, 20, slots === undefined ? {} : { slots: true }))).pipe(Effect.either, Effect.flatMap((r) => Ref.set(leaveResult, r)), outside)
      ))
    })
    const client = proxy(sql, {
      reserve: Effect.map(sql.reserve, (conn) =>
        proxy<Connection>(conn, {
          executeUnprepared: (statement, params, t) =>
            statement.trim().toUpperCase() === "COMMIT"
              ? Effect.zipRight(atCommit, conn.executeUnprepared(statement, params, t))
              : conn.executeUnprepared(statement, params, t)
        }))
    })
    const target = slots === undefined
      ? { groupId, memberId, epoch: view.epoch, index: view.index, size: view.size }
      : { groupId, memberId, epoch: -1, index: -1, size: 0, slots: held.map((h) => ({ slot: h.slot, generation: Number(h.generation) })) }
    const result = yield* Effect.either(Fenced.fencedWith(target, Effect.gen(function*() {
      yield* sql`INSERT INTO ${sql(table)} (note) VALUES ('w')`
      yield* sql`SELECT count(pg_notify('modulo_group_test_lease_cut_during_commit', i::text || repeat('x', 2000))) FROM generate_series(1, 60000) i`
    }), { timeout: "10 seconds" }).pipe(Effect.provideService(SqlClient.SqlClient, client)))
    for (const f of fibers) yield* Fiber.join(f).pipe(Effect.timeout("30 seconds"), Effect.ignore)
    yield* sql`DROP TABLE ${sql(table)}`
    const r = {
      spelled: memberId.slice(0, 8),
      ok: Either.isRight(result),
      error: Either.isLeft(result) ? String(result.left) : undefined,
      leave: yield* Ref.get(leaveResult),
      committedAfterLeaseEndedMs: yield* Ref.get(unseenAfterEnd)
    }
    return r
  }).pipe(Effect.scoped)

it.live("G6: a busy leave of a member id given in upper case does not end the lease while the fenced COMMIT lands", () =>
  Effect.gen(function*() {
    const control = yield* attempt((id) => id)
    const upper = yield* attempt((id) => id.toUpperCase())
    // Control (canonical id): the leave's try-lock finds the fence's lock, no lease ended mid-COMMIT.
    expect(control.ok && control.committedAfterLeaseEndedMs !== undefined).toBe(false)
    // The guarantee: fenced reports success only for a commit made while the lease was current.
    expect(upper.ok && upper.committedAfterLeaseEndedMs !== undefined).toBe(false)
  }), 120_000)

it.live("G6: a renewal with a shorter lease (20 ms) during a fenced COMMIT does not end the lease before it lands", () =>
  Effect.gen(function*() {
    const r = yield* attempt((id) => id, "renew")
    expect(r.ok && r.committedAfterLeaseEndedMs !== undefined).toBe(false)
  }), 120_000)

it.live("G6: the same in slots mode", () =>
  Effect.gen(function*() {
    const r = yield* attempt((id) => id, "renew", 8)
    expect(r.error ?? "").not.toMatch(/no slots were given/)
    expect(r.ok && r.committedAfterLeaseEndedMs !== undefined).toBe(false)
  }), 120_000)

it.live("G6: a static member's release during its fenced COMMIT does not end the lease before it lands (modulo: it waits for the fence; slots mode: it leaves the lease to run out)", () =>
  Effect.gen(function*() {
    const modulo = yield* attempt((id) => id, "release")
    expect(modulo.ok && modulo.committedAfterLeaseEndedMs !== undefined).toBe(false)
    const slots = yield* attempt((id) => id, "release", 8)
    expect(slots.error ?? "").not.toMatch(/no slots were given/)
    expect(slots.ok && slots.committedAfterLeaseEndedMs !== undefined).toBe(false)
  }), 120_000)
