/**
 * `modulo-group/testing`: what tests of an app that uses modulo-group need, and the app itself
 * does not. The in-memory store runs the protocol without PostgreSQL, with controls to inject
 * faults (unreachable database, stalled calls, expired leases); `Transition` is the pure
 * protocol, `(state, event) -> [state, commands]`, for tables of expected transitions. (The
 * states themselves, `MemberState`, come from the main entry: apps read them.)
 *
 * ```ts
 * import { InMemoryMembershipStore } from "modulo-group/testing"
 * ```
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as InMemoryMembershipStore from "./InMemoryMembershipStore.js"
/** @since 0.1.0 */
export * as Transition from "./Transition.js"
