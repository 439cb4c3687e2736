/**
 * Operator replays: one event to one destination, a destination's dead/disabled/canceled
 * deliveries since a time, or everything it subscribed to since a time (from JetStream).
 * A replayed event goes to the destination's own replay subject, which only its actor
 * consumes, so no other destination sees it again; it shows up as new attempts of the same
 * delivery. Every replay is audited.
 */
import type { JsMsg } from "@nats-io/jetstream"
import { DeliverPolicy } from "@nats-io/jetstream"
import type { History, States } from "@sluice/protocol"
import { AdminApi, Envelope, Subjects } from "@sluice/protocol"
import { Clock, Context, Effect, Layer, Option, Stream } from "effect"
import { findDestination } from "./Destinations.js"
import * as Fact from "./Fact.js"
import { HistoryStore } from "./HistoryStore.js"
import { Nats } from "./Nats.js"
import { Recorder } from "./Recorder.js"

type Failure = AdminApi.NotFound | AdminApi.Unavailable

export class Replay extends Context.Tag("@sluice/broker/Replay")<
  Replay,
  {
    readonly event: (eventId: string, destinationId: string, actor: string) => Effect.Effect<number, Failure>
    readonly deliveries: (
      destinationId: string,
      states: ReadonlyArray<States.DeliveryState>,
      since: string,
      actor: string
    ) => Effect.Effect<number, Failure>
    readonly stream: (destinationId: string, since: string, actor: string) => Effect.Effect<number, Failure>
  }
>() {}

const unavailable = (error: { readonly message: string }) => new AdminApi.Unavailable({ message: error.message })
const jetstreamUnavailable = (cause: unknown) =>
  new AdminApi.Unavailable({ message: `JetStream unavailable: ${String(cause)}` })

/** The envelope as the producer published it, rebuilt from the history. */
const envelopeOf = (event: History.StoredEvent): Envelope.Envelope => ({
  id: event.id,
  type: event.type,
  occurredAt: event.occurredAt,
  data: event.data,
  ...(event.key === null ? {} : { key: event.key }),
  ...(event.version === null ? {} : { version: event.version }),
  ...(event.idempotencyKey === null ? {} : { idempotencyKey: event.idempotencyKey }),
  ...(event.headers === null ? {} : { headers: event.headers })
})

/** Events read from the stream per fetch while replaying it. */
const STREAM_BATCH = 256

export const layer: Layer.Layer<Replay, never, HistoryStore | Nats | Recorder> = Layer.effect(
  Replay,
  Effect.gen(function* () {
    const store = yield* HistoryStore
    const { js } = yield* Nats
    const recorder = yield* Recorder

    const destination = (id: string) => findDestination(store, id)

    /** Hands one event body to the destination's actor; a retried replay of the same operation is deduplicated. */
    const send = (destinationId: string, operation: string, eventId: string, body: string | Uint8Array) =>
      Effect.tryPromise({
        try: () =>
          js.publish(Subjects.replaySubject(destinationId), body, {
            msgID: `replay:${operation}:${eventId}`,
            expect: { streamName: Subjects.REPLAYS_STREAM }
          }),
        catch: jetstreamUnavailable
      })

    const audit = (operation: string, action: string, destinationId: string, actor: string, details: unknown) =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        yield* recorder.record(
          new Fact.OperatorActed({
            id: operation,
            at: new Date(now).toISOString(),
            actor,
            action,
            destinationId,
            details
          })
        )
      })

    const event = (eventId: string, destinationId: string, actor: string) =>
      Effect.gen(function* () {
        yield* destination(destinationId)
        const detail = yield* store.getEvent(eventId).pipe(
          Effect.mapError(unavailable),
          Effect.flatMap(
            Option.match({
              onNone: () => Effect.fail(new AdminApi.NotFound({ message: `event ${eventId} is not in the history` })),
              onSome: Effect.succeed
            })
          )
        )
        const operation = Envelope.makeEventId()
        yield* send(destinationId, operation, eventId, Envelope.encodeEnvelope(envelopeOf(detail.event)))
        yield* audit(operation, "event.replayed", destinationId, actor, { eventId })
        return 1
      })

    const deliveries = (
      destinationId: string,
      states: ReadonlyArray<States.DeliveryState>,
      since: string,
      actor: string
    ) =>
      Effect.gen(function* () {
        yield* destination(destinationId)
        const operation = Envelope.makeEventId()
        const events = yield* store.replayable(destinationId, states, since).pipe(Effect.mapError(unavailable))
        for (const e of events) yield* send(destinationId, operation, e.id, Envelope.encodeEnvelope(envelopeOf(e)))
        yield* audit(operation, "deliveries.replayed", destinationId, actor, { states, since, replayed: events.length })
        return events.length
      })

    /** Reads the events stream from `since` with an ordered consumer, keeping what the destination subscribes to. */
    const stream = (destinationId: string, since: string, actor: string) =>
      Effect.gen(function* () {
        const d = yield* destination(destinationId)
        const operation = Envelope.makeEventId()
        const consumer = yield* Effect.tryPromise({
          try: () =>
            js.consumers.get(Subjects.EVENTS_STREAM, {
              // One subject: nats-server 2.9 has no multi-filter consumers.
              filter_subjects: Subjects.consumerFilter(d.subscriptions),
              deliver_policy: DeliverPolicy.StartTime,
              opt_start_time: since
            }),
          catch: jetstreamUnavailable
        })
        const fetchBatch = Effect.tryPromise({
          try: async () => {
            const messages: Array<JsMsg> = []
            for await (const msg of await consumer.fetch({ max_messages: STREAM_BATCH, expires: 1_000 })) {
              messages.push(msg)
            }
            return messages
          },
          catch: jetstreamUnavailable
        })
        const replayed = yield* Stream.repeatEffectOption(
          fetchBatch.pipe(
            Effect.mapError(Option.some),
            Effect.flatMap((batch) => (batch.length === 0 ? Effect.fail(Option.none()) : Effect.succeed(batch)))
          )
        ).pipe(
          Stream.flattenIterables,
          Stream.filter((msg) => Subjects.matchesAny(d.subscriptions, Subjects.typeOfSubject(msg.subject))),
          Stream.mapEffect((msg) =>
            send(destinationId, operation, msg.headers?.get(Subjects.Headers.eventId) || `seq-${msg.seq}`, msg.data)
          ),
          Stream.runCount
        )
        yield* audit(operation, "stream.replayed", destinationId, actor, { since, replayed })
        return replayed
      })

    return Replay.of({ event, deliveries, stream })
  })
)
