/**
 * The broker's one NATS connection, with JetStream clients, and the streams guaranteed to
 * exist once the layer is built.
 */
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream"
import { jetstream, jetstreamManager } from "@nats-io/jetstream"
import type { NatsConnection } from "@nats-io/transport-node"
import { connect } from "@nats-io/transport-node"
import { Context, Data, Duration, Effect, Layer } from "effect"
import { BrokerConfig } from "./BrokerConfig.js"
import { ensureStreams } from "./Streams.js"

export class Nats extends Context.Tag("@sluice/broker/Nats")<
  Nats,
  {
    readonly url: string
    readonly connection: NatsConnection
    readonly js: JetStreamClient
    readonly jsm: JetStreamManager
    /** How many servers keep each stream and KV bucket (`SLUICE_STREAM_REPLICAS`). */
    readonly replicas: number
  }
>() {}

/** NATS could not be reached or set up at start. */
export class NatsUnavailable extends Data.TaggedError("NatsUnavailable")<{ readonly message: string }> {}

/** The URL the broker talks to: external or embedded. */
export class NatsUrl extends Context.Tag("@sluice/broker/NatsUrl")<NatsUrl, string>() {}

export const layer: Layer.Layer<Nats, NatsUnavailable, BrokerConfig | NatsUrl> = Layer.scoped(
  Nats,
  Effect.gen(function* () {
    const config = yield* BrokerConfig
    const url = yield* NatsUrl
    const connection = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () =>
          connect({
            servers: url.split(",").map((s) => s.trim()),
            name: config.processName,
            maxReconnectAttempts: -1,
            reconnectTimeWait: 250,
            reconnectJitter: 250,
            // An async stack trace captured on every request costs more than the request's own work.
            noAsyncTraces: true
          }),
        catch: (cause) => new NatsUnavailable({ message: `cannot connect to NATS at ${url}: ${String(cause)}` })
      }),
      (nc) => Effect.promise(() => nc.drain().catch(() => nc.close()))
    )
    const jsm = yield* Effect.tryPromise({
      try: () => jetstreamManager(connection),
      catch: (cause) =>
        new NatsUnavailable({ message: `JetStream is not enabled on ${url} (start nats-server with -js): ${String(cause)}` })
    })
    yield* Effect.tryPromise({
      try: () =>
        ensureStreams(jsm, {
          maxAgeMs: Duration.toMillis(config.streamMaxAge),
          duplicateWindowMs: Duration.toMillis(config.duplicateWindow),
          maxMessageBytes: config.maxEventBytes,
          replicas: config.streamReplicas
        }),
      catch: (cause) => new NatsUnavailable({ message: `cannot create the Sluice streams: ${String(cause)}` })
    })
    return { url, connection, js: jetstream(connection), jsm, replicas: config.streamReplicas }
  })
)
