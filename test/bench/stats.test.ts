/** The benchmark's statistics (bench/src/Stats.ts): quantiles, medians and rate windows. */
import { describe, expect, it } from "@effect/vitest"
import { maxInWindow, median, quantileOfSorted, ratio } from "../../bench/src/Stats.js"

describe("bench statistics", () => {
  it("takes nearest-rank quantiles", () => {
    const sorted = Array.from({ length: 100 }, (_, i) => i + 1)
    expect(quantileOfSorted(sorted, 0.5)).toBe(50)
    expect(quantileOfSorted(sorted, 0.99)).toBe(99)
    expect(quantileOfSorted(sorted, 1)).toBe(100)
    expect(quantileOfSorted([7], 0.99)).toBe(7)
    expect(quantileOfSorted([], 0.5)).toBeNaN()
  })

  it("takes the median of unsorted values, ignoring NaN", () => {
    expect(median([3, 1, 2])).toBe(2)
    expect(median([5, Number.NaN, 1, 3])).toBe(3)
    expect(median([])).toBeNaN()
  })

  it("counts the most arrivals in any sliding window", () => {
    // Bursts of 8 at each second: never more than 8 in a window of 1000 ms.
    const bursts = [0, 1000, 2000].flatMap((t) => Array.from({ length: 8 }, (_, i) => t + i))
    expect(maxInWindow(bursts, 1_000)).toBe(8)
    // The first burst delayed until just before the second: a receiver sees both within one second.
    const late = [...bursts.slice(0, 8).map((t) => t + 995), ...bursts.slice(8)].sort((a, b) => a - b)
    expect(maxInWindow(late, 1_000)).toBe(16)
    expect(maxInWindow([], 1_000)).toBe(0)
  })

  it("gives NaN rather than Infinity for an empty whole", () => {
    expect(ratio(1, 0)).toBeNaN()
    expect(ratio(1, 4)).toBe(0.25)
  })
})
