import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // One PostgreSQL for the whole run: DATABASE_URL, or an embedded one (see the file).
    globalSetup: ["test/setup/globalSetup.ts"],
    // Tests talk to a real database and wait on real timeouts.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Child processes, not worker threads: tests kill connections and spawn CLIs.
    pool: "forks",
    // Three files at a time, on any machine: most of a file's time is spent waiting on leases,
    // heartbeats and child processes, so on 2 cores 3 forks take the suite from ~11 minutes to ~5
    // (docs/testing.md). Files keep to their own groups, databases and pg_stat_activity backends.
    // `npx vitest run --maxWorkers 1` runs them one at a time.
    poolOptions: { forks: { maxForks: 3, minForks: 1 } }
  }
})
