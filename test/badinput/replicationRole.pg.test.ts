/**
 * `session_replication_role = replica` as the members' sessions' default (a superuser's setting for
 * the database or the role, or the URL's options): PostgreSQL fires no trigger, so the database's
 * own checks of the group (the deferrable `UNIQUE (group_id, idx)`, the foreign keys, the fence's
 * commit-time check) are off. A review (attack81) found members starting and running so, the schema
 * check blind to it; fenced refused it on its own (test/fenced/replicationRole.pg.test.ts). A store
 * now refuses to start, naming the setting. `local` fires ordinary triggers and starts.
 */
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { clientWithOptions } from "../support/Database.js"

const clientWith = (role: string) => clientWithOptions(`-c session_replication_role=${role}`, "replication-role-start")

it.live("a store does not start under session_replication_role = replica, and says why", () =>
  Effect.gen(function*() {
    const failed = yield* Effect.flip(PgMembershipStore.prepare({ startupTimeout: "2 seconds" }))
    expect(failed._tag).toBe("DatabaseUnavailable")
    expect(failed.message).toMatch(/session_replication_role is replica in this connection's sessions/)
    expect(failed.message).toMatch(/RESET session_replication_role/)
  }).pipe(Effect.provide(clientWith("replica"))), 30_000)

it.live("under session_replication_role = local (ordinary triggers fire) a store starts", () =>
  PgMembershipStore.prepare({ startupTimeout: "2 seconds" }).pipe(Effect.provide(clientWith("local"))), 30_000)
