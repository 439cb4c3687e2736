/**
 * A smoke run of the benchmark harness (`pnpm bench`): the delivery benchmark with a few
 * hundred events, so its moving parts — the receivers process, the broker process, the raw
 * JetStream ceiling, redis-server and the BullMQ worker — keep working. Numbers are not
 * checked: only that every contender delivered everything and the report came out whole.
 */
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Delivery from "../../bench/src/benchmarks/Delivery.js"
import * as Receivers from "../../bench/src/Receivers.js"

it.scopedLive(
  "the delivery benchmark runs Sluice, the ceiling and BullMQ to completion",
  () =>
    Effect.gen(function* () {
      const receivers = yield* Receivers.start(2)
      const options: Delivery.DeliveryOptions = {
        events: 200,
        destinations: 2,
        concurrency: 4,
        rounds: 1,
        rate: 50,
        latencySeconds: 1,
        history: "postgres",
        contenders: ["ceiling", "sluice", "bullmq"]
      }
      const { summaries, ratios, rounds } = yield* Delivery.run(receivers, options)
      expect(rounds.map((r) => r.contender)).toEqual(["ceiling", "sluice", "bullmq"])
      for (const round of rounds) {
        expect(round.throughput.deliveriesPerSecond).toBeGreaterThan(0)
        expect(round.latency?.count).toBe(50)
        expect(round.throughput.meanBodyBytes).toBeGreaterThan(900)
      }
      expect(summaries).toHaveLength(3)
      expect(Number.isFinite(ratios.sluiceToCeiling) && Number.isFinite(ratios.sluiceToBullmq)).toBe(true)
      expect(Delivery.chart(options, summaries)).toContain("<svg")
    }),
  180_000
)
