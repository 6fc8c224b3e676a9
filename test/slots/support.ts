/**
 * What the set-form tests of slots mode share: fast timings in which a set form's cleanup of a few
 * seconds fits in `fenceMargin`, and a member of a group on a given in-memory store, in a scope of
 * its own (closed by the test to make it leave).
 */
import { Effect, Scope } from "effect"
import * as Membership from "../../src/Membership.js"
import type { MembershipConfigInput } from "../../src/MembershipConfig.js"
import type { MembershipStoreService } from "../../src/MembershipStore.js"
import { MembershipStore } from "../../src/MembershipStore.js"

/** Four slots; heartbeat 100 ms, lease 5.3 s, fenceMargin 5 s (a cleanup of up to 5 s fits in it). */
export const fastSlots: Partial<MembershipConfigInput> = {
  slots: 4,
  heartbeat: "100 millis",
  lease: "5300 millis",
  fenceMargin: "5 seconds",
  statementTimeout: "100 millis"
}

/** A member `name` of `groupId` on `store` (with `config`, by default `fastSlots`), in a scope of its own. */
export const memberOn = (
  store: MembershipStoreService,
  groupId: string,
  name: string,
  config: Partial<MembershipConfigInput> = fastSlots
) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const m = yield* Membership.make({ groupId, name, ...config }).pipe(
      Effect.provideService(MembershipStore, store),
      Scope.extend(scope)
    )
    return { m, scope }
  })
