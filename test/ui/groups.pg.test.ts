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
      // Shown in id order (the old groups differ only in their digits: any collation sorts them alike).
      const old = list.groups.map((g) => g.groupId).filter((id) => id.startsWith(prefix))
      expect(old.length).toBeGreaterThan(0)
      expect(old).toEqual([...old].sort())
    }).pipe(
      Effect.ensuring(
        Effect.orDie(sql`DELETE FROM modulo_group.groups WHERE group_id LIKE ${prefix + "%"}`).pipe(
          Effect.zipRight(Effect.orDie(store.leave(live, member.memberId)))
        )
      )
    )
  }).pipe(Effect.provide(StoreLive)))
