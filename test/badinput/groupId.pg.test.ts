/**
 * Bad-input catalogue: group ids. The library refuses what it cannot store or show (empty, too long,
 * control characters, lone surrogates) with `InvalidGroupId` before any database call, and accepts
 * everything else verbatim: quotes, SQL, unicode and names that would break a NOTIFY channel reach
 * SQL only as bound parameters, and channels are `mg_` + md5, so two ids never share one.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Exit } from "effect"
import { randomBytes } from "node:crypto"
import { channelFor } from "../../src/internal/pg/constants.js"
import * as Membership from "../../src/Membership.js"
import * as MembershipConfig from "../../src/MembershipConfig.js"
import { MembershipStore } from "../../src/MembershipStore.js"
import { randomGroupId } from "../support/Database.js"
import { exactCover } from "../support/Recorder.js"
import { fast, makeGroup, StoreLive, waitFor } from "../faults/support.js"

const suffix = () => randomGroupId("gid").slice(-12)

/** Every id the library refuses, and the reason it gives. */
const refused: ReadonlyArray<readonly [string, string, RegExp]> = [
  ["empty", "", /it is empty/],
  ["only whitespace", " \t ", /only whitespace|control characters/],
  ["10 kB", "x".repeat(10_240), /10240 characters long; at most 200/],
  ["201 characters", "g".repeat(201), /201 characters long/],
  ["a NUL byte (PostgreSQL text cannot hold it)", "a\u0000b", /control characters/],
  ["a newline (garbles logs and status)", "a\nb", /control characters/],
  ["an escape sequence (garbles terminals)", "a\u001b[31mred", /control characters/],
  ["a C1 control", "a\u0085b", /control characters/],
  ["a lone surrogate (not valid UTF-8)", "a\ud800b", /lone surrogate/],
  // Characters are code points, as the schema's length() counts them (101 emoji, 202 UTF-16 code
  // units, are accepted: below).
  ["201 emoji", "\u{1F600}".repeat(201), /201 characters long/]
]

for (const [what, groupId, reason] of refused) {
  it.effect(`refuses a group id that is ${what}, before any database call`, () =>
    Effect.gen(function*() {
      // A store that fails the test if it is touched.
      const untouchable = new Proxy({}, {
        get: () => {
          throw new Error("the store was used")
        }
      }) as never
      const exit = yield* Effect.exit(
        Effect.scoped(Membership.make({ groupId, ...fast })).pipe(Effect.provideService(MembershipStore, untouchable))
      )
      expect(Exit.isFailure(exit)).toBe(true)
      const error = yield* Effect.flip(MembershipConfig.validateGroupId(groupId))
      expect(error._tag).toBe("InvalidGroupId")
      expect(error.message).toMatch(reason)
      // The message shows at most 40 characters of the id, quoted (no raw control characters).
      expect(error.message.length).toBeLessThan(200)
      expect(error.message).not.toMatch(/[\u0000-\u001f]/)
    }))
}

// Regression (found by this suite, fixed in PgMembershipStore / MembershipError).
it.effect("a group id that is not a string (from untyped JavaScript) is refused with a readable error", () =>
  Effect.gen(function*() {
    for (const groupId of [42, null, undefined, { toString: () => "x" }]) {
      const error = yield* Effect.flip(MembershipConfig.make({ groupId: groupId as never }))
      expect(error._tag).toBe("InvalidGroupId")
      // Reading the message must not throw (it would turn a clear error into a TypeError).
      expect(() => error.message).not.toThrow()
      expect(error.message).toMatch(/must be a string/)
    }
  }))

/** Ids that must work as any other: stored verbatim, one channel each, a group of their own. */
const accepted: ReadonlyArray<readonly [string, () => string]> = [
  ["quotes and SQL", () => `'; DROP TABLE modulo_group.members; -- " \\ $1 %s ${suffix()}`],
  ["a dollar-quote and a NOTIFY", () => `$$; NOTIFY mg; SELECT pg_sleep(10); $$ ${suffix()}`],
  ["unicode: CJK, RTL, combining marks, emoji", () => `組-مجموعة-e\u0301-\u{1F680}-${suffix()}`],
  ["exactly 200 characters", () => `${suffix()}${"z".repeat(188)}`],
  // 200 characters, 388 UTF-16 code units: refused as "388 characters long" before (an outsider's review).
  ["200 characters, 188 of them emoji", () => `${suffix()}${"\u{1F600}".repeat(188)}`],
  // As identifiers these would break a channel: > 63 bytes are truncated (two ids would share a
  // channel), upper case folds, spaces, quotes and dots need quoting.
  ["a channel-breaking name: 100 bytes, quotes, dots, spaces, upper case", () =>
    `"My Group".${"\u00e9".repeat(40)}.${suffix()}`],
  ["a LISTEN keyword and semicolon", () => `UNLISTEN *; LISTEN ${suffix()}`]
]

for (const [what, make] of accepted) {
  it.live(`accepts a group id with ${what}: stored in NFC, G1, notified through a hashed channel`, () =>
    Effect.gen(function*() {
      const groupId = make().normalize("NFC")
      // A long heartbeat: converging fast proves the notification on the hashed channel arrived.
      const { join, rec } = yield* makeGroup(groupId, { ...fast, heartbeat: "3 seconds", lease: "10 seconds" })
      yield* join()
      yield* join()
      yield* waitFor(() => exactCover(rec.working(), 2), Duration.seconds(20), "two members")
      const took = yield* Effect.zipRight(join(), waitFor(() => exactCover(rec.working(), 3), Duration.seconds(20)))
      expect(took).toBeLessThan(2_500)
      expect(rec.violations).toEqual([])
      const sql = yield* SqlClient.SqlClient
      const stored = yield* sql<{ group_id: string; size: number }>`
        SELECT group_id, size FROM modulo_group.groups WHERE group_id = ${groupId}`
      expect(stored).toEqual([{ group_id: groupId, size: 3 }])
      const members = yield* sql<{ n: string }>`SELECT count(*) AS n FROM modulo_group.members WHERE group_id = ${groupId}`
      expect(Number(members[0]!.n)).toBe(3)
      expect(channelFor(groupId)).toMatch(/^mg_[0-9a-f]{32}$/)
    }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)
}

it.live("two ids equal in their first 63 bytes, or differing only in case, are two groups with two channels", () =>
  Effect.gen(function*() {
    const common = `${suffix()}-${"p".repeat(70)}`
    const ids = [`${common}-A`, `${common}-B`, `${common}-b`]
    expect(new Set(ids.map(channelFor)).size).toBe(3)
    const groups = yield* Effect.forEach(ids, (id) => makeGroup(id))
    // Sizes 1, 2 and 3: each converges to its own size, none sees another's members.
    yield* Effect.forEach(groups, (g, i) => Effect.forEach(Array.from({ length: i + 1 }), () => g.join()), {
      concurrency: "unbounded"
    })
    yield* Effect.forEach(groups, (g, i) => waitFor(() => exactCover(g.rec.working(), i + 1), Duration.seconds(20)))
    for (const g of groups) expect(g.rec.violations).toEqual([])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)

// Break 9 of the safety review: the same text in NFC and NFD was two groups with two index sets.
it.live("a group id in NFD and the same id in NFC are one group: one epoch, indices 0..1", () =>
  Effect.gen(function*() {
    const base = `caf\u00e9-${randomBytes(4).toString("hex")}`
    const nfc = base.normalize("NFC")
    const nfd = base.normalize("NFD")
    expect(nfc).not.toBe(nfd)
    const { join, rec } = yield* makeGroup(nfc, fast)
    yield* join()
    yield* join({ groupId: nfd })
    yield* waitFor(() => exactCover(rec.working(), 2), Duration.seconds(20), "one group of two")
    const sql = yield* SqlClient.SqlClient
    const stored = yield* sql<{ group_id: string; size: number }>`
      SELECT group_id, size FROM modulo_group.groups WHERE group_id IN (${nfc}, ${nfd})`
    expect(stored).toEqual([{ group_id: nfc, size: 2 }])
  }).pipe(Effect.scoped, Effect.provide(StoreLive)), 60_000)
