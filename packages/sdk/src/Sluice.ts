/**
 * The producer's side of Sluice as an Effect service: hand an event to JetStream and
 * resolve only once it is durably stored in Sluice's stream, so a short-lived producer
 * can exit right after; and ask the broker what became of it. The Promise API
 * (`SluiceClient`) and the broker's HTTP ingest run this same implementation.
 */
import { jetstream, jetstreamManager } from "@nats-io/jetstream"
import type { NatsConnection } from "@nats-io/transport-node"
import { connect } from "@nats-io/transport-node"
import type { AdminApi } from "@sluice/protocol"
import { Envelope, Subjects } from "@sluice/protocol"
import type { Either } from "effect"
import { Context, Effect, Layer } from "effect"
import { messageBytes, messageHeaders, prepare, prepareAll, publishError, storedEventId } from "./internal/message.js"
import { makeStatus } from "./internal/status.js"
import type { InvalidEnvelope, PublishError, StatusError } from "./SluiceError.js"
import { ConnectionFailed, PublishFailed } from "./SluiceError.js"

/** What a producer hands over: `type` and `data`, optionally `id`, `key`, `version`, `idempotencyKey`, … */
export type PublishInput = Envelope.PublishInput

/**
 * What became of an event: its state at every destination that owes it a delivery, and
 * `settled` once none of them will change without an operator.
 */
export type EventStatus = AdminApi.EventStatus

/** How the service publishes and where it asks for status, however NATS was reached. */
export interface ClientOptions {
  /** How long to wait for JetStream's acknowledgement before failing with `PublishTimeout` (default 5000). */
  readonly ackTimeoutMs?: number
  /** The broker's HTTP address (its admin API), e.g. `http://127.0.0.1:7700`; needed by `status` only. */
  readonly adminUrl?: string
  /** The producer token `status` sends as `Authorization: Bearer …` (`<data dir>/producer-token` of a local broker). */
  readonly producerToken?: string
}

/** Where and how to reach NATS. Lost connections are retried forever in the background. */
export interface ConnectOptions extends ClientOptions {
  /** NATS server URL(s), e.g. `nats://127.0.0.1:4222`. */
  readonly servers: string | ReadonlyArray<string>
  /** Connection name shown by `nats server report connections` (default `sluice-sdk`). */
  readonly name?: string
  /** NATS auth token. */
  readonly token?: string
}

/** A stored event: its id, its sequence in the events stream, and whether it was already there. */
export interface PublishResult {
  /** The event id — for a duplicate, the id of the event stored first. */
  readonly id: string
  readonly seq: number
  /** True when JetStream already held this id or idempotency key and stored nothing new. */
  readonly duplicate: boolean
}

/** Acks awaited at once by `publishMany`: enough to keep the connection busy, bounded in memory. */
const maxInFlight = 256

/** Reconnect forever, quickly at first: a producer should ride out a NATS restart, not fail. */
const reconnect = { maxReconnectAttempts: -1, reconnectTimeWait: 250, reconnectJitter: 250 } as const

/** Publishes events to Sluice; every successful result means the event is durably stored. */
export class Sluice extends Context.Tag("@sluice/sdk/Sluice")<
  Sluice,
  {
    /** Validates, publishes and waits for JetStream's acknowledgement. */
    readonly publish: (input: PublishInput) => Effect.Effect<PublishResult, PublishError>
    /**
     * Validates every input first (nothing is sent if one is invalid), then publishes them
     * pipelined; results are in input order.
     */
    readonly publishMany: (inputs: ReadonlyArray<PublishInput>) => Effect.Effect<ReadonlyArray<PublishResult>, PublishError>
    /**
     * Asks the broker (`adminUrl`, with the producer token) what became of an event: whether
     * it was received, and its state at each destination — so a producer can keep its own
     * copy until the event is `settled`.
     */
    readonly status: (eventId: string) => Effect.Effect<EventStatus, StatusError>
  }
>() {}

/**
 * Validates inputs and resolves them to the envelopes `publishMany` sends, ids and times
 * filled in, without sending anything (the first invalid input fails all, its error naming
 * the position: `[3].type`). Publishing these envelopes publishes exactly these ids, so a
 * retry of them is deduplicated.
 */
export const validate: (inputs: ReadonlyArray<unknown>) => Either.Either<ReadonlyArray<Envelope.Envelope>, InvalidEnvelope> =
  prepareAll

/** How many bytes an envelope takes as a JetStream message, headers included: what the stream's size limit counts. */
export const sizeOf: (envelope: Envelope.Envelope) => number = messageBytes

/**
 * The service over a NATS connection its caller owns and closes (the broker's HTTP ingest
 * publishes over the broker's own connection this way).
 */
export const fromConnection = (nc: NatsConnection, options: ClientOptions = {}): Effect.Effect<Sluice["Type"]> =>
  Effect.gen(function* () {
    const timeoutMs = options.ackTimeoutMs ?? 5000
    const js = jetstream(nc, { timeout: timeoutMs })
    const jsm = yield* Effect.promise(() => jetstreamManager(nc, { timeout: timeoutMs, checkAPI: false }))

    // A duplicate ack carries the sequence of the message stored first; its id is the answer.
    const original = (envelope: Envelope.Envelope, seq: number) =>
      Effect.tryPromise({
        try: () => jsm.streams.getMessage(Subjects.EVENTS_STREAM, { seq }),
        catch: (error) => publishError(error, envelope.id, timeoutMs)
      }).pipe(
        Effect.flatMap((stored) => {
          const id = stored ? storedEventId(stored) : undefined
          return id === undefined
            ? Effect.fail(
                new PublishFailed({
                  eventId: envelope.id,
                  reason: `it duplicates message ${seq} of ${Subjects.EVENTS_STREAM}, which could not be read back`
                })
              )
            : Effect.succeed<PublishResult>({ id, seq, duplicate: true })
        })
      )

    const send = (envelope: Envelope.Envelope) =>
      Effect.tryPromise({
        try: () =>
          js.publish(Subjects.eventSubject(envelope.type), Envelope.encodeEnvelope(envelope), {
            headers: messageHeaders(envelope),
            expect: { streamName: Subjects.EVENTS_STREAM },
            timeout: timeoutMs
          }),
        catch: (error) => publishError(error, envelope.id, timeoutMs)
      }).pipe(
        Effect.flatMap((ack) =>
          ack.duplicate
            ? original(envelope, ack.seq)
            : Effect.succeed<PublishResult>({ id: envelope.id, seq: ack.seq, duplicate: false })
        )
      )

    const status = yield* makeStatus({ adminUrl: options.adminUrl, producerToken: options.producerToken, timeoutMs })

    return Sluice.of({
      status,
      publish: (input) =>
        Effect.gen(function* () {
          const envelope = yield* prepare(input)
          return yield* send(envelope)
        }),
      publishMany: (inputs) =>
        Effect.gen(function* () {
          const envelopes = yield* prepareAll(inputs)
          // Each publish goes on the wire as its fiber starts, in input order; acks are awaited together.
          return yield* Effect.forEach(envelopes, send, { concurrency: maxInFlight })
        })
    })
  })

const make = (options: ConnectOptions) =>
  Effect.gen(function* () {
    const servers = typeof options.servers === "string" ? [options.servers] : [...options.servers]
    // Every publish awaits its ack before the scope can close, so nothing is left to drain.
    const nc = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () => connect({ servers, name: options.name ?? "sluice-sdk", token: options.token, ...reconnect }),
        catch: (error) =>
          new ConnectionFailed({ servers: servers.join(","), reason: error instanceof Error ? error.message : String(error) })
      }),
      (nc) => Effect.promise(() => nc.close())
    )
    return yield* fromConnection(nc, options)
  })

/** Connects to NATS for the lifetime of the scope; fails with `ConnectionFailed` if the first connect does. */
export const layer = (options: ConnectOptions): Layer.Layer<Sluice, ConnectionFailed> => Layer.scoped(Sluice, make(options))
