/**
 * Benchmark 2, scale in destinations: for 1, 10, 100 and 1,000 destinations (a fresh broker
 * each), how long creating them through the admin API takes, what the idle broker costs in
 * memory and CPU, and the throughput with traffic spread over all of them. The memory of one
 * idle destination actor is the growth of idle RSS from 1 to 1,000 destinations, per destination.
 */
import { Console, Duration, Effect } from "effect"
import type { HistoryBackend } from "../Infra.js"
import * as ProcessStats from "../ProcessStats.js"
import type { Receivers } from "../Receivers.js"
import * as Report from "../Report.js"
import * as SluiceStack from "../SluiceStack.js"
import * as Workload from "../Workload.js"

export interface ScaleOptions {
  readonly destinationCounts: ReadonlyArray<number>
  /** Events published per step, spread round-robin over the step's destinations. */
  readonly events: number
  /** How long the idle broker is watched for CPU and memory. */
  readonly idleSeconds: number
  /** Quiet time after creating the destinations, before the idle measurement. */
  readonly settleSeconds: number
  readonly history: HistoryBackend
}

export const options = (quick: boolean, history: HistoryBackend): ScaleOptions => ({
  destinationCounts: [1, 10, 100, 1_000],
  events: quick ? 1_000 : 2_000,
  idleSeconds: quick ? 3 : 10,
  settleSeconds: quick ? 2 : 5,
  history
})

const PREFIX = "scale"

export interface StepResult {
  readonly destinations: number
  readonly createSeconds: number
  readonly idle: { readonly brokerRssBytes: number; readonly brokerCpuPercent: number; readonly natsRssBytes: number }
  readonly traffic: {
    readonly events: number
    /** Distinct events delivered: all of them, unless the deadline passed first. */
    readonly delivered: number
    readonly complete: boolean
    readonly deliveriesPerSecond: number
    readonly brokerRssBytes: number
  }
}

const step = (receivers: Receivers, options: ScaleOptions, count: number) =>
  Effect.scoped(
    Effect.gen(function* () {
      const stack = yield* SluiceStack.start({ history: options.history })
      yield* receivers.listen(count)
      const urls = receivers.urls()
      const created = Workload.now()
      yield* stack.addDestinations(
        Array.from({ length: count }, (_, i) => SluiceStack.destinationSpec(PREFIX, i, urls[i]!, { ordering: "none" }))
      )
      const createSeconds = (Workload.now() - created) / 1000
      yield* Effect.sleep(Duration.seconds(options.settleSeconds))

      const brokerPid = stack.brokerPid
      const before = yield* ProcessStats.usage(brokerPid)
      const watchedFrom = Workload.now()
      yield* Effect.sleep(Duration.seconds(options.idleSeconds))
      const after = yield* ProcessStats.usage(brokerPid)
      const nats = yield* ProcessStats.usage(stack.nats.pid()!)
      const idle = {
        brokerRssBytes: after.rssBytes,
        brokerCpuPercent: ((after.cpuMs - before.cpuMs) / (Workload.now() - watchedFrom)) * 100,
        natsRssBytes: nats.rssBytes
      }

      yield* receivers.reset
      const published = yield* Workload.burst(stack.publisher(PREFIX), Workload.spread(options.events, count))
      const { summary: delivered, complete } = yield* receivers.awaitUnique(options.events, Workload.deadlineMs(options.events))
      const endedAt = complete ? delivered.lastAt! : Workload.now()
      const result: StepResult = {
        destinations: count,
        createSeconds,
        idle,
        traffic: {
          events: options.events,
          delivered: delivered.unique,
          complete,
          deliveriesPerSecond: (delivered.unique * 1000) / (endedAt - published.startedAt),
          brokerRssBytes: (yield* ProcessStats.usage(brokerPid)).rssBytes
        }
      }
      yield* Console.log(
        `  ${count} destinations: created in ${Report.fmt(createSeconds, 1)} s, idle RSS ${Report.mib(idle.brokerRssBytes)} MiB, ` +
          `${Report.fmt(result.traffic.deliveriesPerSecond)} deliveries/s`
      )
      return result
    })
  )

export const run = (receivers: Receivers, options: ScaleOptions) =>
  Effect.gen(function* () {
    yield* receivers.configure({ status: 200, delayMs: 0 })
    const steps: Array<StepResult> = []
    for (const count of options.destinationCounts) steps.push(yield* step(receivers, options, count))
    const first = steps[0]!
    const last = steps[steps.length - 1]!
    const perIdleActorBytes =
      (last.idle.brokerRssBytes - first.idle.brokerRssBytes) / (last.destinations - first.destinations)

    yield* Report.printTable(
      `Scale in destinations: ${Report.fmt(options.events)} events spread over the destinations; ` +
        `idle measured over ${options.idleSeconds} s`,
      ["destinations", "create s", "idle broker RSS MiB", "idle broker CPU %", "idle nats RSS MiB", "deliveries/s", "RSS after traffic MiB"],
      steps.map((s) => [
        Report.fmt(s.destinations),
        Report.fmt(s.createSeconds, 1),
        Report.mib(s.idle.brokerRssBytes),
        Report.fmt(s.idle.brokerCpuPercent, 1),
        Report.mib(s.idle.natsRssBytes),
        s.traffic.complete
          ? Report.fmt(s.traffic.deliveriesPerSecond)
          : `${Report.fmt(s.traffic.deliveriesPerSecond)} (INCOMPLETE: ${Report.fmt(s.traffic.delivered)} delivered)`,
        Report.mib(s.traffic.brokerRssBytes)
      ])
    )
    yield* Console.log(
      `Memory per idle destination actor (idle RSS growth from ${first.destinations} to ${last.destinations} destinations): ` +
        `${Report.fmt(perIdleActorBytes / 1024, 1)} KiB`
    )
    return { steps, perIdleActorBytes }
  })
