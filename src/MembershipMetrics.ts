/**
 * Effect metrics of the protocol, each tagged with `group` (the group id). Names and units follow
 * the Prometheus conventions (`_total` for counters, `_seconds` for durations, base units only), so
 * an exporter can publish them as they are: docs/metrics.md lists every series with its meaning;
 * `modulo-group join --metrics-port` serves them, and an app exports them with
 * `@effect/opentelemetry` (or reads them with `Metric.snapshot`).
 *
 * @since 0.1.0
 */
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"

/**
 * The epoch of the member's latest assignment (kept when the member leaves `Assigned`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const epoch = Metric.gauge("modulo_group_epoch", {
  description: "Epoch of the member's latest assignment"
})

/**
 * N: the group's size in the member's latest assignment.
 *
 * @since 0.1.0
 * @category metrics
 */
export const size = Metric.gauge("modulo_group_size", {
  description: "Members (N) in the member's latest assignment"
})

/**
 * k: the member's index in its latest assignment (0 is the leader of `Work.runAsLeader`, in modulo mode).
 *
 * @since 0.1.0
 * @category metrics
 */
export const index = Metric.gauge("modulo_group_index", {
  description: "The member's index (k) in its latest assignment"
})

/**
 * 1 while the member is assigned (it may work), else 0: read `epoch`, `size` and `index` with it.
 *
 * @since 0.2.0
 * @category metrics
 */
export const assigned = Metric.gauge("modulo_group_assigned", {
  description: "1 while the member holds an assignment and may work, else 0"
})

/**
 * 1 while the member is assigned index 0 (the leader `Work.runAsLeader` runs on, in modulo mode), else 0; as
 * client-go's `leader_election_master_status`.
 *
 * @since 0.2.0
 * @category metrics
 */
export const leader = Metric.gauge("modulo_group_leader", {
  description: "1 while the member is assigned index 0 (the leader), else 0"
})

/**
 * @since 0.1.0
 * @category metrics
 */
export const renegotiations = Metric.counter("modulo_group_renegotiations_total", {
  description: "Epoch changes that stopped this member's work",
  incremental: true
})

/**
 * @since 0.1.0
 * @category metrics
 */
export const selfFences = Metric.counter("modulo_group_self_fences_total", {
  description: "Times the local lease deadline passed and the member stopped work on its own",
  incremental: true
})

/**
 * @since 0.1.0
 * @category metrics
 */
export const failedHeartbeats = Metric.counter("modulo_group_heartbeat_failures_total", {
  description: "Lease renewals that failed, timed out or came back too late",
  incremental: true
})

/**
 * Seconds since the send time of the member's last lease renewal that came back in time, taken
 * after every renewal attempt (Kafka's `last-heartbeat-seconds-ago`). While renewals succeed it is
 * their round trip; while they fail it grows by about a heartbeat per attempt, and the member fences
 * itself at `lease - fenceMargin`.
 *
 * @since 0.2.0
 * @category metrics
 */
export const heartbeatAge = Metric.gauge("modulo_group_last_heartbeat_seconds_ago", {
  description: "Seconds since the send time of the last lease renewal that succeeded, taken after every renewal attempt"
})

/**
 * Seconds from leaving an assignment (or joining) to the next assignment: the barrier wait.
 *
 * @since 0.1.0
 * @category metrics
 */
export const barrierSeconds = Metric.histogram(
  "modulo_group_barrier_wait_seconds",
  MetricBoundaries.exponential({ start: 0.001, factor: 2, count: 16 }),
  "Seconds from leaving an assignment (or joining) to the next assignment"
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
  description: "Things the member refused to act on (a contradicting view, a row removed early, stuck work)",
  incremental: true
})

/**
 * @since 0.2.0
 * @category metrics
 */
export const clockSteps = Metric.counter("modulo_group_clock_steps_total", {
  description: "Steps of the database clock against the member's monotonic clock beyond the threshold",
  incremental: true
})

/**
 * @since 0.1.0
 * @category metrics
 */
export const takeovers = Metric.counter("modulo_group_takeovers_total", {
  description: "Joins with an instance id that took over its released or expired row (same index, same epoch, no renegotiation)",
  incremental: true
})

/**
 * @since 0.1.0
 * @category metrics
 */
export const graceExpiries = Metric.counter("modulo_group_grace_expiries_total", {
  description: "Static members' rows deleted because their instance did not come back within rejoinGrace",
  incremental: true
})

/**
 * Slots mode: how many slots of the group this process's members are working now (each member adds
 * a slot when its work starts and takes it away when that work has stopped). 0 in modulo mode.
 *
 * @since 0.3.0
 * @category metrics
 */
export const slotsWorking = Metric.gauge("modulo_group_slots_working", {
  description: "Slots mode: slots whose work is running in this process (started, not yet stopped)"
})

/**
 * Slots mode: slot work started (a slot taken over, or held again after a rejoin).
 *
 * @since 0.3.0
 * @category metrics
 */
export const slotStarts = Metric.counter("modulo_group_slot_starts_total", {
  description: "Slots mode: times the work of a slot started on this member",
  incremental: true
})

/**
 * Slots mode: slots handed over, each released to its new owner by a release the store applied
 * (after its work stopped); a slot whose release outcome is unknown is not counted.
 *
 * @since 0.3.0
 * @category metrics
 */
export const slotReleases = Metric.counter("modulo_group_slot_releases_total", {
  description: "Slots mode: slots released to their new owner after their work stopped",
  incremental: true
})
