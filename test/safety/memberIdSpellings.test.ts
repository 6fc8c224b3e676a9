/**
 * A member id with a row in another group, and member ids in other spellings, on both stores (as
 * test/StoreContract.test.ts runs its contract): the in-memory store took an id in upper case or in
 * braces as another member (one id in two groups; two rows for one id in one group) and checked an id
 * elsewhere before the group's mode (another refusal, and a reap of the other group) where the
 * PostgreSQL store checks the mode first (a review; the in-memory cases failed before).
 */
import { expect } from "@effect/vitest"
import { Duration, Effect, Layer, TestClock } from "effect"
import { randomUUID } from "node:crypto"
import * as InMemoryMembershipStore from "../../src/InMemoryMembershipStore.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import * as PgMembershipStore from "../../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "../support/Database.js"
import { contractTest } from "../support/StoreContract.js"

const info = (name: string, memberId: string = randomUUID()) => ({ memberId, name, host: "test-host", pid: 4242 })

const contract = (
  name: string,
  layer: () => Layer.Layer<MembershipStore, unknown>,
  groupId: (label: string) => string
) => {
  const test = contractTest(name, layer, groupId)

  test("the same uuid in upper case, joining another group, is refused naming the group its row is in", (g) =>
    Effect.gen(function*() {
      const store = yield* MembershipStore
      const other = `${g}-other`
      const id = randomUUID()
      yield* store.join(other, info("a", id), 5000)
      const refused = yield* Effect.either(store.join(g, info("A", id.toUpperCase()), 5000))
      expect(refused._tag === "Left" && refused.left.message).toContain(`still has a row in group "${other}"`)
      expect(yield* store.members(g)).toEqual([])
    }))

  test("the same uuid in braces, joining another group, is refused naming the group its row is in", (g) =>
    Effect.gen(function*() {
      const store = yield* MembershipStore
      const other = `${g}-other`
      const id = randomUUID()
      yield* store.join(other, info("a", id), 5000)
      const refused = yield* Effect.either(store.join(g, info("A", `{${id}}`), 5000))
      expect(refused._tag === "Left" && refused.left.message).toContain(`still has a row in group "${other}"`)
      expect(yield* store.members(g)).toEqual([])
    }))

  test("the same uuid in upper case joining the same group is the same member (one row, size 1)", (g) =>
    Effect.gen(function*() {
      const store = yield* MembershipStore
      const id = randomUUID()
      yield* store.join(g, info("a", id), 5000)
      const again = yield* store.join(g, info("A", id.toUpperCase()), 5000)
      expect(again.size).toBe(1)
      expect((yield* store.members(g)).length).toBe(1)
    }))

  test("a slots join into a modulo group by an id with a row elsewhere: the same refusal in both stores", (g) =>
    Effect.gen(function*() {
      const store = yield* MembershipStore
      const other = `${g}-other`
      const a = info("a")
      yield* store.join(g, info("b"), 5000)
      yield* store.join(other, a, 1000)
      yield* TestClock.adjust(Duration.millis(1000))
      const refused = yield* Effect.flip(store.join(g, a, 1000, {}, { slots: 4 }))
      // PostgreSQL: the mode mismatch is said (the driver says it once, as an error), and the other
      // group is not reaped by this refused join.
      expect(refused.message).toContain("is in modulo mode, but this member asked for slots mode")
      expect((yield* store.members(other)).map((m) => m.memberId)).toEqual([a.memberId])
    }))

  test("a static row of the id held for its grace in another group: refused naming the grace, nothing reaped, then joins after the grace", (g) =>
    Effect.gen(function*() {
      const store = yield* MembershipStore
      const other = `${g}-other`
      const [a, x] = [info("a"), info("x")]
      yield* store.join(other, x, 60_000)
      yield* store.join(other, a, 1000, { instanceId: "web-0", rejoinGraceMs: 5000 })
      expect(yield* store.release(other, a.memberId)).toBe(true)
      const held = yield* Effect.flip(store.join(g, a, 1000))
      expect(held.message).toContain(`held for instance "web-0"'s rejoin grace of 5000 ms`)
      expect((yield* store.members(other)).length).toBe(2)
      yield* TestClock.adjust(Duration.millis(5000))
      const reaps = yield* Effect.flip(store.join(g, a, 1000))
      expect(reaps.message).toContain("a reap of it follows")
      expect((yield* store.members(other)).map((m) => m.memberId)).toEqual([x.memberId])
      expect((yield* store.join(g, a, 1000)).size).toBe(1)
    }))

  test("a waiting (deferred) row of the id in another group: refused naming it; once its lease ran out, reaped and the join goes through", (g) =>
    Effect.gen(function*() {
      const store = yield* MembershipStore
      const other = `${g}-other`
      const [a, b] = [info("a"), info("b")]
      yield* store.join(other, b, 10_000)
      yield* TestClock.adjust(Duration.millis(3000))
      // b is overdue (no renewal for 3 s, lease live): a's join there waits in a waiting row.
      const deferred = yield* Effect.flip(store.join(other, a, 1000, {}, { overdueAfterMs: 2000 }))
      expect(deferred.message).toContain("waiting for it to renew or be reaped")
      const live = yield* Effect.flip(store.join(g, a, 1000))
      expect(live.message).toContain(`still has a row in group "${other}"`)
      expect(live.message).toContain("a leave, or a reap once its lease has run out")
      yield* TestClock.adjust(Duration.millis(1000))
      const expired = yield* Effect.flip(store.join(g, a, 1000))
      expect(expired.message).toContain("a reap of it follows")
      expect(yield* store.join(g, a, 1000)).toMatchObject({ size: 1, index: 0 })
      expect((yield* store.members(other)).map((m) => m.memberId)).toEqual([b.memberId])
    }))
}

contract("in-memory", () => InMemoryMembershipStore.layer, (label) => label)
contract("postgres", () => PgMembershipStore.layer({ clock: "effect" }).pipe(Layer.provide(PgLive)), (label) => randomGroupId(label))
