/**
 * `session_replication_role` and the commit-time check (a constraint trigger on `fence_checks`):
 * ordinary triggers fire under `origin` and `local`, not under `replica`. An adversarial review found
 * `fenced` refusing every transaction under `local` (a session default an operator may set), saying
 * the trigger would not run and that the body had broken the fence: both false.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fenced from "../../src/Fenced.js"
import { clientWithOptions } from "../support/Database.js"
import { fixture, stallingBeforeCommit } from "./support.js"

/** A client whose every session starts with `session_replication_role = role` (a role's or database's default). */
const clientWith = (role: string) => clientWithOptions(`-c session_replication_role=${role}`, "replication-role")

it.live("under session_replication_role = local, a current fenced transaction commits, and a stale one fails at COMMIT", () =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [r] = yield* sql<{ role: string }>`SELECT current_setting('session_replication_role') AS role`
    expect(r!.role).toBe("local")
    const f = yield* fixture("replication-local")
    yield* Fenced.fencedWith(f.target, f.insert("current"))
    expect(yield* f.notes).toEqual(["current"])
    // The trigger runs under local: a lease that runs out while the client stalls before COMMIT fails it.
    yield* f.setLease(400)
    const stale = yield* Fenced.fencedWith(f.target, f.insert("stale")).pipe(
      Effect.provideService(SqlClient.SqlClient, stallingBeforeCommit(sql, "600 millis")),
      Effect.flip
    )
    expect(stale._tag).toBe("StaleAssignment")
    expect(stale.message).toMatch(/lease expired \d+ ms before COMMIT on the database clock/)
    expect(yield* f.notes).toEqual(["current"])
  }).pipe(Effect.scoped, Effect.provide(clientWith("local"))), 30_000)

it.live("under session_replication_role = replica (the session's default), fenced refuses, naming the setting; nothing commits", () =>
  Effect.gen(function*() {
    const f = yield* fixture("replication-replica")
    const result = yield* Effect.flip(Fenced.fencedWith(f.target, f.insert("replica")))
    expect(result._tag).toBe("FenceBroken")
    expect(result.message).toMatch(/session_replication_role is replica \(set by the body or the session's default\)/)
    expect(result.message).not.toMatch(/by its own body/)
    expect(yield* f.notes).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(clientWith("replica"))), 30_000)
