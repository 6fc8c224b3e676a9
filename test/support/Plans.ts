/**
 * Plans of the protocol's statements, for the tests that judge them (test/batch/plans.pg.test.ts,
 * test/badinput/plannerMethods.pg.test.ts): EXPLAIN only, nothing runs.
 */
import { SqlClient } from "@effect/sql"
import type { Statement } from "@effect/sql"
import { Effect } from "effect"

/** A node of `EXPLAIN (FORMAT JSON)`'s plan: the fields the plan tests read. */
export interface PlanNode {
  readonly "Node Type": string
  readonly "Total Cost": number
  readonly "Relation Name"?: string
  readonly Schema?: string
  /** PostgreSQL 18: a node of a method the settings turned off. */
  readonly Disabled?: boolean
  readonly Plans?: ReadonlyArray<PlanNode>
}

/** The plan's nodes, the root first. */
export const planNodes = (node: PlanNode): ReadonlyArray<PlanNode> => [node, ...(node.Plans ?? []).flatMap(planNodes)]

/**
 * Each statement's plan, by name (`EXPLAIN (<options>, FORMAT JSON)`). With `settings` (e.g.
 * `SET LOCAL enable_nestloop = off`), planned in a transaction that has run them first.
 */
export const explainAll = (
  statements: Record<string, Statement.Statement<unknown>>,
  settings: ReadonlyArray<string> = [],
  options: ReadonlyArray<string> = []
) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const plans: Record<string, PlanNode> = {}
    const plan = Effect.gen(function*() {
      for (const setting of settings) yield* sql.unsafe(setting)
      for (const [name, statement] of Object.entries(statements)) {
        const [text, params] = statement.compile()
        const rows = yield* sql.unsafe<{ "QUERY PLAN": Array<{ Plan: PlanNode }> }>(
          `EXPLAIN (${[...options, "FORMAT JSON"].join(", ")}) ${text}`,
          params as Array<unknown>
        )
        plans[name] = rows[0]!["QUERY PLAN"][0]!.Plan
      }
    })
    yield* (settings.length > 0 ? sql.withTransaction(plan) : plan)
    return plans
  })
