/**
 * modulo-group: split work between processes that share one PostgreSQL database.
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
export * as Transition from "./Transition.js"
/** @since 0.1.0 */
export * as PgMembershipStore from "./PgMembershipStore.js"
/** @since 0.1.0 */
export * as InMemoryMembershipStore from "./InMemoryMembershipStore.js"
/** @since 0.1.0 */
export * as Migrations from "./Migrations.js"
/** @since 0.1.0 */
export * as Work from "./Work.js"
/** @since 0.1.0 */
export * as Fenced from "./Fenced.js"
/** @since 0.1.0 */
export * as Ownership from "./Ownership.js"
