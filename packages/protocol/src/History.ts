/**
 * What the history shows about events, deliveries and attempts. These are read models:
 * the broker writes facts, the admin API answers with these.
 */
import { Schema } from "effect"
import { EventHeaders, EventId, EventKey, EventType, EventVersion, IdempotencyKey, Timestamp } from "./Envelope.js"
import { DeliveryState } from "./States.js"

/** How one HTTP attempt ended, by the response classes of DESIGN.md. */
export const AttemptOutcome = Schema.Literal("success", "failure", "rejected", "throttled", "gone")
export type AttemptOutcome = typeof AttemptOutcome.Type

export const Attempt = Schema.Struct({
  attempt: Schema.Int,
  startedAt: Timestamp,
  durationMs: Schema.Int,
  outcome: AttemptOutcome,
  statusCode: Schema.NullOr(Schema.Int),
  error: Schema.NullOr(Schema.String),
  responseExcerpt: Schema.NullOr(Schema.String)
}).annotations({ identifier: "Attempt" })
export type Attempt = typeof Attempt.Type

export const Delivery = Schema.Struct({
  eventId: EventId,
  destinationId: Schema.String,
  state: DeliveryState,
  attempts: Schema.Int,
  lastStatusCode: Schema.NullOr(Schema.Int),
  lastError: Schema.NullOr(Schema.String),
  /** The event that superseded this one (`canceled`). */
  canceledBy: Schema.NullOr(Schema.String),
  /** The event this one repeats (`duplicate`). */
  duplicateOf: Schema.NullOr(Schema.String),
  /** Why it was not delivered (`ignored`), naming the newer event already delivered. */
  ignoredReason: Schema.NullOr(Schema.String),
  nextAttemptAt: Schema.NullOr(Timestamp),
  createdAt: Timestamp,
  updatedAt: Timestamp
}).annotations({ identifier: "Delivery" })
export type Delivery = typeof Delivery.Type

/** An event as received: the envelope plus where and when JetStream stored it. */
export const StoredEvent = Schema.Struct({
  id: EventId,
  type: EventType,
  key: Schema.NullOr(EventKey),
  version: Schema.NullOr(EventVersion),
  idempotencyKey: Schema.NullOr(IdempotencyKey),
  occurredAt: Timestamp,
  receivedAt: Timestamp,
  streamSeq: Schema.Int,
  data: Schema.Unknown,
  headers: Schema.NullOr(EventHeaders)
}).annotations({ identifier: "StoredEvent" })
export type StoredEvent = typeof StoredEvent.Type

export const DeliveryDetail = Schema.Struct({
  ...Delivery.fields,
  attemptLog: Schema.Array(Attempt)
}).annotations({ identifier: "DeliveryDetail" })
export type DeliveryDetail = typeof DeliveryDetail.Type

/** `GET /events/:id`: the event, and for every destination its delivery with all attempts. */
export const EventDetail = Schema.Struct({
  event: StoredEvent,
  deliveries: Schema.Array(DeliveryDetail)
}).annotations({ identifier: "EventDetail" })
export type EventDetail = typeof EventDetail.Type
