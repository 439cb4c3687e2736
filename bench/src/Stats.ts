/** The few statistics the benchmarks report, as pure functions over plain numbers. */

/** The q-quantile (0 ≤ q ≤ 1) of sorted values, nearest-rank; NaN when there are none. */
export const quantileOfSorted = (sorted: ArrayLike<number>, q: number): number => {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[rank]!
}

/** The median of any values; NaN when there are none. */
export const median = (values: ReadonlyArray<number>): number =>
  quantileOfSorted(
    [...values].filter((v) => !Number.isNaN(v)).sort((a, b) => a - b),
    0.5
  )

/** The most arrivals in any window of `windowMs` (sliding, starting at an arrival), of times sorted ascending. */
export const maxInWindow = (times: ReadonlyArray<number>, windowMs: number): number => {
  let best = 0
  let end = 0
  for (let start = 0; start < times.length; start++) {
    while (end < times.length && times[end]! < times[start]! + windowMs) end++
    best = Math.max(best, end - start)
  }
  return best
}

/** `part / whole`, NaN-safe for display. */
export const ratio = (part: number, whole: number): number => (whole > 0 ? part / whole : Number.NaN)
