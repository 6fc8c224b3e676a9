import { relative } from "node:path"
import { BaseSequencer, type TestSpecification } from "vitest/node"

/**
 * How long the longest files took in a full run (seconds, `npx vitest run --reporter=json`, 2 cores,
 * six files at a time, machine PostgreSQL 15, 2026-12-06 night). Only an order: nothing fails when a
 * figure goes stale.
 */
export const expectedSeconds: Readonly<Record<string, number>> = {
  "test/explorer/slots.pg.test.ts": 75,
  "test/chaos/faults.test.ts": 55,
  "test/chaos/static.test.ts": 48,
  "test/fenced/commitLate.pg.test.ts": 25,
  "test/badinput/tampered.pg.test.ts": 48,
  "test/Model.test.ts": 39,
  "test/failover/failover.pg.test.ts": 39,
  "test/explorer/interleavings.pg.test.ts": 32,
  "test/safety/finalLeaveLapse.pg.test.ts": 30,
  "test/fenced/commitCheckRows.pg.test.ts": 27,
  "test/batch/slowHolds.pg.test.ts": 26,
  "test/chaos/churn.test.ts": 23,
  "test/work/plainStatement.pg.test.ts": 23,
  "test/work/runnerWalk.test.ts": 23,
  "test/cli/static.test.ts": 22,
  "test/hostile/notifications.pg.test.ts": 21,
  "test/chaos/slots.test.ts": 20,
  "test/fenced/renewalUnreadReply.pg.test.ts": 19,
  "test/batch/deadBusyRenewal.pg.test.ts": 17,
  "test/cli/demo.test.ts": 16,
  "test/fenced/ownSlotsLast.pg.test.ts": 16,
  "test/Membership.pg.test.ts": 16,
  "test/cli/demoSlots.test.ts": 16,
  "test/slots/rowAwayAndBack.pg.test.ts": 14,
  "test/safety/missingRowChange.pg.test.ts": 14,
  "test/fenced/slowLaterCheck.pg.test.ts": 14,
  "test/Membership.test.ts": 13,
  "test/fenced/lateRenewalCommit.pg.test.ts": 13,
  "test/safety/riderLateView.pg.test.ts": 12,
  "test/ui/dashboard.pg.test.ts": 12,
  "test/security/leastPrivilege.pg.test.ts": 12
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
