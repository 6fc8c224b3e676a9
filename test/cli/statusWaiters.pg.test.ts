/**
 * `status` and a waiter whose instance id is long in UTF-16 but within 200 characters (code points,
 * as the library counts ids since it took 150 emoji): the waiters' text was cut at 200 UTF-16 units,
 * splitting an emoji, and the waiter's instance id no longer matched its holder's ("no member row",
 * `heldBy` null; a review, failed before).
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { randomUUID } from "node:crypto"
import * as Status from "../../cli/src/commands/status.js"
import { PgLive, randomGroupId } from "../support/Database.js"

it.live("a waiter for an instance id of 121 characters (241 UTF-16 units) is shown with the whole id, matching its holder's", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const groupId = randomGroupId("status-waiter-emoji")
    const instanceId = `w${"\u{1F600}".repeat(120)}`
    const holder = randomUUID()
    const waiter = randomUUID()
    yield* sql`INSERT INTO modulo_group.groups (group_id, epoch, size) VALUES (${groupId}, 1, 1)`
    yield* sql`
      INSERT INTO modulo_group.members (member_id, group_id, idx, acked_epoch, lease_expires_at, heartbeat_at, joined_at, name, instance_id)
      VALUES (${holder}, ${groupId}, 0, 1, now() + interval '1 minute', now(), now(), 'holder', ${instanceId})`
    yield* sql`
      INSERT INTO modulo_group.instance_waiters (member_id, group_id, instance_id, host, pid, name, since, seen_at, lease_ms)
      VALUES (${waiter}, ${groupId}, ${instanceId}, 'h', 2, ${"\u{1F600}".repeat(150)}, now(), now(), 60000)`
    const snapshot = Option.getOrThrow(yield* Status.snapshot(groupId))
    expect(snapshot.waiters?.map((w) => [w.memberId, w.instanceId === instanceId, Array.from(w.name).length])).toEqual([[waiter, true, 150]])
    expect(snapshot.members.map((m) => m.instanceId === instanceId)).toEqual([true])
    yield* sql`DELETE FROM modulo_group.instance_waiters WHERE member_id = ${waiter}`
    yield* sql`DELETE FROM modulo_group.groups WHERE group_id = ${groupId}`
  }).pipe(Effect.provide(PgLive)), 30_000)
