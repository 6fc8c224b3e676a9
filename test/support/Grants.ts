/**
 * The least grants of docs/operations.md, read from the doc itself so tests check what it says.
 */
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"

const operationsDoc = fileURLToPath(new URL("../../docs/operations.md", import.meta.url))

/** The statements of the first sql block under "## Least privileges", for role `role`. */
export const documentedGrants = (role: string): Array<string> => {
  const doc = fs.readFileSync(operationsDoc, "utf8")
  const section = doc.slice(doc.indexOf("## Least privileges"))
  const block = /```sql\n([\s\S]*?)```/.exec(section)
  if (block === null) throw new Error("docs/operations.md: no ```sql block under ## Least privileges")
  return block[1]!
    .replace(/--.*$/gm, "")
    .split(";")
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => s.replace(/\bapp\b/g, `"${role}"`).replace(/\bmy_database\b/g, "CURRENT_DATABASE_NAME"))
}


/**
 * `statement` (a GRANT or REVOKE) as one statement that first takes the tests' privileges lock, held
 * to its commit. Test files run in parallel and grant on the same objects (the schema modulo_group,
 * its tables); PostgreSQL updates an object's ACL in place and fails the second of two concurrent
 * updates with "tuple concurrently updated" (XX000) instead of waiting for the first.
 */
export const serialised = (statement: string): string =>
  `DO $serialised$ BEGIN PERFORM pg_advisory_xact_lock(hashtext('modulo-group tests: privileges')); ` +
  `EXECUTE $statement$${statement}$statement$; END $serialised$`
