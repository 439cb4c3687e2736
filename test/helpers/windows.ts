/** Counting in sliding windows: what rate-limit tests judge request starts by. */
import * as Stats from "../../bench/src/Stats.js"

/** The most of `times` (ms, in any order) in any half-open window of `windowMs`. */
export const maxInWindow = (times: ReadonlyArray<number>, windowMs = 1_000): number =>
  Stats.maxInWindow([...times].sort((a, b) => a - b), windowMs)
