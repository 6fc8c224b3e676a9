/**
 * Migration 0008: the database refuses a slot row update that breaks the fencing token. Found by an
 * adversarial run: a role with the documented grants (UPDATE on modulo_group.slots) moved slot 0 to
 * another member by hand without a new generation, and both members then committed fenced writes
 * with the one token (slot 0, generation 1).
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Either, Layer } from "effect"
import { randomUUID } from "node:crypto"
import type pg from "pg"
import * as Fenced from "../../src/Fenced.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { hostileClient, hostileRole } from "../hostile/support.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { serialised } from "../support/Grants.js"

const StoreLive = PgMembershipStore.layer().pipe(Layer.provideMerge(PgLive))
const info = (name: string) => ({ memberId: randomUUID(), name, host: "test", pid: 1 })

/** The SQLSTATE of a refused statement of `client`, or "ok". */
const attempt = (client: pg.Client, text: string, values: ReadonlyArray<unknown>) =>
  Effect.promise(() =>
    client.query(text, values as Array<unknown>).then(() => "ok", (e: { code?: string }) => String(e.code))
  )

it.live("a hand edit of a slot's holder without a new generation is refused (23514); with one, the old holder's fenced writes fail", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const store = yield* MembershipStore
    const groupId = randomGroupId("slot-guard")
    const table = `mg_guard_${randomUUID().slice(0, 8)}`
    yield* Effect.acquireRelease(sql`CREATE TABLE ${sql(table)} (note text NOT NULL)`, () =>
      Effect.orDie(sql`DROP TABLE IF EXISTS ${sql(table)}`))
    // The documented grants on the slot rows (docs/operations.md), and nothing else.
    const role = yield* hostileRole
    yield* Effect.acquireRelease(
      Effect.zipRight(
        sql.unsafe(serialised(`GRANT USAGE ON SCHEMA modulo_group TO "${role.name}"`)),
        sql.unsafe(serialised(`GRANT SELECT, INSERT, UPDATE ON modulo_group.slots TO "${role.name}"`))
      ),
      () =>
        Effect.orDie(Effect.zipRight(
          sql.unsafe(serialised(`REVOKE ALL ON modulo_group.slots FROM "${role.name}"`)),
          sql.unsafe(serialised(`REVOKE ALL ON SCHEMA modulo_group FROM "${role.name}"`))
        ))
    )
    const client = yield* hostileClient(role)
    const note = (n: string) => sql`INSERT INTO ${sql(table)} (note) VALUES (${n})`
    const fenced = (memberId: string, generation: number, n: string) =>
      Effect.either(Fenced.fencedWith({ groupId, memberId, epoch: -1, index: -1, size: 0, slots: [{ slot: 0, generation }] }, note(n)))

    const [a, b] = [info("a"), info("b")]
    yield* store.join(groupId, a, 60_000, {}, { slots: 2 })
    yield* store.join(groupId, b, 60_000, {}, { slots: 2 })
    const [slot0] = yield* store.slotRows(groupId)
    expect(slot0).toMatchObject({ holder: a.memberId })
    const generation = slot0!.generation
    expect(Either.isRight(yield* fenced(a.memberId, generation, "a"))).toBe(true)

    // The attack: b made holder of slot 0 by hand, the token unchanged. Refused; nothing changed.
    expect(
      yield* attempt(client, "UPDATE modulo_group.slots SET holder = $1, owner = $1 WHERE group_id = $2 AND slot = 0", [b.memberId, groupId])
    ).toBe("23514")
    expect((yield* store.slotRows(groupId))[0]).toMatchObject({ holder: a.memberId, generation })
    expect(Either.isLeft(yield* fenced(b.memberId, generation, "b, same token"))).toBe(true)
    // Nor may a token go back, nor a row move.
    expect(yield* attempt(client, "UPDATE modulo_group.slots SET generation = generation - 1 WHERE group_id = $1 AND slot = 0", [groupId]))
      .toBe("23514")
    expect(yield* attempt(client, "UPDATE modulo_group.slots SET slot = 1000 WHERE group_id = $1 AND slot = 0", [groupId])).toBe("23514")

    // The same move with a new generation is allowed: then a's token is stale and only b commits.
    expect(
      yield* attempt(
        client,
        "UPDATE modulo_group.slots SET holder = $1, owner = $1, generation = generation + 1 WHERE group_id = $2 AND slot = 0",
        [b.memberId, groupId]
      )
    ).toBe("ok")
    expect(Either.isLeft(yield* fenced(a.memberId, generation, "a, stale"))).toBe(true)
    expect(Either.isRight(yield* fenced(b.memberId, generation + 1, "b, new token"))).toBe(true)
    expect((yield* sql<{ note: string }>`SELECT note FROM ${sql(table)} ORDER BY note`).map((r) => r.note)).toEqual(["a", "b, new token"])
    yield* sql`DELETE FROM modulo_group.groups WHERE group_id = ${groupId}`
  }).pipe(Effect.scoped, Effect.provide(StoreLive)))
