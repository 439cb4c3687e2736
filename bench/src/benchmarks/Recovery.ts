/**
 * Benchmark 4, recovery: a destination whose receiver answers 503 while a backlog of keyed
 * events is published, kept down for a while, then back. Reported: how many requests the
 * dead receiver got (the circuit should stop them), how soon deliveries resume, how long the
 * backlog takes to drain, and whether every key arrived in order.
 */
import { Console, Duration, Effect } from "effect"
import { waitForEffect } from "../../../test/helpers/waitFor.js"
import type { HistoryBackend } from "../Infra.js"
import type { Receivers } from "../Receivers.js"
import * as Report from "../Report.js"
import * as SluiceStack from "../SluiceStack.js"
import * as Workload from "../Workload.js"

export interface RecoveryOptions {
  readonly backlog: number
  readonly keys: number
  /** From the first refused request until the receiver answers 200 again. */
  readonly downSeconds: number
  /** Probe back-off of the destination: how soon after the receiver is back the broker notices. */
  readonly probeInitialMs: number
  readonly probeMaxMs: number
  readonly history: HistoryBackend
}

export const options = (quick: boolean, history: HistoryBackend): RecoveryOptions => ({
  backlog: quick ? 2_000 : 20_000,
  keys: 100,
  downSeconds: quick ? 5 : 30,
  probeInitialMs: 500,
  probeMaxMs: 2_000,
  history
})

const PREFIX = "recovery"

export const run = (receivers: Receivers, options: RecoveryOptions) =>
  Effect.scoped(
    Effect.gen(function* () {
      const stack = yield* SluiceStack.start({ history: options.history })
      const destinationId = `${PREFIX}-d0`
      yield* stack.addDestinations([
        SluiceStack.destinationSpec(PREFIX, 0, receivers.urls()[0]!, {
          ordering: "key",
          health: { probeInitialMs: options.probeInitialMs, probeMaxMs: options.probeMaxMs }
        })
      ])
      const health = stack.broker.client.destinations
        .get({ path: { id: destinationId } })
        .pipe(Effect.map((d) => d.health.state))

      yield* receivers.reset
      yield* receivers.configure({ status: 503, delayMs: 0 }, [0])
      yield* Effect.addFinalizer(() => Effect.ignore(receivers.configure({ status: 200, delayMs: 0 }, [0])))
      const downAt = Workload.now()
      const events = Array.from({ length: options.backlog }, (_, i) => ({
        destination: 0,
        key: `k${i % options.keys}`,
        seq: Math.floor(i / options.keys)
      }))
      const published = yield* Workload.burst(stack.publisher(PREFIX), events)
      yield* waitForEffect(Effect.map(health, (state) => state === "down"), {
        timeoutMs: 60_000,
        description: `${destinationId} to be down`
      })
      const wentDownSeconds = (Workload.now() - downAt) / 1000
      yield* Effect.sleep(Duration.millis(Math.max(0, downAt + options.downSeconds * 1000 - Workload.now())))
      const refusedWhileDown = (yield* receivers.summary).refused
      const stateWhileDown = yield* health

      yield* receivers.configure({ status: 200, delayMs: 0 }, [0])
      const backAt = Workload.now()
      const { summary: drained, complete } = yield* receivers.awaitUnique(options.backlog, 60_000 + options.backlog * 10)
      const drainedAt = complete ? drained.lastAt! : Workload.now()
      const result = {
        backlog: options.backlog,
        keys: options.keys,
        publishSeconds: (published.endedAt - published.startedAt) / 1000,
        wentDownAfterSeconds: wentDownSeconds,
        downSeconds: (backAt - downAt) / 1000,
        stateWhileDown,
        refusedWhileDown,
        delivered: drained.unique,
        complete,
        firstDeliveryAfterBackSeconds: drained.firstAt === null ? null : (drained.firstAt - backAt) / 1000,
        /** Until the last event arrived; until the deadline when incomplete. */
        drainSeconds: (drainedAt - backAt) / 1000,
        drainRatePerSecond: drained.firstAt === null ? 0 : (drained.unique * 1000) / (drainedAt - drained.firstAt),
        duplicates: drained.duplicates,
        orderViolations: drained.orderViolations,
        worstOrderViolation: drained.worstOrderViolation,
        stateAfter: yield* health
      }

      yield* Report.printTable(
        `Recovery: ${Report.fmt(options.backlog)} events over ${options.keys} keys while the receiver answers 503 ` +
          `for ${options.downSeconds} s (probe back-off ${options.probeInitialMs}–${options.probeMaxMs} ms)`,
        ["measure", "value"],
        [
          ["publishing the backlog took", `${Report.fmt(result.publishSeconds, 1)} s`],
          ["destination down after", `${Report.fmt(result.wentDownAfterSeconds, 1)} s`],
          ["requests refused while down", Report.fmt(result.refusedWhileDown)],
          ["first delivery after the receiver was back", `${Report.fmt(result.firstDeliveryAfterBackSeconds, 1)} s`],
          complete
            ? ["backlog drained after the receiver was back", `${Report.fmt(result.drainSeconds, 1)} s`]
            : [
                "backlog NOT drained (deadline)",
                `${Report.fmt(result.delivered)} of ${Report.fmt(options.backlog)} in ${Report.fmt(result.drainSeconds, 1)} s`
              ],
          ["drain rate", `${Report.fmt(result.drainRatePerSecond)} events/s`],
          [
            "per-key order violations",
            result.worstOrderViolation === null
              ? "0"
              : `${Report.fmt(result.orderViolations)} (worst: ${result.worstOrderViolation.seqBehind} behind its key, ` +
                `${Report.fmt(result.worstOrderViolation.msLate / 1000, 1)} s after the newer event)`
          ],
          ["duplicate deliveries", Report.fmt(result.duplicates)],
          ["health while down → after the drain", `${result.stateWhileDown} → ${result.stateAfter}`]
        ]
      )
      yield* Console.log(result.orderViolations === 0 ? "per-key order: OK" : "per-key order: VIOLATED")
      return result
    })
  )
