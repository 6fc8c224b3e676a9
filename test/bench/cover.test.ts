/**
 * The benchmark's G1/G2 checker (bench/support/Cover.ts) judges overlaps on the marks' own times:
 * marks of several processes reach the benchmark in the order it reads their pipes, not the order
 * they happened in.
 */
import { describe, expect, it } from "vitest"
import { Cover, type Mark } from "../../bench/support/Cover.js"

const start = (member: string, epoch: number, index: number, size: number, at: number): Mark =>
  ({ member, kind: "start", epoch, index, size, at })
const end = (member: string, epoch: number, index: number, size: number, at: number): Mark =>
  ({ member, kind: "end", epoch, index, size, at })

/** a and b work epoch 1 (size 2). */
const working = () => {
  const cover = new Cover()
  cover.add(start("a", 1, 0, 2, 0))
  cover.add(start("b", 1, 1, 2, 0))
  return cover
}

/** As `working`, then a stopped at 10 and started epoch 2 at 20, while b's work in epoch 1 is open. */
const aMovedOn = () => {
  const cover = working()
  cover.add(end("a", 1, 0, 2, 10))
  cover.add(start("a", 2, 0, 2, 20))
  return cover
}

describe("the benchmark's cover checker", () => {
  it("an end read after a start it preceded is no violation", () => {
    // b stopped at 11, before a's start of epoch 2 at 20, which was read first.
    const cover = aMovedOn()
    cover.add(end("b", 1, 1, 2, 11))
    cover.add(start("b", 2, 1, 2, 21))
    expect(cover.violations).toEqual([])
    expect(cover.covered(2)).toBe(true)
  })

  it("work that ends after another epoch's start is a violation", () => {
    const cover = aMovedOn()
    cover.add(end("b", 1, 1, 2, 25))
    expect(cover.violations).toEqual(["a started epoch 2 while b worked in epoch 1 (it ended 5.0 ms after that start)"])
  })

  it("an older epoch's start read after a newer one's is judged on its end", () => {
    const cover = new Cover()
    cover.add(start("b", 2, 1, 2, 20))
    // a worked epoch 1 from 5 to 10, read after b's start at 20: fine.
    cover.add(start("a", 1, 0, 2, 5))
    cover.add(end("a", 1, 0, 2, 10))
    expect(cover.violations).toEqual([])
    // c worked epoch 1 from 6 to 30: it overlapped b's epoch 2.
    cover.add(start("c", 1, 1, 2, 6))
    cover.add(end("c", 1, 1, 2, 30))
    expect(cover.violations).toEqual(["c worked in epoch 1 after b started epoch 2 (it ended 10.0 ms after that start)"])
  })

  it("a start after a newer epoch had started is one violation, whatever the order read", () => {
    const cover = new Cover()
    cover.add(start("b", 2, 1, 2, 20))
    cover.add(start("c", 2, 0, 2, 20))
    cover.add(end("b", 2, 1, 2, 21))
    cover.add(start("a", 1, 0, 2, 25))
    cover.add(end("a", 1, 0, 2, 30))
    expect(cover.violations).toEqual(["a started epoch 1 5.0 ms after epoch 2 had started"])
  })

  it("work never seen to end after another epoch's start stays a violation", () => {
    const cover = aMovedOn()
    expect(cover.violations).toEqual(["a started epoch 2 while b worked in epoch 1 (no end seen)"])
  })

  it("a killed process's work ends when it is killed", () => {
    const cover = working()
    cover.add(end("a", 1, 0, 2, 10))
    // b is killed now (performance.now(), after these marks' times): a's start at 20 was earlier.
    const startAt = performance.now() + 60_000
    cover.add(start("a", 2, 0, 1, startAt))
    cover.kill("b", true)
    expect(cover.violations).toEqual([])
    expect(cover.covered(1)).toBe(true)
  })
})
