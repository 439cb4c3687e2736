/**
 * Benchmark 3, rate-limit accuracy: a destination limited to 8 requests/s (burst 8) whose
 * receiver takes ~1 s to answer, hit by a burst of events. Reported: the rate achieved and
 * the most requests in any one-second window — as the receiver saw them arrive, and as the
 * broker started them (the attempt start times in the history, Postgres only).
 */
import { Console, Effect } from "effect"
import { query } from "../../../test/helpers/inspect.js"
import { waitForEffect } from "../../../test/helpers/waitFor.js"
import type { HistoryBackend } from "../Infra.js"
import type { Receivers } from "../Receivers.js"
import * as Report from "../Report.js"
import * as SluiceStack from "../SluiceStack.js"
import { maxInWindow } from "../Stats.js"
import * as Workload from "../Workload.js"

export interface RateLimitOptions {
  readonly events: number
  readonly perSecond: number
  readonly burst: number
  /** How long the receiver takes to answer each request. */
  readonly responseMs: number
  /** Enough requests in flight to sustain the limit despite the slow answers. */
  readonly maxConcurrency: number
  readonly history: HistoryBackend
}

export const options = (quick: boolean, history: HistoryBackend): RateLimitOptions => ({
  events: quick ? 100 : 500,
  perSecond: 8,
  burst: 8,
  responseMs: 1_000,
  maxConcurrency: 16,
  history
})

const PREFIX = "ratelimit"

/**
 * What a series of request times says about the limit: the rate sustained (the mean count
 * of the whole one-second windows from the first request on, which a burst at the start or
 * a short last window cannot inflate) and the most requests in any sliding one-second window.
 */
const judge = (times: ReadonlyArray<number>, limit: number) => {
  const sorted = [...times].sort((a, b) => a - b)
  const first = sorted[0] ?? 0
  const wholeWindows = Math.floor(((sorted[sorted.length - 1] ?? 0) - first) / 1_000)
  const inWholeWindows = sorted.filter((t) => t < first + wholeWindows * 1_000).length
  const rate = wholeWindows === 0 ? Number.NaN : inWholeWindows / wholeWindows
  return {
    requests: sorted.length,
    ratePerSecond: rate,
    percentOfLimit: (rate / limit) * 100,
    maxInAnySecond: maxInWindow(sorted, 1_000),
    /** ms from the first request, for plotting. */
    offsetsMs: sorted.map((t) => Math.round(t - first))
  }
}

export const run = (receivers: Receivers, options: RateLimitOptions) =>
  Effect.scoped(
    Effect.gen(function* () {
      const stack = yield* SluiceStack.start({ history: options.history })
      yield* receivers.configure({ status: 200, delayMs: options.responseMs }, [0])
      yield* Effect.addFinalizer(() => Effect.ignore(receivers.configure({ status: 200, delayMs: 0 }, [0])))
      const destinationId = `${PREFIX}-d0`
      yield* stack.addDestinations([
        SluiceStack.destinationSpec(PREFIX, 0, receivers.urls()[0]!, {
          rateLimit: { perSecond: options.perSecond, burst: options.burst },
          maxConcurrency: options.maxConcurrency,
          ordering: "none",
          timeoutMs: 10_000
        })
      ])
      yield* receivers.reset
      yield* Workload.burst(stack.publisher(PREFIX), Workload.spread(options.events, 1))
      const { complete } = yield* receivers.awaitUnique(options.events, 60_000 + (options.events / options.perSecond) * 1_500)
      const arrived = judge(yield* receivers.arrivals(0), options.perSecond)

      const databaseUrl = stack.databaseUrl
      const started =
        databaseUrl === undefined
          ? null
          : yield* Effect.gen(function* () {
              // The receiver counts a request before the broker has its answer and records the
              // attempt, so wait for the history to hold every attempt rather than for a drained stream.
              const startTimes = query(
                databaseUrl,
                (sql) =>
                  sql<Array<{ ms: string }>>`
                    select (extract(epoch from started_at) * 1000)::text as ms
                    from attempts where destination_id = ${destinationId}`
              )
              const rows = yield* waitForEffect(
                startTimes.pipe(Effect.map((rows) => rows.length >= arrived.requests && rows)),
                { timeoutMs: 60_000, description: `${arrived.requests} attempts of ${destinationId} in the history` }
              )
              return judge(
                rows.map((row) => Number(row.ms)),
                options.perSecond
              )
            })

      yield* Report.printTable(
        `Rate-limit accuracy: ${options.events} events at once, limit ${options.perSecond}/s (burst ${options.burst}), ` +
          `receiver answering in ${options.responseMs} ms`,
        ["measured at", "requests", "rate /s", "% of limit", "max in any 1 s window"],
        [
          ["receiver (arrivals)", arrived] as const,
          ...(started === null ? [] : [["broker (attempt starts in history)", started] as const])
        ].map(([label, r]) => [
          label,
          Report.fmt(r.requests),
          Report.fmt(r.ratePerSecond, 2),
          Report.fmt(r.percentOfLimit, 1),
          Report.fmt(r.maxInAnySecond)
        ])
      )
      if (started === null) yield* Console.log("(attempt start times need the Postgres history backend)")
      if (!complete) yield* Console.log(`INCOMPLETE: ${arrived.requests} of ${options.events} requests arrived before the deadline`)
      return { destinationId, complete, arrived, started }
    })
  )
