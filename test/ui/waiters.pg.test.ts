/**
 * The dashboard's group view (`Queries.group`, the query `status` reads too) shows static members'
 * instance ids and the processes waiting for an instance id beside its holder.
 */
import { expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { randomUUID } from "node:crypto"
import * as Queries from "../../cli/src/ui/queries.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"

const info = (name: string) => ({ memberId: randomUUID(), name, host: "test-host", pid: 4242 })

it.live("a waiter for a held instance id is shown beside its holder, and not once it stopped waiting", () =>
  Effect.gen(function*() {
    const store = yield* MembershipStore
    const g = randomGroupId("ui-waiters")
    const holder = info("holder")
    const waiter = info("waiter")
    yield* store.join(g, holder, 10_000, { instanceId: "w1", rejoinGraceMs: 5_000 })
    yield* store.join(g, info("plain"), 10_000)
    yield* store.wait(g, waiter, "w1", 10_000)
    const detail = (yield* Queries.group(g))!
    expect(detail.members.map((m) => [m.name, m.instanceId])).toEqual([["holder", "w1"], ["plain", ""]])
    expect(detail.waiters).toEqual([
      expect.objectContaining({ instanceId: "w1", heldBy: "holder", memberId: waiter.memberId, name: "waiter", pid: 4242 })
    ])
    yield* store.stopWaiting(g, waiter.memberId)
    expect((yield* Queries.group(g))!.waiters).toEqual([])
  }).pipe(Effect.provide(PgMembershipStore.layer().pipe(Layer.provideMerge(PgLive)))))
