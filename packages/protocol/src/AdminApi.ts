/**
 * The admin HTTP API, defined once: the broker derives its server from it, the CLI and
 * the admin web app derive their clients, so the three cannot drift apart.
 */
import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiMiddleware, HttpApiSchema, HttpApiSecurity } from "@effect/platform"
import { Schema } from "effect"
import {
  CreateDestination,
  DestinationId,
  DestinationView,
  SigningSecret,
  UpdateDestination
} from "./Destination.js"
import { EventId, PublishInput, Timestamp } from "./Envelope.js"
import { AuditPage, DestinationStats, EventDetail, EventPage, EventQuery, HealthTransition } from "./History.js"
import { DeliveryState } from "./States.js"

/** The resource does not exist. */
export class NotFound extends Schema.TaggedError<NotFound>()(
  "NotFound",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

/** The request conflicts with what exists (a destination id already taken). */
export class Conflict extends Schema.TaggedError<Conflict>()(
  "Conflict",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {}

/** The request is well-formed but not acceptable; `field` names what to fix. */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()(
  "InvalidRequest",
  { field: Schema.String, message: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {}

/** A dependency (the history database, NATS) is unavailable; retry after a moment. */
export class Unavailable extends Schema.TaggedError<Unavailable>()(
  "Unavailable",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 503 })
) {}

/** No bearer token, or not one this endpoint accepts; the message says which token it wants. */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 401 })
) {}

/** The request (or one event in it) is larger than the broker accepts; `maxBytes` is the limit. */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()(
  "PayloadTooLarge",
  { message: Schema.String, maxBytes: Schema.Int },
  HttpApiSchema.annotations({ status: 413 })
) {}

/**
 * The operator's access: every admin group but `system` (`GET /info`, which holds no
 * secrets) requires `Authorization: Bearer <admin token>` and answers 401 otherwise.
 */
export class Authorization extends HttpApiMiddleware.Tag<Authorization>()("@sluice/protocol/Authorization", {
  failure: Unauthorized,
  security: { bearer: HttpApiSecurity.bearer }
}) {}

/**
 * A producer's access to HTTP ingest: `Authorization: Bearer <producer token>`. Separate from
 * the admin token (which is refused here, as the producer token is refused by the admin
 * groups), so a token handed to an application cannot pause destinations or read history.
 */
export class ProducerAuthorization extends HttpApiMiddleware.Tag<ProducerAuthorization>()(
  "@sluice/protocol/ProducerAuthorization",
  { failure: Unauthorized, security: { bearer: HttpApiSecurity.bearer } }
) {}

const strict = { parseOptions: { onExcessProperty: "error" as const } }

const destinationId = HttpApiSchema.param("id", DestinationId)
const eventId = HttpApiSchema.param("id", EventId)

/** Returned once, on creation: the only time the full signing secret is shown. */
export const DestinationCreated = Schema.Struct({
  ...DestinationView.fields,
  secret: SigningSecret
}).annotations({ identifier: "DestinationCreated" })

/** Why an operator disables a destination; recorded as the reason of the health change. */
export const DisableDestination = Schema.Struct({
  reason: Schema.optionalWith(Schema.String.pipe(Schema.maxLength(500)), { default: () => "" })
}).annotations({ identifier: "DisableDestination" })

/** How many deliveries a replay queued again. */
export const ReplayResult = Schema.Struct({ replayed: Schema.Int }).annotations({ identifier: "ReplayResult" })

/** Replay one event to one destination. */
export const ReplayEvent = Schema.Struct({ destinationId: DestinationId }).annotations({ identifier: "ReplayEvent" })

/** Replay a destination's deliveries in these states (default dead, disabled, canceled) since a time. */
export const ReplayDeliveries = Schema.Struct({
  since: Timestamp,
  states: Schema.optionalWith(Schema.NonEmptyArray(DeliveryState), {
    default: () => ["dead", "disabled", "canceled"] as const
  })
}).annotations({ identifier: "ReplayDeliveries" })

/** Replay everything the destination subscribes to that JetStream still holds since a time. */
export const ReplayStream = Schema.Struct({ since: Timestamp }).annotations({ identifier: "ReplayStream" })

export const AuditQuery = Schema.Struct({
  destination: Schema.optional(Schema.String),
  cursor: Schema.optional(Schema.String),
  limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 500)))
}).annotations({ identifier: "AuditQuery" })

/** The signing secret after a rotation: shown once. */
export const RotatedSecret = Schema.Struct({ secret: SigningSecret }).annotations({ identifier: "RotatedSecret" })

export class DestinationsGroup extends HttpApiGroup.make("destinations")
  .middleware(Authorization)
  .add(HttpApiEndpoint.get("list", "/destinations").addSuccess(Schema.Array(DestinationView)))
  .add(
    HttpApiEndpoint.post("create", "/destinations")
      .setPayload(CreateDestination.annotations(strict))
      .addSuccess(DestinationCreated, { status: 201 })
      .addError(Conflict)
      .addError(InvalidRequest)
  )
  .add(HttpApiEndpoint.get("get")`/destinations/${destinationId}`.addSuccess(DestinationView).addError(NotFound))
  .add(
    HttpApiEndpoint.patch("update")`/destinations/${destinationId}`
      .setPayload(UpdateDestination.annotations(strict))
      .addSuccess(DestinationView)
      .addError(NotFound)
      .addError(InvalidRequest)
  )
  .add(HttpApiEndpoint.del("remove")`/destinations/${destinationId}`.addSuccess(Schema.Void).addError(NotFound))
  // Operator health actions: each answers the destination with its new health.
  .add(HttpApiEndpoint.post("pause")`/destinations/${destinationId}/pause`.addSuccess(DestinationView).addError(NotFound))
  .add(HttpApiEndpoint.post("resume")`/destinations/${destinationId}/resume`.addSuccess(DestinationView).addError(NotFound))
  .add(HttpApiEndpoint.post("enable")`/destinations/${destinationId}/enable`.addSuccess(DestinationView).addError(NotFound))
  .add(
    HttpApiEndpoint.post("disable")`/destinations/${destinationId}/disable`
      .setPayload(DisableDestination.annotations(strict))
      .addSuccess(DestinationView)
      .addError(NotFound)
  )
  .add(
    HttpApiEndpoint.post("rotateSecret")`/destinations/${destinationId}/rotate-secret`
      .addSuccess(RotatedSecret)
      .addError(NotFound)
  )
  .add(
    HttpApiEndpoint.get("health")`/destinations/${destinationId}/health`
      .addSuccess(Schema.Array(HealthTransition))
      .addError(NotFound)
  )
  .add(HttpApiEndpoint.get("stats")`/destinations/${destinationId}/stats`.addSuccess(DestinationStats).addError(NotFound))
  .add(
    HttpApiEndpoint.post("replay")`/destinations/${destinationId}/replay`
      .setPayload(ReplayDeliveries.annotations(strict))
      .addSuccess(ReplayResult)
      .addError(NotFound)
  )
  .add(
    HttpApiEndpoint.post("replayStream")`/destinations/${destinationId}/replay-stream`
      .setPayload(ReplayStream.annotations(strict))
      .addSuccess(ReplayResult)
      .addError(NotFound)
  ) {}

export class EventsGroup extends HttpApiGroup.make("events")
  .middleware(Authorization)
  .add(
    HttpApiEndpoint.get("list", "/events")
      .setUrlParams(EventQuery)
      .addSuccess(EventPage)
      .addError(InvalidRequest)
  )
  .add(HttpApiEndpoint.get("get")`/events/${eventId}`.addSuccess(EventDetail).addError(NotFound))
  .add(
    HttpApiEndpoint.post("replay")`/events/${eventId}/replay`
      .setPayload(ReplayEvent.annotations(strict))
      .addSuccess(ReplayResult)
      .addError(NotFound)
  ) {}

export class AuditGroup extends HttpApiGroup.make("audit").middleware(Authorization).add(
  HttpApiEndpoint.get("list", "/audit").setUrlParams(AuditQuery).addSuccess(AuditPage).addError(InvalidRequest)
) {}

/** One event, or `{ "events": [...] }`: the same input the SDK takes, validated by the same schema. */
export const IngestRequest = Schema.Union(PublishInput, Schema.Struct({ events: Schema.Array(PublishInput) })).annotations({
  identifier: "IngestRequest"
})

/**
 * `Idempotency-Key` becomes the idempotencyKey of a single event (a batch refuses it: give
 * each event its own `id` or `idempotencyKey`). Checked by the handler, so a bad value is a
 * 400 `InvalidRequest` naming the header like any other field.
 */
export const IngestHeaders = Schema.Struct({ "idempotency-key": Schema.optional(Schema.String) })

/** What became of each event, in request order; a duplicate's id is the event stored first. */
export const IngestResult = Schema.Struct({
  events: Schema.Array(Schema.Struct({ id: EventId, duplicate: Schema.Boolean }))
}).annotations({ identifier: "IngestResult" })
export type IngestResult = typeof IngestResult.Type

/** Where one event's delivery to one destination stands; `updatedAt` is null while the history has no row for it yet. */
export const DeliveryStatus = Schema.Struct({
  destinationId: Schema.String,
  state: DeliveryState,
  attempts: Schema.Int,
  updatedAt: Schema.NullOr(Timestamp)
}).annotations({ identifier: "DeliveryStatus" })
export type DeliveryStatus = typeof DeliveryStatus.Type

/**
 * What a producer may know of its event: its state at every destination that owes it a
 * delivery, without the payload or the attempts' responses (those are the operator's).
 * `settled` once every delivery is in a final state — true as well when no destination
 * subscribes — so a producer can drop its own copy.
 */
export const EventStatus = Schema.Struct({
  id: EventId,
  receivedAt: Timestamp,
  settled: Schema.Boolean,
  deliveries: Schema.Array(DeliveryStatus)
}).annotations({ identifier: "EventStatus" })
export type EventStatus = typeof EventStatus.Type

/**
 * HTTP ingest for producers in any language (`POST /api/v1/events`). It answers once JetStream
 * stored every event: 201 when something new was stored, 200 when all were duplicates; 503
 * `Unavailable` with `Retry-After` when NATS cannot take them. `GET /events/:id/status` tells
 * the producer what became of an event: 404 `NotFound` until the history recorded it.
 */
export class IngestGroup extends HttpApiGroup.make("ingest")
  .middleware(ProducerAuthorization)
  .add(
    HttpApiEndpoint.post("publish", "/events")
      .setPayload(IngestRequest)
      .setHeaders(IngestHeaders)
      .addSuccess(IngestResult, { status: 201 })
      .addSuccess(IngestResult, { status: 200 })
      .addError(InvalidRequest)
      .addError(PayloadTooLarge)
  )
  .add(HttpApiEndpoint.get("status")`/events/${eventId}/status`.addSuccess(EventStatus).addError(NotFound)) {}

/** What a client needs to find the rest of the system, e.g. the NATS URL for publishing. */
export const SystemInfo = Schema.Struct({
  version: Schema.String,
  natsUrl: Schema.String,
  stream: Schema.String
}).annotations({ identifier: "SystemInfo" })
export type SystemInfo = typeof SystemInfo.Type

export class SystemGroup extends HttpApiGroup.make("system").add(
  HttpApiEndpoint.get("info", "/info").addSuccess(SystemInfo)
) {}

export class AdminApi extends HttpApi.make("sluice")
  .add(SystemGroup)
  .add(IngestGroup)
  .add(DestinationsGroup)
  .add(EventsGroup)
  .add(AuditGroup)
  .addError(Unavailable)
  .prefix("/api/v1") {}
