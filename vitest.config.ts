import { defineConfig } from "vitest/config"
import LongestFirst from "./test/setup/sequencer.js"

// What both projects share. The projects do not `extends: true` the root: vitest runs a project's
// globalSetup once per project, so an inherited one started three embedded servers per run. The root
// runs it once, and the projects read what it provides (vitest hands them the root's `provide`).
const shared = {
  // Tests talk to a real database and wait on real timeouts.
  testTimeout: 60_000,
  hookTimeout: 60_000,
  // Child processes, not worker threads: tests kill connections and spawn CLIs.
  pool: "forks",
  // Files share their fork's module instances: no file may leave global state behind. Each test
  // uses its own group ids and pools; metrics are read on its own group's series, as deltas; the one
  // known offender, @effect/vitest's `it.layer`, is refused by the setup file below.
  isolate: false,
  // Fails a file that leaves vitest's shared `it` changed (it.layer does; see the file).
  setupFiles: ["test/setup/pristineIt.ts"] as Array<string>
} as const

/**
 * The test files whose fenced bodies queue many notifications (tens of MB into the notification queue,
 * which the whole cluster shares) to make a COMMIT slow: one after another, after the rest, in one
 * file that imports them (test/fenced/commitLate.pg.test.ts). Run beside each other, their joins missed a 300 ms statement timeout and the nested
 * cases of notifyAtCommit did not end within 60 s (seen on this project's 2-core machine; the second
 * was the test's own, fixed since: docs/testing.md).
 */
const commitLate = [
  "test/fenced/notifyAtCommit.pg.test.ts",
  "test/fenced/leaseCutDuringCommit.pg.test.ts",
  "test/fenced/rejoinAfterCommit.pg.test.ts",
  "test/fenced/leaseEndedDuringCommit.pg.test.ts"
]

export default defineConfig({
  test: {
    ...shared,
    // One PostgreSQL for the whole run: DATABASE_URL, or an embedded one (see the file).
    globalSetup: ["test/setup/globalSetup.ts"],
    // Longest files first, also on a fresh clone with no cache of durations (test/setup/sequencer.ts).
    sequence: { sequencer: LongestFirst },
    // The fork pool's size and arguments are the root's (vitest reads them there only).
    // Four files at a time, on any machine: most of a file's time is spent waiting on leases,
    // heartbeats and child processes (docs/testing.md: on 2 cores, the `together` files took 352 s
    // three at a time with the machine about half idle, 205 s six at a time at 72% busy, 186 s nine
    // at a time at 94%). Six at a time was faster, but on the 2-core VMs of 2026-12-07 every
    // clean-clone CI run of the day but one failed at six: each on one to five different timing
    // bounds of tests that pass alone (a status that did not finish in 30 s, a chaos reconvergence
    // bound, a fenced COMMIT's margin). Files keep to their own groups, databases and
    // pg_stat_activity backends.
    // A larger young generation: the Effect fibers of the tests allocate fast, and with V8's default
    // semi-space the scavenger takes a large share of a fork's CPU (the CPU-bound TestClock files:
    // 34-36 s → 32-33 s wall, docs/testing.md).
    // The forks are kept for the whole run and each runs file after file (`isolate: false`, above):
    // a file then costs no new process nor fresh imports (collection summed over the files: 258 s
    // → 12-14 s; the whole suite on 2 cores: 640 → 336-351 s, docs/testing.md). All four are kept
    // (with fewer than the maximum, vitest ended a fork's worker while it ran a file).
    poolOptions: { forks: { maxForks: 4, minForks: 4, execArgv: ["--max-semi-space-size=64"] } },
    projects: [
      {
        test: { ...shared, name: "together", include: ["test/**/*.test.ts"], exclude: ["test/chaos/**", "test/fenced/commitLate.pg.test.ts", ...commitLate], sequence: { groupOrder: 0 } }
      },
      {
        // The chaos runs judge reconvergence times and the order of faults on real processes: after
        // the rest, so the CPU-bound files of `together` do not decide them. Among themselves they run
        // all four at once (the root's forks): their members mostly wait on heartbeats and leases, and
        // the four together load the machine about as much as one core (62-64 s instead of ~150 s
        // one at a time, docs/testing.md). Beside them, in the same project (vitest starts a project
        // only once the one before has ended), the slow-COMMIT files, one after another in one file:
        // every chaos run's members use an embedded PostgreSQL of the runner's own, so a slow COMMIT
        // on the test server holds none of theirs.
        test: {
          ...shared,
          name: "last",
          include: ["test/chaos/**/*.test.ts", "test/fenced/commitLate.pg.test.ts"],
          sequence: { groupOrder: 1 }
        }
      }
    ]
  }
})
