import { relative } from "node:path"
import { BaseSequencer, type TestSpecification } from "vitest/node"

/**
 * How long the longest files took in a full run (seconds, `npx vitest run --reporter=json`, 2 cores,
 * machine PostgreSQL 15, 2026-12-03). Only an order: nothing fails when a figure goes stale.
 */
export const expectedSeconds: Readonly<Record<string, number>> = {
  "test/explorer/slots.pg.test.ts": 66,
  "test/chaos/faults.test.ts": 60,
  "test/chaos/static.test.ts": 47,
  "test/badinput/tampered.pg.test.ts": 37,
  "test/failover/failover.pg.test.ts": 30,
  "test/chaos/churn.test.ts": 26,
  "test/cli/static.test.ts": 26,
  "test/chaos/slots.test.ts": 25,
  "test/cli/embeddedRecovery.test.ts": 20,
  "test/cli/demo.test.ts": 18,
  "test/Membership.test.ts": 17,
  "test/Model.test.ts": 16,
  "test/badinput/databaseUrl.pg.test.ts": 16,
  "test/Membership.pg.test.ts": 16,
  "test/cli/demoSlots.test.ts": 16,
  "test/ui/dashboard.pg.test.ts": 16,
  "test/explorer/interleavings.pg.test.ts": 15,
  "test/Work.test.ts": 15,
  "test/hostile/notifications.pg.test.ts": 14,
  "test/security/leastPrivilege.pg.test.ts": 13,
  "test/batch/steady.pg.test.ts": 11,
  "test/cli/slots.pg.test.ts": 11,
  "test/connections/queue.pg.test.ts": 11,
  "test/faults/slowDatabase.pg.test.ts": 11
}

/**
 * Longest files first, so that no long file starts last beside idle forks. Vitest does this from its
 * cache of the last run's durations, and without one (a fresh clone, as in CI) runs larger files
 * first, which started `test/chaos/static.test.ts` (47 s, the smallest chaos file) only after
 * another chaos file had ended: the chaos phase took 71 s where its longest file takes 60. Files the
 * cache has no duration for take the figure above; the rest keep vitest's order after them.
 */
export default class LongestFirst extends BaseSequencer {
  override async sort(files: Array<TestSpecification>): Promise<Array<TestSpecification>> {
    const sorted = await super.sort(files)
    const root = this.ctx.config.root
    const ms = (spec: TestSpecification): number => {
      const path = relative(root, spec.moduleId)
      const cached = this.ctx.cache.getFileTestResults(`${spec.project.name}:${path}`)?.duration
      return cached ?? (expectedSeconds[path] ?? -1) * 1000
    }
    const weights = new Map(sorted.map((spec) => [spec, ms(spec)]))
    // Stable: files of equal weight (those with no figure) keep vitest's order.
    return [...sorted].sort((a, b) => weights.get(b)! - weights.get(a)!)
  }
}
