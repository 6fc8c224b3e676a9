/**
 * The annotation on the log lines that are events an app may act on (`Membership.LogEvent`): here, so
 * that the driver and the leave path can use it without importing `Membership.ts`.
 */
export const LogEvent = {
  annotation: "modulo_group.event",
  joinRefused: "join_refused",
  leaveGaveUp: "leave_gave_up"
} as const
