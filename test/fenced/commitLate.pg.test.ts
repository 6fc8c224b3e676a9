/**
 * The four slow-COMMIT files (vitest.config.ts, `commitLate`), one after another in one fork: each
 * queues tens of MB of notifications into the cluster's one notification queue, so they must not run
 * beside each other nor beside the `together` files (docs/testing.md). They run here, as one file,
 * beside the chaos runs (project `last`), whose members use PostgreSQL servers of their own. Their tests register in
 * this order; run one of them alone with `npx vitest run --project last test/fenced/commitLate.pg.test.ts -t <name>`.
 */
import "./notifyAtCommit.pg.test.js"
import "./leaseCutDuringCommit.pg.test.js"
import "./rejoinAfterCommit.pg.test.js"
import "./leaseEndedDuringCommit.pg.test.js"
