import { defineConfig } from "vitest/config"

// Benchmarks print figures; they are not tests and are not part of `npm test`.
export default defineConfig({
  test: {
    include: ["bench/*.bench.test.ts"],
    testTimeout: 90 * 60_000,
    hookTimeout: 120_000,
    pool: "forks",
    fileParallelism: false
  }
})
