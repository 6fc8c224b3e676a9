/**
 * A member row moved to another group and back (G2, modulo mode; a review of migration 0016; the same
 * root as test/slots/rowAwayAndBack.pg.test.ts). The record of indices found
 * missing (0015) is forgotten by row triggers on INSERT, UPDATE OF idx and (0016) UPDATE OF member_id,
 * never when a row's group_id changes. A row moved to another group by hand and moved back is a row
 * put back by hand; its record stays, and when the same row goes again later the change is made on
 * the first incident's record, at once, while the row's member may still work its index.
 *
 * Interleaving (store level, leases 1 s, as missingRowRecord.pg.test.ts's delete/put back/delete):
 *   y's row moved to another group; a reap records {idx(y)} missing; the row is moved back (the record
 *   should go: it stays); 1.2 s later (longer than the first wait) y's row moved away again; a join.
 * Before the fix (migration 0017: the trigger fires on UPDATE OF group_id too): the join went through at
 * once ("ok"), where a delete/put back/delete is held
 * (/have no member row/).
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import * as Notifier from "../../src/internal/pg/notifier.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { StoreLive } from "../faults/support.js"
import { randomGroupId } from "../support/Database.js"

const info = (name: string) => ({ memberId: crypto.randomUUID(), host: "test", pid: 1, name })
const reasonOf = (e: Either.Either<unknown, { readonly reason: string }>) => (Either.isLeft(e) ? e.left.reason : "ok")

it.live("G2: a row moved to another group and back, then moved again after the first wait: the wait starts anew", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const groupId = randomGroupId("move-modulo")
    const away = `${groupId}-away`
    const store = yield* Effect.provide(PgMembershipStore.make(), Notifier.layer)
    const [x, y, z] = [info("x"), info("y"), info("z")]
    for (const m of [x, y, z]) yield* store.join(groupId, m, 1_000)
    yield* sql`INSERT INTO modulo_group.groups SELECT * FROM jsonb_populate_record(NULL::modulo_group.groups,
      (SELECT to_jsonb(g) || jsonb_build_object('group_id', ${away}::text) FROM modulo_group.groups g WHERE g.group_id = ${groupId}))`
    yield* sql`UPDATE modulo_group.members SET group_id = ${away} WHERE member_id = ${y.memberId}`
    expect(reasonOf(yield* Effect.either(store.reap(groupId)))).toMatch(/have no member row/)
    yield* sql`UPDATE modulo_group.members SET group_id = ${groupId} WHERE member_id = ${y.memberId}`
    const [r] = yield* sql<{ indices: ReadonlyArray<number> | null }>`SELECT missing_indices AS indices FROM modulo_group.groups WHERE group_id = ${groupId}`
    console.log(`record after the row came back: ${JSON.stringify(r?.indices)}`)
    yield* Effect.sleep("1200 millis")
    yield* sql`UPDATE modulo_group.members SET group_id = ${away} WHERE member_id = ${y.memberId}`
    expect(reasonOf(yield* Effect.either(store.join(groupId, info("w"), 1_000)))).toMatch(/have no member row/)
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)
