/**
 * Benchmark 5, outbox relay and HTTP ingest: a placeholder. Neither feature exists in the
 * broker yet; the entry is kept so the results say so instead of silently leaving it out.
 */
import { Effect } from "effect"
import * as Report from "../Report.js"

export const NOT_YET = "outbox and ingest: not yet available"

export const run = Effect.gen(function* () {
  yield* Report.printTable("Outbox and ingest", ["path", "events/s"], [
    ["HTTP ingest", "not yet available"],
    ["outbox relay", "not yet available"]
  ])
  return { status: NOT_YET }
})
