/**
 * The three ways of getting events from a Node producer to HTTP receivers that the delivery
 * benchmark compares, each started fresh for a round: Sluice, the raw JetStream ceiling and
 * BullMQ. They share the receivers, the payload, the concurrency per destination and the
 * HTTP client's connection limit.
 */
import { HttpSender, Streams } from "@sluice/broker"
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream"
import { Subjects } from "@sluice/protocol"
import { Sluice } from "@sluice/sdk"
import { Queue } from "bullmq"
import type { Scope } from "effect"
import { Context, Effect, Layer } from "effect"
import * as Infra from "./Infra.js"
import * as Ipc from "./Ipc.js"
import * as SluiceStack from "./SluiceStack.js"
import type { BullmqJob, BullmqProtocol, CeilingProtocol } from "./WorkerProtocol.js"
import type { Publisher } from "./Workload.js"

export type ContenderName = "sluice" | "ceiling" | "bullmq"

/** What a round needs from a started contender. */
export interface Stack {
  readonly publisher: Publisher
  /** The contender's own processes, by role, whose CPU time the round reports. */
  readonly processes: Readonly<Record<string, number>>
  /** Further processes counted by command name (Postgres backends). */
  readonly commands: ReadonlyArray<string>
  /** Waits for the work a contender still does after the last delivery (Sluice: writing history). */
  readonly settle: Effect.Effect<void, unknown>
  /** Present for Sluice when a profile was asked for. */
  readonly profiler?: Infra.Profiler
}

export interface Setup {
  /** The receivers, one per destination. */
  readonly urls: ReadonlyArray<string>
  /** Requests in flight per destination. */
  readonly concurrency: number
  /** Event type prefix: destination i subscribes to `<prefix>.d<i>`. */
  readonly prefix: string
  readonly history: Infra.HistoryBackend
  readonly cpuProfileDir?: string
}

/**
 * Sluice end to end: the broker process with history on, one destination per receiver with
 * the given concurrency and no ordering (the events carry no keys, as for the baselines).
 */
const sluice = (setup: Setup): Effect.Effect<Stack, unknown, Scope.Scope> =>
  Effect.gen(function* () {
    const stack = yield* SluiceStack.start({ history: setup.history, cpuProfileDir: setup.cpuProfileDir })
    yield* stack.addDestinations(
      setup.urls.map((url, i) =>
        SluiceStack.destinationSpec(setup.prefix, i, url, { maxConcurrency: setup.concurrency, ordering: "none" })
      )
    )
    return {
      publisher: stack.publisher(setup.prefix),
      processes: { broker: stack.brokerPid, "nats-server": stack.nats.pid()! },
      commands: setup.history === "postgres" ? ["postgres"] : [],
      settle: Infra.awaitHistory(stack.jsm),
      profiler: stack.profiler
    }
  })

/** The raw JetStream consumer of ceilingWorker.ts on Sluice's stream, fed by the same SDK. */
const ceiling = (setup: Setup): Effect.Effect<Stack, unknown, Scope.Scope> =>
  Effect.gen(function* () {
    const nats = yield* Infra.natsServer
    const jsm = yield* Infra.jetStreamManager(nats.url)
    yield* Effect.promise(() => Streams.ensureStreams(jsm))
    const destinations = setup.urls.map((url, i) => ({ consumer: `ceiling_d${i}`, url }))
    yield* Effect.forEach(
      destinations,
      ({ consumer }, i) =>
        Effect.promise(() =>
          jsm.consumers.add(Subjects.EVENTS_STREAM, {
            durable_name: consumer,
            ack_policy: AckPolicy.Explicit,
            deliver_policy: DeliverPolicy.All,
            filter_subject: Subjects.eventSubject(`${setup.prefix}.d${i}`),
            max_ack_pending: 10_000
          })
        ),
      { discard: true }
    )
    const worker = yield* Ipc.start<CeilingProtocol>("./ceilingWorker.ts")
    yield* worker.call("start", {
      natsUrl: nats.url,
      stream: Subjects.EVENTS_STREAM,
      destinations,
      concurrency: setup.concurrency,
      connectionsPerOrigin: HttpSender.connectionsPerOrigin
    })
    const sdk = Context.get(yield* Layer.build(Sluice.layer({ servers: nats.url, name: "sluice-bench" })), Sluice.Sluice)
    return {
      publisher: {
        publish: (events) => sdk.publishMany(events.map((event) => SluiceStack.publishInput(setup.prefix, event)))
      },
      processes: { worker: worker.pid, "nats-server": nats.pid()! },
      commands: [],
      settle: Effect.void
    }
  })

/** Retries as a BullMQ user would configure them, close to Sluice's default policy. */
const jobOptions = { attempts: 25, backoff: { type: "exponential", delay: 1_000 } } as const

/** Redis (in memory) and a BullMQ worker of the same total concurrency; jobs are added in bulk. */
const bullmq = (setup: Setup): Effect.Effect<Stack, unknown, Scope.Scope> =>
  Effect.gen(function* () {
    const redis = yield* Infra.redisServer
    const worker = yield* Ipc.start<BullmqProtocol>("./bullmqWorker.ts")
    const queueName = "deliveries"
    yield* worker.call("start", {
      host: redis.host,
      port: redis.port,
      queue: queueName,
      urls: setup.urls,
      concurrency: setup.concurrency * setup.urls.length,
      connectionsPerOrigin: HttpSender.connectionsPerOrigin
    })
    const queue = yield* Effect.acquireRelease(
      Effect.sync(() => new Queue<BullmqJob>(queueName, { connection: { host: redis.host, port: redis.port } })),
      (queue) => Effect.promise(() => queue.close())
    )
    return {
      publisher: {
        publish: (events) =>
          Effect.promise(() =>
            queue.addBulk(
              events.map((event) => ({
                name: "deliver",
                data: { destination: event.destination, body: SluiceStack.envelopeBody(setup.prefix, event) },
                opts: jobOptions
              }))
            )
          )
      },
      processes: { worker: worker.pid, "redis-server": redis.pid },
      commands: [],
      settle: Effect.void
    }
  })

export const contenders: Readonly<Record<ContenderName, (setup: Setup) => Effect.Effect<Stack, unknown, Scope.Scope>>> = {
  sluice,
  ceiling,
  bullmq
}
