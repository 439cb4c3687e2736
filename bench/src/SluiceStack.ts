/**
 * Sluice as a user runs it: a nats-server of its own, `sluice start` in its own process with
 * history recording into a fresh database, destinations created through the admin API, and
 * events published through the SDK.
 */
import type { JetStreamManager } from "@nats-io/jetstream"
import type { NatsServer } from "@sluice/broker"
import type { Destination } from "@sluice/protocol"
import { Envelope } from "@sluice/protocol"
import { Sluice } from "@sluice/sdk"
import type { Scope } from "effect"
import { Context, Effect, Either, Layer } from "effect"
import type { BrokerProcess } from "../../test/helpers/brokerProcess.js"
import * as Infra from "./Infra.js"
import type { BenchEvent, Publisher } from "./Workload.js"
import { eventType, payload } from "./Workload.js"

export interface SluiceStack {
  readonly nats: NatsServer.NatsServer
  readonly broker: BrokerProcess
  /** The broker's process id, for its CPU and memory. */
  readonly brokerPid: number
  /** The history database; undefined for PGlite (inside the broker). */
  readonly databaseUrl: string | undefined
  /** Present when started with `cpuProfileDir`. */
  readonly profiler: Infra.Profiler | undefined
  /** The benchmark's own view of JetStream (consumer state, history backlog). */
  readonly jsm: JetStreamManager
  /** Publishes through the SDK; event `i` of a destination gets the type `<prefix>.d<i>`. */
  readonly publisher: (prefix: string) => Publisher
  /** Creates destinations through the admin API and waits until each has its consumer. */
  readonly addDestinations: (specs: ReadonlyArray<Destination.CreateDestination>) => Effect.Effect<void, unknown>
}

/** The SDK's publish input for a benchmark event. */
export const publishInput = (prefix: string, event: BenchEvent): Envelope.PublishInput => ({
  type: eventType(prefix, event.destination),
  ...(event.key === undefined ? {} : { key: event.key }),
  data: payload(event)
})

/** The envelope Sluice would deliver for a benchmark event, for baselines that post it themselves. */
export const envelopeBody = (prefix: string, event: BenchEvent): string =>
  Envelope.encodeEnvelope(Either.getOrThrow(Envelope.toEnvelope(publishInput(prefix, event))))

/** A destination of benchmark `prefix` that receives the events meant for destination `i`. */
export const destinationSpec = (
  prefix: string,
  i: number,
  url: string,
  settings: Omit<Destination.CreateDestination, "url" | "subscriptions"> = {}
): Destination.CreateDestination => ({
  id: `${prefix}-d${i}`,
  url,
  subscriptions: [eventType(prefix, i)],
  ...settings
})

/** Admin API calls in flight while creating many destinations. */
const CREATE_CONCURRENCY = 8

export const start = (options: {
  readonly history: Infra.HistoryBackend
  readonly cpuProfileDir?: string
}): Effect.Effect<SluiceStack, unknown, Scope.Scope> =>
  Effect.gen(function* () {
    const nats = yield* Infra.natsServer
    const { process: broker, pid: brokerPid, profiler, databaseUrl } = yield* Infra.broker({
      natsUrl: nats.url,
      history: options.history,
      cpuProfileDir: options.cpuProfileDir
    })
    const jsm = yield* Infra.jetStreamManager(nats.url)
    const sdk = Context.get(yield* Layer.build(Sluice.layer({ servers: nats.url, name: "sluice-bench" })), Sluice.Sluice)
    return {
      nats,
      broker,
      brokerPid,
      profiler,
      databaseUrl,
      jsm,
      publisher: (prefix) => ({
        publish: (events) => sdk.publishMany(events.map((event) => publishInput(prefix, event)))
      }),
      addDestinations: (specs) =>
        Effect.gen(function* () {
          yield* Effect.forEach(specs, (payload) => broker.client.destinations.create({ payload }), {
            concurrency: CREATE_CONCURRENCY,
            discard: true
          })
          yield* Infra.awaitConsumers(
            jsm,
            specs.map((spec) => spec.id!)
          )
        })
    }
  })
