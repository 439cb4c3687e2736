/**
 * HTTP ingest, `POST /api/v1/events`, for producers in any language. The body is the SDK's
 * input — one event, or `{ "events": [...] }` — validated by the same schema and published
 * by the same implementation (the SDK's `Sluice` service over the broker's own NATS
 * connection), and the answer comes only once JetStream stored every event. With the same
 * producer token, `GET /api/v1/events/:id/status` tells what became of an event (the SDK's
 * `status`), so a producer never needs the admin token.
 *
 * Retrying is safe: publishing deduplicates by event id (or idempotency key), so a client
 * that got a 503 or no answer sends the same request again — with the same ids, which is
 * why a batch that may be retried should carry an `id` (or `idempotencyKey`) per event.
 *
 * The body is hostile until checked (`RequestBody`): read up to `SLUICE_MAX_INGEST_BYTES`
 * (413), UTF-8 only, JSON nested at most `RequestBody.MAX_JSON_DEPTH` deep, strings free of
 * what Postgres cannot store, then the envelope schema — each failure a 400 naming the field,
 * and a batch stored only whole.
 */
import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import type { HttpServerRequest } from "@effect/platform"
import { AdminApi, Envelope } from "@sluice/protocol"
import { Sluice } from "@sluice/sdk"
import type { PublishError } from "@sluice/sdk"
import type { QueuedIterator, Status } from "@nats-io/transport-node"
import { Context, Effect, Either, Layer, Ref, Schema, Stream } from "effect"
import { BrokerConfig } from "./BrokerConfig.js"
import { eventStatus, recordedEvent } from "./EventStatus.js"
import { HistoryStore } from "./HistoryStore.js"
import { Nats } from "./Nats.js"
import * as RequestBody from "./RequestBody.js"

/** What a 503 asks the client to wait before retrying. */
const RETRY_AFTER_SECONDS = 5

/** The SDK's publisher on the broker's connection, and whether that connection is up right now. */
class Publisher extends Context.Tag("@sluice/broker/Ingest/Publisher")<
  Publisher,
  {
    readonly sluice: Sluice.Sluice["Type"]
    readonly connected: Effect.Effect<boolean>
  }
>() {}

/**
 * Follows the connection's status, because nats.js buffers what is published while it is
 * disconnected and may send it after reconnecting: ingest refuses while NATS is away, so an
 * event answered with 503 is not stored behind the client's back.
 */
const publisherLayer: Layer.Layer<Publisher, never, Nats> = Layer.scoped(
  Publisher,
  Effect.gen(function* () {
    const { connection } = yield* Nats
    const up = yield* Ref.make(!connection.isClosed())
    const statuses = connection.status() as QueuedIterator<Status>
    yield* Stream.fromAsyncIterable(statuses, (error) => error).pipe(
      Stream.runForEach((status) =>
        status.type === "disconnect" ? Ref.set(up, false) : status.type === "reconnect" ? Ref.set(up, true) : Effect.void
      ),
      Effect.catchAllCause((cause) => Effect.logWarning("stopped following the NATS connection status", cause)),
      Effect.forkScoped
    )
    // Runs before the fiber is interrupted (finalizers run in reverse): ending the iterator
    // lets it finish, where interrupting it would wait for a status that never comes.
    yield* Effect.addFinalizer(() => Effect.sync(() => statuses.stop()))
    const sluice = yield* Sluice.fromConnection(connection)
    return { sluice, connected: Effect.map(Ref.get(up), (isUp) => isUp && !connection.isClosed()) }
  })
)

const invalid = (field: string, detail: string) => new AdminApi.InvalidRequest({ field, message: `${field}: ${detail}` })

/** A 503 with `Retry-After`, the body the `Unavailable` error has everywhere else in the API. */
const unavailable = (message: string) =>
  HttpServerResponse.unsafeJson(Schema.encodeSync(AdminApi.Unavailable)(new AdminApi.Unavailable({ message })), {
    status: 503,
    headers: { "retry-after": String(RETRY_AFTER_SECONDS) }
  })

/** The body as text, or 413 when it has more than `maxBytes`. */
const readBody = (request: HttpServerRequest.HttpServerRequest, maxBytes: number) =>
  RequestBody.readBytes(
    request,
    maxBytes,
    new AdminApi.PayloadTooLarge({
      message: `the request body is larger than ${maxBytes} bytes (SLUICE_MAX_INGEST_BYTES); send fewer events per request`,
      maxBytes
    })
  ).pipe(Effect.flatMap(RequestBody.decodeUtf8))

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/** The inputs a body holds, and whether it was a batch (which decides how fields are named). */
const inputsOf = (
  text: string
): Either.Either<{ readonly inputs: ReadonlyArray<unknown>; readonly batch: boolean }, AdminApi.InvalidRequest> => {
  const parsed = RequestBody.parseJson(text)
  if (Either.isLeft(parsed)) return Either.left(parsed.left)
  const body = parsed.right
  if (!isRecord(body)) return Either.left(invalid("(body)", 'must be one event object or { "events": [...] }'))
  if (!("events" in body)) return checked([body], false)
  const extra = Object.keys(body).find((key) => key !== "events")
  if (extra !== undefined) return Either.left(invalid(extra, 'a batch holds only "events"'))
  if (!Array.isArray(body.events)) return Either.left(invalid("events", "must be an array of events"))
  if (body.events.length === 0) return Either.left(invalid("events", "must hold at least one event"))
  return checked(body.events, true)
}

/** The inputs, once each event passed `RequestBody.checkJson` (nesting counted from the event, so a batch nests as deep as one event). */
const checked = (
  inputs: ReadonlyArray<unknown>,
  batch: boolean
): Either.Either<{ readonly inputs: ReadonlyArray<unknown>; readonly batch: boolean }, AdminApi.InvalidRequest> => {
  for (const [index, input] of inputs.entries()) {
    const problem = RequestBody.checkJson(input, batch ? ["events", String(index)] : [])
    if (problem !== undefined) return Either.left(problem)
  }
  return Either.right({ inputs, batch })
}

const decodeIdempotencyKey = Schema.decodeUnknownEither(Envelope.IdempotencyKey)

/** A single event's `Idempotency-Key` header becomes its idempotencyKey; a batch refuses it. */
const withIdempotencyKey = (
  inputs: ReadonlyArray<unknown>,
  batch: boolean,
  header: string | undefined
): Either.Either<ReadonlyArray<unknown>, AdminApi.InvalidRequest> => {
  if (header === undefined) return Either.right(inputs)
  const field = "Idempotency-Key"
  if (batch) {
    return Either.left(invalid(field, "applies to a single event; give each event of a batch its own id or idempotencyKey"))
  }
  const key = decodeIdempotencyKey(header)
  if (Either.isLeft(key)) return Either.left(invalid(field, Envelope.describeParseError(key.left).message.replace(/^\(root\): /, "")))
  const [input] = inputs
  if (!isRecord(input)) return Either.right(inputs)
  if (input.idempotencyKey !== undefined && input.idempotencyKey !== key.right) {
    return Either.left(invalid(field, "differs from the event's idempotencyKey"))
  }
  return Either.right([{ ...input, idempotencyKey: key.right }])
}

/** The SDK names a batch position `[2].type`; here it is `events.2.type`, or just `type` for a single event. */
const renameField = (error: Envelope.InvalidEnvelope, batch: boolean): AdminApi.InvalidRequest => {
  const match = /^\[(\d+)\]\.?(.*)$/.exec(error.field)
  if (match === null) return new AdminApi.InvalidRequest({ field: error.field, message: error.message })
  const [, index, rest] = match
  const field = batch ? (rest === "" ? `events.${index}` : `events.${index}.${rest}`) : rest === "" ? "(body)" : rest
  const detail = error.message.startsWith(`${error.field}: `) ? error.message.slice(error.field.length + 2) : error.message
  return invalid(field, detail)
}

const publishFailure = (error: PublishError) => {
  switch (error._tag) {
    case "InvalidEnvelope":
      return Effect.fail(new AdminApi.InvalidRequest({ field: error.field, message: error.message }))
    case "PublishTimeout":
      return Effect.succeed(
        unavailable(
          `JetStream did not acknowledge within ${error.timeoutMs}ms, so some events may be stored — ` +
            "send the same request again: events with the same id or idempotency key are stored once"
        )
      )
    case "StreamNotFound":
      return Effect.succeed(unavailable(`the ${error.stream} stream does not exist; nothing was stored`))
    case "PublishFailed":
      return Effect.succeed(unavailable(`JetStream refused an event: ${error.reason}`))
  }
}

const IngestLive = HttpApiBuilder.group(AdminApi.AdminApi, "ingest", (handlers) =>
  Effect.gen(function* () {
    const config = yield* BrokerConfig
    const publisher = yield* Publisher
    const store = yield* HistoryStore
    return handlers.handleRaw("publish", ({ headers, request }) =>
      Effect.gen(function* () {
        const text = yield* readBody(request, config.maxIngestBytes)
        const { batch, inputs } = yield* inputsOf(text)
        const keyed = yield* withIdempotencyKey(inputs, batch, headers["idempotency-key"])
        const envelopes = yield* Either.mapLeft(Sluice.validate(keyed), (error) => renameField(error, batch))
        for (const [index, envelope] of envelopes.entries()) {
          const bytes = Sluice.sizeOf(envelope)
          if (bytes > config.maxEventBytes) {
            const what = batch ? `event ${index} (${envelope.id})` : `the event (${envelope.id})`
            return yield* new AdminApi.PayloadTooLarge({
              message: `${what} is ${bytes} bytes with its headers, over the ${config.maxEventBytes} bytes an event may have (SLUICE_MAX_EVENT_BYTES)`,
              maxBytes: config.maxEventBytes
            })
          }
        }
        if (!(yield* publisher.connected)) return unavailable("NATS is unreachable; nothing was stored")
        return yield* publisher.sluice.publishMany(envelopes).pipe(
          Effect.map((results) =>
            HttpServerResponse.unsafeJson(
              { events: results.map(({ duplicate, id }) => ({ id, duplicate })) },
              { status: results.some((r) => !r.duplicate) ? 201 : 200 }
            )
          ),
          Effect.catchAll(publishFailure)
        )
      })
    ).handle("status", ({ path }) => recordedEvent(store, path.id).pipe(Effect.map(eventStatus)))
  })
)

/** The ingest group's handlers, publishing over the broker's NATS connection and reading status from the history. */
export const layer = IngestLive.pipe(Layer.provide(publisherLayer))
