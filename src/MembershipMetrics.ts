/**
 * Effect metrics of the protocol, tagged with the group id.
 *
 * @since 0.1.0
 */
import { Metric, MetricBoundaries } from "effect"

/** @since 0.1.0 @category metrics */
export const epoch = Metric.gauge("modulo_group_epoch", { description: "Epoch the member is assigned in" })
/** @since 0.1.0 @category metrics */
export const size = Metric.gauge("modulo_group_size", { description: "Members in the member's assigned epoch" })
/** @since 0.1.0 @category metrics */
export const index = Metric.gauge("modulo_group_index", { description: "The member's index in its assigned epoch" })
/** @since 0.1.0 @category metrics */
export const renegotiations = Metric.counter("modulo_group_renegotiations_total", {
  description: "Epoch changes that stopped this member's work",
  incremental: true
})
/** @since 0.1.0 @category metrics */
export const selfFences = Metric.counter("modulo_group_self_fences_total", {
  description: "Times the local lease deadline passed and the member stopped work on its own",
  incremental: true
})
/** @since 0.1.0 @category metrics */
export const failedHeartbeats = Metric.counter("modulo_group_heartbeat_failures_total", {
  description: "Lease renewals that failed, timed out or came back too late",
  incremental: true
})
/** @since 0.1.0 @category metrics */
export const barrierSeconds = Metric.histogram(
  "modulo_group_barrier_seconds",
  MetricBoundaries.exponential({ start: 0.001, factor: 2, count: 16 }),
  "Time from leaving an assignment (or joining) to the next assignment"
)

/**
 * @since 0.2.0
 * @category metrics
 */
export const stuckWork = Metric.gauge("modulo_group_stuck_work_seconds", {
  description: "How long the member's work has not stopped though asked to (0 when none): it holds the barrier"
})

/**
 * @since 0.2.0
 * @category metrics
 */
export const alarms = Metric.counter("modulo_group_alarms_total", {
  description: "Things the member refused to act on (a contradicting view, a row removed early, stuck work)"
})

/**
 * @since 0.2.0
 * @category metrics
 */
export const clockSteps = Metric.counter("modulo_group_clock_steps_total", {
  description: "Steps of the database clock against the member's monotonic clock beyond the threshold"
})

/**
 * @since 0.3.0
 * @category metrics
 */
export const takeovers = Metric.counter("modulo_group_takeovers_total", {
  description: "Joins with an instance id that took over its released or expired row (same index, same epoch, no renegotiation)",
  incremental: true
})

/**
 * @since 0.3.0
 * @category metrics
 */
export const graceExpiries = Metric.counter("modulo_group_grace_expiries_total", {
  description: "Static members' rows deleted because their instance did not come back within rejoinGrace",
  incremental: true
})
