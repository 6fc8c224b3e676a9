/**
 * The overview's group list in a database that has seen more groups than it shows: the groups with
 * live members are listed, and the count of all groups says the list was cut.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { randomUUID } from "node:crypto"
import * as Queries from "../../cli/src/ui/queries.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"

const StoreLive = PgMembershipStore.layer().pipe(Layer.provideMerge(PgLive))

it.live("more groups than the overview shows: the live ones are listed, and the total says the list was cut", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const store = yield* MembershipStore
    const live = randomGroupId("ui-list")
    const member = { memberId: randomUUID(), name: "a", host: "host-1", pid: 42 }
    yield* store.join(live, member, 60_000)
    // Old empty groups whose ids sort before the live one's (a long-lived database keeps such rows).
    const prefix = `0-ui-list-${randomUUID().slice(0, 8)}-`
    yield* sql`INSERT INTO modulo_group.groups (group_id, changed_at)
               SELECT ${prefix} || lpad(i::text, 4, '0'), now() - interval '1 day'
                 FROM generate_series(1, ${Queries.GROUPS_SHOWN + 1}) i`
    yield* Effect.gen(function*() {
      const list = yield* Queries.groups
      expect(list.groups.length).toBe(Queries.GROUPS_SHOWN)
      expect(list.total).toBeGreaterThanOrEqual(Queries.GROUPS_SHOWN + 2)
      expect(list.groups.find((g) => g.groupId === live)).toMatchObject({ size: 1, members: 1, healthy: 1 })
      // Shown in id order (the database's collation).
      const ids = list.groups.map((g) => g.groupId)
      const [sorted] = yield* sql<{ ids: Array<string> }>`SELECT array_agg(g ORDER BY g) AS ids FROM unnest(${ids}::text[]) g`
      expect(ids).toEqual(sorted!.ids)
    }).pipe(
      Effect.ensuring(
        Effect.orDie(sql`DELETE FROM modulo_group.groups WHERE group_id LIKE ${prefix + "%"}`).pipe(
          Effect.zipRight(Effect.orDie(store.leave(live, member.memberId)))
        )
      )
    )
  }).pipe(Effect.provide(StoreLive)))
