/**
 * Fails a test file that leaves vitest's shared `it` changed. @effect/vitest 0.30's `it.layer` (and
 * `layer`) assigns the block's own testers onto that object (`Object.assign(V.it, …)`): every
 * `it.effect` collected after the block, in the same file and in later files of a worker that runs
 * several files, then ran inside the block's runtime and shared its one TestClock (a test read a
 * clock another test had moved 61 days on). Use `sharedRuntime` (test/support/Database.ts) instead.
 *
 * The first file of a process records the methods as @effect/vitest made them; each file's `afterAll`
 * compares, restores, and fails the file that changed them.
 */
import { it } from "@effect/vitest"
import { afterAll } from "vitest"

const methods = ["effect", "scoped", "live", "scopedLive", "flakyTest", "layer", "prop"] as const
type Methods = Record<(typeof methods)[number], unknown>
const shared = it as unknown as Methods
const slot = globalThis as { [key: symbol]: Methods | undefined }
const key = Symbol.for("modulo-group/test/pristine-it")
const pristine: Methods = slot[key] ??= Object.fromEntries(methods.map((m) => [m, shared[m]])) as Methods

afterAll(() => {
  const changed = methods.filter((m) => shared[m] !== pristine[m])
  if (changed.length === 0) return
  Object.assign(shared, pristine)
  throw new Error(
    `this file replaced it.${changed.join(", it.")} on vitest's shared \`it\` (as it.layer does): ` +
      "tests collected after it would run in another block's runtime and share its TestClock; " +
      "use sharedRuntime from test/support/Database.ts"
  )
})
