/**
 * When a stopped process really stopped: at the SIGSTOP's send time, or at the last line it stamped
 * before the SIGCONT if that is later. The send time is read just before the signal goes out, and a
 * loaded machine can run the member for some milliseconds more before it takes effect; a stopped
 * process stamps nothing, so a line stamped between the two was printed while still running. Counting
 * such a line as work after the stop once made the faults chaos run report an overlap for a member
 * that printed nothing between the later epoch's start and its own fence, frozen all along.
 */
export const stoppedAt = (s, stamps) => Math.max(s.at, ...stamps.filter((w) => w > s.at && !resumed(s, w)))

/**
 * Whether a line stamped at `w` was printed after the process was continued from stop `s`: only such
 * lines show it working after the stop (a stop never continued has none).
 */
export const resumed = (s, w) => s.contAt !== undefined && w >= s.contAt
