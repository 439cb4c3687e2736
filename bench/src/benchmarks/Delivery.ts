/**
 * Benchmark 1, end-to-end delivery: ~1 KiB events published through the SDK, spread over 10
 * destinations, delivered to local receivers — by Sluice (history on), by the raw JetStream
 * ceiling and by BullMQ, in interleaved rounds so that drift on the machine hits all three.
 *
 * Each round runs two phases per contender, each on a fresh start of it:
 * - throughput: all events published as fast as the producer can, while delivery runs;
 *   deliveries/s = events / (last arrival − first publish). A contender that has not
 *   delivered everything by the deadline is reported with what it did deliver;
 * - latency: a steady rate well below every contender's capacity; publish→arrival p50/p99.
 * Medians over rounds are quoted; ratios are of those medians, from the same run.
 */
import { Console, Duration, Effect } from "effect"
import * as Chart from "../Chart.js"
import type { ContenderName } from "../Contenders.js"
import { contenders } from "../Contenders.js"
import type { HistoryBackend } from "../Infra.js"
import * as ProcessStats from "../ProcessStats.js"
import type { LatencySummary } from "../ReceiverProtocol.js"
import type { Receivers } from "../Receivers.js"
import * as Report from "../Report.js"
import { median, ratio } from "../Stats.js"
import * as Workload from "../Workload.js"

export interface DeliveryOptions {
  readonly events: number
  readonly destinations: number
  /** Requests in flight per destination (Sluice's maxConcurrency; the baselines match it). */
  readonly concurrency: number
  readonly rounds: number
  /** Events per second offered in the latency phase. */
  readonly rate: number
  readonly latencySeconds: number
  readonly history: HistoryBackend
  /** Profile the broker's throughput phase in the first round (the directory receives a .cpuprofile). */
  readonly cpuProfileDir?: string
  readonly contenders: ReadonlyArray<ContenderName>
}

export interface RoundResult {
  readonly contender: ContenderName
  readonly round: number
  readonly throughput: {
    readonly events: number
    /** Distinct events delivered: all of them, unless the deadline passed first. */
    readonly delivered: number
    readonly complete: boolean
    readonly duplicates: number
    readonly publishSeconds: number
    /** From the first publish to the last delivery (to the deadline when incomplete). */
    readonly seconds: number
    readonly deliveriesPerSecond: number
    /** Latency while saturated: mostly time spent queued, reported for completeness. */
    readonly saturatedLatency: LatencySummary | null
    /** From the last delivery until the contender's after-work (Sluice: history) was done; null if it was not within the limit. */
    readonly settleMs: number | null
    /** CPU ms per process (and the receivers) from the first publish until settled. */
    readonly cpuMs: Readonly<Record<string, number>>
    /** The highest RSS of each of the contender's processes during the phase. */
    readonly peakRssBytes: Readonly<Record<string, number>>
    readonly meanBodyBytes: number
    /** The broker's CPU profile of this phase, when asked for. */
    readonly profile: string | undefined
  }
  /** Of the latency phase, on a fresh start of the contender; null if nothing arrived. */
  readonly latency: ({ readonly rate: number; readonly events: number; readonly complete: boolean } & LatencySummary) | null
}

const PREFIX = "bench"

/** How long the after-work may take once everything was delivered. */
const SETTLE_LIMIT = Duration.minutes(2)

const setupFor = (receivers: Receivers, options: DeliveryOptions) => ({
  urls: receivers.urls().slice(0, options.destinations),
  concurrency: options.concurrency,
  prefix: PREFIX,
  history: options.history
})

/** Every event published at once into a fresh contender; done when all arrived (and Sluice's history caught up) or at the deadline. */
const throughputPhase = (receivers: Receivers, options: DeliveryOptions, contender: ContenderName, profile: boolean) =>
  Effect.scoped(
    Effect.gen(function* () {
      const stack = yield* contenders[contender]({
        ...setupFor(receivers, options),
        cpuProfileDir: profile ? options.cpuProfileDir : undefined
      })
      yield* receivers.reset
      const cpu = yield* ProcessStats.cpuMeter({ ...stack.processes, receivers: receivers.pid }, stack.commands)
      const peaks = yield* ProcessStats.peakRssMeter(stack.processes)
      if (stack.profiler) yield* stack.profiler.start
      const published = yield* Workload.burst(stack.publisher, Workload.spread(options.events, options.destinations))
      const outcome = yield* receivers.awaitUnique(options.events, Workload.deadlineMs(options.events))
      const delivered = outcome.summary
      const endedAt = outcome.complete ? delivered.lastAt! : Workload.now()
      // The history of a run that did not complete may never catch up: it is not waited for.
      const settled =
        outcome.complete &&
        (yield* stack.settle.pipe(Effect.timeoutTo({ duration: SETTLE_LIMIT, onSuccess: () => true, onTimeout: () => false })))
      const settleMs = settled ? Workload.now() - endedAt : null
      const seconds = (endedAt - published.startedAt) / 1000
      return {
        events: options.events,
        delivered: delivered.unique,
        complete: outcome.complete,
        duplicates: delivered.duplicates,
        publishSeconds: (published.endedAt - published.startedAt) / 1000,
        seconds,
        deliveriesPerSecond: delivered.unique / seconds,
        saturatedLatency: delivered.latency,
        settleMs,
        cpuMs: yield* cpu,
        peakRssBytes: yield* peaks,
        meanBodyBytes: delivered.meanBodyBytes,
        profile: stack.profiler ? yield* stack.profiler.stop : undefined
      } satisfies RoundResult["throughput"]
    })
  )

/** A steady rate into another fresh contender, so that a backlog left by the burst cannot show as latency. */
const latencyPhase = (receivers: Receivers, options: DeliveryOptions, contender: ContenderName) =>
  Effect.scoped(
    Effect.gen(function* () {
      const stack = yield* contenders[contender](setupFor(receivers, options))
      yield* receivers.reset
      const steady = yield* Workload.paced(
        stack.publisher,
        (n) => ({ destination: n % options.destinations }),
        options.rate,
        options.latencySeconds * 1000
      )
      const arrived = yield* receivers.awaitUnique(steady.count, Workload.deadlineMs(steady.count))
      return arrived.summary.latency === null
        ? null
        : { rate: options.rate, events: steady.count, complete: arrived.complete, ...arrived.summary.latency }
    })
  )

const runRound = (receivers: Receivers, options: DeliveryOptions, contender: ContenderName, round: number) =>
  Effect.gen(function* () {
    const throughput = yield* throughputPhase(receivers, options, contender, contender === "sluice" && round === 1)
    const latency = yield* latencyPhase(receivers, options, contender)
    yield* Console.log(
      `  round ${round} ${contender.padEnd(7)}: ` +
        (throughput.complete
          ? `${Report.fmt(throughput.deliveriesPerSecond)} deliveries/s`
          : `INCOMPLETE, ${Report.fmt(throughput.delivered)} of ${Report.fmt(options.events)} delivered in ${Report.fmt(throughput.seconds)} s`) +
        `, peak RSS ${Object.entries(throughput.peakRssBytes)
          .map(([name, bytes]) => `${name} ${Report.mib(bytes)} MiB`)
          .join(", ")}` +
        (latency === null ? "" : `; at ${options.rate}/s p50 ${Report.fmt(latency.p50, 1)} ms p99 ${Report.fmt(latency.p99, 1)} ms`)
    )
    return { contender, round, throughput, latency } satisfies RoundResult
  })

const labels: Readonly<Record<ContenderName, string>> = {
  sluice: "Sluice (history on)",
  ceiling: "raw JetStream (ceiling)",
  bullmq: "BullMQ + Redis"
}

const colors: Readonly<Record<ContenderName, string>> = { sluice: "#2f6fde", ceiling: "#8a8f98", bullmq: "#e0782f" }

const bar = (s: Summary, value: number, flagIncomplete = false) => ({
  label: flagIncomplete && !s.complete ? `${labels[s.contender]} — incomplete` : labels[s.contender],
  value,
  color: colors[s.contender]
})

/** The README chart: throughput and steady-state latency per contender. */
export const chart = (options: DeliveryOptions, summaries: ReadonlyArray<Summary>): string =>
  Chart.svg(
    `${Report.fmt(options.events)} events over ${options.destinations} HTTP destinations (medians of ${options.rounds} round(s))`,
    [
      {
        title: "Deliveries per second (higher is better)",
        unit: "/s",
        bars: summaries.map((s) => bar(s, s.deliveriesPerSecond, true))
      },
      {
        title: `Publish → receive latency p50 at ${options.rate} events/s (lower is better)`,
        unit: "ms",
        bars: summaries.map((s) => bar(s, s.p50))
      },
      {
        title: `Publish → receive latency p99 at ${options.rate} events/s (lower is better)`,
        unit: "ms",
        bars: summaries.map((s) => bar(s, s.p99))
      }
    ]
  )

type Summary = ReturnType<typeof summarize>

/** The medians over rounds of one contender. */
const summarize = (rounds: ReadonlyArray<RoundResult>, contender: ContenderName) => {
  const mine = rounds.filter((r) => r.contender === contender)
  const latencies = mine.flatMap((r) => (r.latency === null ? [] : [r.latency]))
  const cpuPerThousand = mine.map(
    (r) => (Object.values(r.throughput.cpuMs).reduce((a, b) => a + b, 0) / r.throughput.delivered) * 1000
  )
  const mainProcess = (r: RoundResult) => Object.values(r.throughput.peakRssBytes)[0] ?? Number.NaN
  return {
    contender,
    /** Every round delivered everything within its deadline. */
    complete: mine.every((r) => r.throughput.complete),
    delivered: median(mine.map((r) => r.throughput.delivered)),
    deliveriesPerSecond: median(mine.map((r) => r.throughput.deliveriesPerSecond)),
    perRound: mine.map((r) => r.throughput.deliveriesPerSecond),
    p50: median(latencies.map((l) => l.p50)),
    p99: median(latencies.map((l) => l.p99)),
    cpuMsPerThousand: median(cpuPerThousand),
    /** Peak RSS of the contender's main process (broker or worker). */
    peakRssBytes: median(mine.map(mainProcess)),
    settleMs: median(mine.map((r) => r.throughput.settleMs ?? Number.NaN)),
    duplicates: mine.reduce((sum, r) => sum + r.throughput.duplicates, 0)
  }
}

export const run = (receivers: Receivers, options: DeliveryOptions) =>
  Effect.gen(function* () {
    yield* receivers.listen(options.destinations)
    yield* receivers.configure({ status: 200, delayMs: 0 })
    const rounds: Array<RoundResult> = []
    for (let round = 1; round <= options.rounds; round++) {
      for (const contender of options.contenders) rounds.push(yield* runRound(receivers, options, contender, round))
    }
    const summaries = options.contenders.map((c) => summarize(rounds, c))
    const of = (c: ContenderName) => summaries.find((s) => s.contender === c)
    const sluice = of("sluice")
    const ratios = {
      sluiceToCeiling: ratio(sluice?.deliveriesPerSecond ?? NaN, of("ceiling")?.deliveriesPerSecond ?? NaN),
      sluiceToBullmq: ratio(sluice?.deliveriesPerSecond ?? NaN, of("bullmq")?.deliveriesPerSecond ?? NaN),
      p99SluiceToCeiling: ratio(sluice?.p99 ?? NaN, of("ceiling")?.p99 ?? NaN)
    }

    yield* Report.printTable(
      `End-to-end delivery: ${Report.fmt(options.events)} events × ~1 KiB over ${options.destinations} destinations, ` +
        `concurrency ${options.concurrency} each; medians of ${options.rounds} round(s)`,
      [
        "contender",
        "delivered",
        "deliveries/s",
        "per round",
        `p50 ms @ ${options.rate}/s`,
        `p99 ms @ ${options.rate}/s`,
        "CPU ms / 1k events",
        "peak RSS MiB",
        "history lag s"
      ],
      summaries.map((s) => [
        s.contender === "sluice" ? `sluice (history on, ${options.history})` : s.contender,
        s.complete ? Report.fmt(s.delivered) : `${Report.fmt(s.delivered)} — INCOMPLETE`,
        Report.fmt(s.deliveriesPerSecond),
        s.perRound.map((v) => Report.fmt(v)).join(" / "),
        Report.fmt(s.p50, 1),
        Report.fmt(s.p99, 1),
        Report.fmt(s.cpuMsPerThousand),
        Report.mib(s.peakRssBytes),
        s.contender === "sluice" ? Report.fmt(s.settleMs / 1000, 1) : "–"
      ])
    )
    if (summaries.some((s) => !s.complete)) {
      yield* Console.log(
        `INCOMPLETE: not every event was delivered within the phase's deadline (${Report.fmt(Workload.deadlineMs(options.events) / 1000)} s); ` +
          "deliveries/s is what was delivered by then."
      )
    }
    yield* Report.printTable(
      "Ratios (same run)",
      ["ratio", "value"],
      [
        ["Sluice / ceiling deliveries/s", Report.fmt(ratios.sluiceToCeiling, 3)],
        ["Sluice / BullMQ deliveries/s", Report.fmt(ratios.sluiceToBullmq, 3)],
        ["Sluice / ceiling p99 latency", Report.fmt(ratios.p99SluiceToCeiling, 1)]
      ]
    )
    return { options, summaries, ratios, rounds }
  })
