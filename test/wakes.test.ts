/**
 * Which notifications bring a renewal forward (src/internal/membership/wakes.ts): only a payload
 * that claims nothing the member does not already know from the database is skipped.
 */
import { describe, expect, it } from "vitest"
import { MemberState } from "../src/MemberState.js"
import { matters } from "../src/internal/membership/wakes.js"

const slot = (epoch: number) => ({ epoch, index: 0, size: 2, incarnation: 1 })

describe("wake-ups skipped for what the member knows", () => {
  it("a change's notification wakes a member that does not know its epoch yet, and only it", () => {
    expect(matters(MemberState.Assigned(slot(5)), "6")).toBe(true)
    expect(matters(MemberState.Assigned(slot(5)), "5")).toBe(false)
    expect(matters(MemberState.Awaiting(slot(6)), "6")).toBe(false)
    expect(matters(MemberState.Renegotiating({ ...slot(5), next: slot(7), stuck: false }), "6")).toBe(false)
    expect(matters(MemberState.Renegotiating({ ...slot(5), next: slot(7), stuck: false }), "8")).toBe(true)
    expect(matters(MemberState.Fenced({ ...slot(5), stopping: false, stuck: false }), "5")).toBe(false)
  })

  it("a barrier's announcement wakes every member not yet working in that epoch", () => {
    expect(matters(MemberState.Awaiting(slot(6)), "6:ready")).toBe(true)
    expect(matters(MemberState.Assigned(slot(6)), "6:ready")).toBe(false)
    expect(matters(MemberState.Assigned(slot(7)), "6:ready")).toBe(false)
    expect(matters(MemberState.Assigned(slot(5)), "6:ready")).toBe(true)
    expect(matters(MemberState.Fenced({ ...slot(6), stopping: false, stuck: false }), "6:ready")).toBe(true)
    expect(matters(MemberState.Renegotiating({ ...slot(5), next: slot(6), stuck: false }), "6:ready")).toBe(true)
  })

  it("anything else wakes: other causes, no payload, no known epoch, forged or malformed payloads", () => {
    for (const payload of [undefined, "reap", "leave", "release", "", "6:readyx", "-1", "1e3", "99999999999999999999", "6 ", "x:ready"]) {
      expect(matters(MemberState.Assigned(slot(6)), payload)).toBe(true)
    }
    expect(matters(MemberState.Joining(), "1")).toBe(true)
    expect(matters(MemberState.Lost(), "1:ready")).toBe(true)
    expect(matters(MemberState.Leaving({ stopping: true, stuck: false }), "1")).toBe(true)
  })
})
