/**
 * Copies events and facts from JetStream into the history database in batches. Delivery
 * never waits for the database: while it is down, events and facts wait in their streams
 * and are written when it returns. Writes are idempotent, so redeliveries are harmless.
 */
import type { ConsumerConfig, JsMsg } from "@nats-io/jetstream"
import { AckPolicy, DeliverPolicy, JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream"
import { nanos } from "@nats-io/transport-node"
import type { History } from "@sluice/protocol"
import { Envelope, Subjects } from "@sluice/protocol"
import { Chunk, Effect, Either, Layer, Schedule, Stream } from "effect"
import * as ConsumerStream from "./ConsumerStream.js"
import * as Fact from "./Fact.js"
import { HistoryStore } from "./HistoryStore.js"
import { Nats } from "./Nats.js"

/** Facts or events written per transaction at most. */
export const BATCH_SIZE = 500
/**
 * After writing less than a full batch, the writer lets the next one gather this long, so a
 * moderate flow is written in a few transactions a second rather than one per message.
 * A message waits at most this long and one write.
 */
export const BATCH_WINDOW = "50 millis"

const consumerConfig = (name: string): Partial<ConsumerConfig> => ({
  durable_name: name,
  ack_policy: AckPolicy.Explicit,
  deliver_policy: DeliverPolicy.All,
  ack_wait: nanos(60_000),
  max_ack_pending: 20_000,
  max_deliver: -1
})

const ensureConsumer = (stream: string, name: string) =>
  Effect.gen(function* () {
    const { js, jsm } = yield* Nats
    yield* Effect.tryPromise(() => jsm.consumers.info(stream, name)).pipe(
      Effect.catchIf(
        (error) => error.error instanceof JetStreamApiError && error.error.code === JetStreamApiCodes.ConsumerNotFound,
        () => Effect.tryPromise(() => jsm.consumers.add(stream, consumerConfig(name)))
      )
    )
    return yield* Effect.tryPromise(() => js.consumers.get(stream, name))
  })

/** Until the database takes the batch; the messages are kept from redelivery meanwhile. */
const untilStored = Schedule.exponential("100 millis", 2).pipe(Schedule.either(Schedule.spaced("5 seconds")))

const drain = <A>(
  stream: string,
  name: string,
  decode: (msg: JsMsg) => Either.Either<ReadonlyArray<A>, string>,
  write: (items: ReadonlyArray<A>) => Effect.Effect<void, unknown>
) =>
  Effect.gen(function* () {
    const consumer = yield* ensureConsumer(stream, name)
    const writeBatch = (batch: ReadonlyArray<JsMsg>) =>
      Effect.gen(function* () {
        const items: Array<A> = []
        for (const msg of batch) {
          const decoded = decode(msg)
          if (Either.isRight(decoded)) items.push(...decoded.right)
          else yield* Effect.logWarning(`skipping an undecodable message (${stream} seq ${msg.seq}): ${decoded.left}`)
        }
        yield* write(items).pipe(
          Effect.tapError((error) =>
            Effect.logWarning("history database unavailable; batch kept in JetStream", error).pipe(
              Effect.andThen(Effect.sync(() => batch.forEach((msg) => msg.working())))
            )
          ),
          Effect.retry(untilStored),
          Effect.orDie
        )
        for (const msg of batch) msg.ack()
      })
    // Each chunk is everything that arrived while the previous one was written (or the writer
    // waited). Cheaper than `Stream.groupedWithin`, whose timed batching costs fibers and
    // handoffs for every message: at thousands of messages a second, a large share of the broker.
    yield* ConsumerStream.messages(consumer, { maxMessages: BATCH_SIZE * 4 }).pipe(
      Stream.runForEachChunk((chunk) =>
        Effect.gen(function* () {
          const messages = Chunk.toReadonlyArray(chunk)
          for (let i = 0; i < messages.length; i += BATCH_SIZE) yield* writeBatch(messages.slice(i, i + BATCH_SIZE))
          if (messages.length < BATCH_SIZE) yield* Effect.sleep(BATCH_WINDOW)
        })
      )
    )
  })

const toStoredEvent = (msg: JsMsg): Either.Either<ReadonlyArray<History.StoredEvent>, string> =>
  Envelope.decodeEnvelope(msg.string()).pipe(
    Either.mapLeft((error) => error.message),
    Either.map((e) => [{
      id: e.id,
      type: e.type,
      key: e.key ?? null,
      version: e.version ?? null,
      idempotencyKey: e.idempotencyKey ?? null,
      occurredAt: e.occurredAt,
      receivedAt: new Date(Math.floor(msg.info.timestampNanos / 1e6)).toISOString(),
      streamSeq: msg.seq,
      data: e.data,
      headers: e.headers ?? null,
      // The database decides, from the events stored before this one.
      duplicateOf: null
    }])
  )

const toFacts = (msg: JsMsg): Either.Either<ReadonlyArray<Fact.Fact>, string> =>
  Fact.decodeAll(msg.string()).pipe(Either.mapLeft((error) => error.message))

/** Restarts a writer loop that ended (NATS restarted, consumer recreated) after a pause. */
const forever = <E, R>(name: string, loop: Effect.Effect<void, E, R>) =>
  loop.pipe(
    Effect.catchAllCause((cause) => Effect.logWarning(`${name} stopped; restarting`, cause)),
    Effect.repeat(Schedule.spaced("1 second")),
    Effect.annotateLogs({ module: "HistoryWriter", loop: name })
  )

export const layer: Layer.Layer<never, never, Nats | HistoryStore> = Layer.scopedDiscard(
  Effect.gen(function* () {
    const store = yield* HistoryStore
    yield* forever(
      "events",
      drain(Subjects.EVENTS_STREAM, Subjects.HISTORY_EVENTS_CONSUMER, toStoredEvent, store.insertEvents)
    ).pipe(Effect.forkScoped)
    yield* forever(
      "facts",
      drain(Subjects.FACTS_STREAM, Subjects.HISTORY_FACTS_CONSUMER, toFacts, store.applyFacts)
    ).pipe(Effect.forkScoped)
  })
)
