/**
 * A database whose default `DateStyle` is not ISO (`ALTER DATABASE ... SET DateStyle = 'German, DMY'`,
 * or a role's): node-postgres parses timestamp text only in the ISO style, and read every timestamp
 * as null under another. An outsider's review: `status`, `status --json` and `groups` exited 1 with
 * "Cannot read properties of null (reading 'toISOString')", the `ui` API answered that error, and
 * `MembershipStore.groups` returned `changedAt: null` (typed `Date`). Every timestamp is read as
 * milliseconds since the epoch now (failed before). The sessions here get the style from `options`
 * (the store's client) and `PGOPTIONS` (the CLI's), as a database's default would give it.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { randomUUID } from "node:crypto"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { assertBuilt, run } from "../cli/support.js"
import { clientWithOptions, databaseUrl, randomGroupId } from "../support/Database.js"

const style = "-c DateStyle=German,DMY"

/** A client whose sessions start in the German DateStyle. */
const germanClient = clientWithOptions(style, "date-style")

const StoreLive = PgMembershipStore.layer({ migrate: false }).pipe(Layer.provideMerge(germanClient))

/** A time within the last minute (a row written by this test). */
const recent = (d: Date | null | undefined) => {
  expect(d).toBeInstanceOf(Date)
  expect(Math.abs(Date.now() - d!.getTime())).toBeLessThan(60_000)
}

it.live("under DateStyle German: the store's groups, group and members read real times; status, status --json and groups exit 0", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [s] = yield* sql<{ style: string }>`SELECT current_setting('DateStyle') AS style`
    expect(s!.style).toBe("German, DMY")
    const store = yield* MembershipStore
    const groupId = randomGroupId("datestyle")
    const memberId = randomUUID()
    yield* store.join(groupId, { memberId, name: "m0", host: "h", pid: 1 }, 60_000)
    // A static member's released row: its released_at is a time too.
    const held = randomUUID()
    yield* store.join(groupId, { memberId: held, name: "m1", host: "h", pid: 2 }, 60_000, { instanceId: "i1", rejoinGraceMs: 60_000 })
    yield* store.release(groupId, held)
    const groups = yield* store.groups
    recent(groups.find((g) => g.groupId === groupId)?.changedAt)
    recent(Option.getOrThrow(yield* store.group(groupId)).changedAt)
    const members = yield* store.members(groupId)
    expect(members).toHaveLength(2)
    for (const m of members) recent(m.joinedAt)
    recent(members.find((m) => m.memberId === held)?.releasedAt)

    assertBuilt()
    const env = { ...process.env, DATABASE_URL: databaseUrl(), PGOPTIONS: style }
    const status = yield* Effect.promise(() => run(["status", groupId], env))
    expect(status.code, status.stderr).toBe(0)
    expect(status.stdout).toMatch(/m0/)
    const json = yield* Effect.promise(() => run(["status", groupId, "--json"], env))
    expect(json.code, json.stderr).toBe(0)
    const view = JSON.parse(json.stdout) as { changedAt: string; members: ReadonlyArray<{ joinedAt: string }> }
    recent(new Date(view.changedAt))
    for (const m of view.members) recent(new Date(m.joinedAt))
    const list = yield* Effect.promise(() => run(["groups", "--json"], env))
    expect(list.code, list.stderr).toBe(0)
    const listed = (JSON.parse(list.stdout) as ReadonlyArray<{ group: string; changedAt: string }>).find((g) => g.group === groupId)
    recent(new Date(listed!.changedAt))
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)
