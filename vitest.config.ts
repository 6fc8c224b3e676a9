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
    pool: "forks"
  }
})
