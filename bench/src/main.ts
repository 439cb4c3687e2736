/**
 * `pnpm bench`: Sluice's benchmarks, each printing a Markdown table and writing its JSON
 * under bench/results/ (`--quick`: small sizes for a smoke run, written to results/quick/).
 */
import { Command, Options } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Option } from "effect"
import { mkdir, readFile } from "node:fs/promises"
import { join } from "node:path"
import * as Delivery from "./benchmarks/Delivery.js"
import * as Chart from "./Chart.js"
import * as OutboxIngest from "./benchmarks/OutboxIngest.js"
import * as RateLimit from "./benchmarks/RateLimit.js"
import * as Recovery from "./benchmarks/Recovery.js"
import * as Scale from "./benchmarks/Scale.js"
import type { ContenderName } from "./Contenders.js"
import * as Profile from "./Profile.js"
import * as Receivers from "./Receivers.js"
import * as Report from "./Report.js"

const BENCHMARKS = ["delivery", "scale", "rate-limit", "recovery", "outbox-ingest"] as const
type BenchmarkName = (typeof BENCHMARKS)[number]

const quick = Options.boolean("quick").pipe(Options.withDescription("small sizes: a smoke run of the harness"))
const events = Options.integer("events").pipe(
  Options.withDescription("events in the delivery benchmark (default 50,000; 5,000 with --quick)"),
  Options.optional
)
const rounds = Options.integer("rounds").pipe(
  Options.withDescription("interleaved rounds of the delivery benchmark; medians are quoted"),
  Options.withDefault(1)
)
const rate = Options.integer("rate").pipe(
  Options.withDescription("events/s offered in the delivery benchmark's latency phase: below every contender's capacity"),
  Options.withDefault(100)
)
const only = Options.choice("only", BENCHMARKS).pipe(
  Options.withDescription("run only this benchmark (repeatable)"),
  Options.repeated
)
const contenders = Options.choice("contender", ["sluice", "ceiling", "bullmq"] as const).pipe(
  Options.withDescription("delivery benchmark: only these contenders (repeatable; default all three)"),
  Options.repeated
)
const pglite = Options.boolean("pglite").pipe(
  Options.withDescription("record history in the broker's embedded PGlite instead of a throwaway Postgres database")
)
const cpuProf = Options.boolean("cpu-prof").pipe(
  Options.withDescription("profile the broker in the delivery benchmark's first round and print where its CPU time goes")
)

const redraw = Options.boolean("redraw").pipe(
  Options.withDescription("only redraw the chart from the delivery results already written (results/delivery.json)")
)

/** The delivery chart, from the JSON a run wrote. */
const redrawChart = (quick: boolean) =>
  Effect.gen(function* () {
    const file = join(Report.resultsDir(quick), "delivery.json")
    const written = JSON.parse(yield* Effect.promise(() => readFile(file, "utf8"))) as {
      readonly options: Delivery.DeliveryOptions
      readonly results: { readonly summaries: Parameters<typeof Delivery.chart>[1] }
    }
    const svg = yield* Chart.write(quick, "delivery", Delivery.chart(written.options, written.results.summaries))
    yield* Console.log(`${file} → ${svg}`)
  })

const bench = Command.make(
  "bench",
  { quick, events, rounds, rate, only, contenders, pglite, cpuProf, redraw },
  (o) =>
    Effect.gen(function* () {
      if (o.redraw) return yield* redrawChart(o.quick)
      const selected = new Set<BenchmarkName>(o.only.length > 0 ? o.only : BENCHMARKS)
      const history = o.pglite ? "pglite" : "postgres"
      const environment = Report.environment()
      const profileDir = join(Report.resultsDir(o.quick), "profiles")
      if (o.cpuProf) yield* Effect.promise(() => mkdir(profileDir, { recursive: true }))
      yield* Console.log(
        `Sluice benchmarks (${o.quick ? "quick" : "full"}) on ${environment.cores} × ${environment.cpu}, ` +
          `node ${environment.node}, load ${environment.loadAverage.toFixed(2)}, history in ${history}`
      )
      const receivers = yield* Receivers.start(10)
      const save = (name: BenchmarkName, options: unknown, results: unknown) =>
        Report.writeJson(o.quick, name, {
          benchmark: name,
          mode: o.quick ? "quick" : "full",
          finishedAt: new Date().toISOString(),
          environment,
          options,
          results
        }).pipe(Effect.flatMap((file) => Console.log(`→ ${file}`)))

      if (selected.has("delivery")) {
        yield* Console.log("\n## 1. End-to-end delivery")
        const options: Delivery.DeliveryOptions = {
          events: Option.getOrElse(o.events, () => (o.quick ? 5_000 : 50_000)),
          destinations: 10,
          concurrency: 10,
          rounds: o.rounds,
          rate: o.rate,
          latencySeconds: o.quick ? 3 : 10,
          history,
          cpuProfileDir: o.cpuProf ? profileDir : undefined,
          contenders: o.contenders.length > 0 ? (o.contenders as ReadonlyArray<ContenderName>) : ["ceiling", "sluice", "bullmq"]
        }
        const results = yield* Delivery.run(receivers, options)
        yield* save("delivery", options, results)
        yield* redrawChart(o.quick)
        for (const round of results.rounds) if (round.throughput.profile) yield* Profile.print(round.throughput.profile)
      }
      if (selected.has("scale")) {
        yield* Console.log("\n## 2. Scale in destinations")
        const options = Scale.options(o.quick, history)
        yield* save("scale", options, yield* Scale.run(receivers, options))
      }
      if (selected.has("rate-limit")) {
        yield* Console.log("\n## 3. Rate-limit accuracy")
        const options = RateLimit.options(o.quick, history)
        yield* save("rate-limit", options, yield* RateLimit.run(receivers, options))
      }
      if (selected.has("recovery")) {
        yield* Console.log("\n## 4. Recovery")
        const options = Recovery.options(o.quick, history)
        yield* save("recovery", options, yield* Recovery.run(receivers, options))
      }
      if (selected.has("outbox-ingest")) {
        yield* Console.log("\n## 5. Outbox and ingest")
        const options = OutboxIngest.options(o.quick, history)
        yield* save("outbox-ingest", options, yield* OutboxIngest.run(options))
      }
    }).pipe(Effect.scoped)
).pipe(Command.withDescription("run Sluice's benchmarks against the raw JetStream ceiling and BullMQ"))

const cli = Command.run(bench, { name: "sluice-bench", version: "0.1.0" })

NodeRuntime.runMain(cli(process.argv).pipe(Effect.provide(NodeContext.layer)))
