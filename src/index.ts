/**
 * modulo-group: split work between processes that share one PostgreSQL database.
 *
 * What an app needs. What only tests need (the in-memory store and its fault controls, the pure
 * transition function) is in `modulo-group/testing`.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as Membership from "./Membership.js"
/** @since 0.1.0 */
export * as MembershipConfig from "./MembershipConfig.js"
/** @since 0.1.0 */
export * as MembershipError from "./MembershipError.js"
/** @since 0.1.0 */
export * as MembershipMetrics from "./MembershipMetrics.js"
/** @since 0.1.0 */
export * as MembershipStore from "./MembershipStore.js"
/** @since 0.1.0 */
export * as MemberState from "./MemberState.js"
/** @since 0.1.0 */
export * as PgMembershipStore from "./PgMembershipStore.js"
/** @since 0.1.0 */
export * as PgMembership from "./PgMembership.js"
/** @since 0.1.0 */
export * as Migrations from "./Migrations.js"
/** @since 0.1.0 */
export * as Work from "./Work.js"
/** @since 0.1.0 */
export * as Fenced from "./Fenced.js"
/** @since 0.1.0 */
export * as Ownership from "./Ownership.js"
/** @since 0.3.0 */
export * as Slots from "./Slots.js"
