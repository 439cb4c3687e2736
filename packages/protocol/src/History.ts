/**
 * What the history shows about events, deliveries and attempts. These are read models:
 * the broker writes facts, the admin API answers with these.
 */
import { Schema } from "effect"
import { SubscriptionPattern } from "./Destination.js"
import { EventHeaders, EventId, EventKey, EventType, EventVersion, IdempotencyKey, Timestamp } from "./Envelope.js"
import { DeliveryState, HealthState } from "./States.js"

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
  headers: Schema.NullOr(EventHeaders),
  /** Set when this event repeats an earlier one's idempotency key beyond JetStream's duplicate window. */
  duplicateOf: Schema.NullOr(EventId)
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

/** One row of the event list: the event and, per destination, where its delivery stands. */
export const EventSummary = Schema.Struct({
  id: EventId,
  type: EventType,
  key: Schema.NullOr(EventKey),
  version: Schema.NullOr(EventVersion),
  occurredAt: Timestamp,
  receivedAt: Timestamp,
  duplicateOf: Schema.NullOr(EventId),
  deliveries: Schema.Array(
    Schema.Struct({ destinationId: Schema.String, state: DeliveryState, attempts: Schema.Int, updatedAt: Timestamp })
  )
}).annotations({ identifier: "EventSummary" })
export type EventSummary = typeof EventSummary.Type

/** A page of a list, newest first; `nextCursor` fetches the next (older) page, null at the end. */
export const Page = <A, I>(item: Schema.Schema<A, I>) =>
  Schema.Struct({ items: Schema.Array(item), nextCursor: Schema.NullOr(Schema.String) })

export const EventPage = Page(EventSummary).annotations({ identifier: "EventPage" })
export type EventPage = typeof EventPage.Type

/**
 * Filters of `GET /events`; every one optional. `type` is an exact type or a pattern as in
 * subscriptions (`order.*`, `billing.>`); `since` (included) and `until` (excluded) bound `receivedAt`.
 */
export const EventQuery = Schema.Struct({
  type: Schema.optional(SubscriptionPattern),
  key: Schema.optional(Schema.String),
  destination: Schema.optional(Schema.String),
  state: Schema.optional(DeliveryState),
  since: Schema.optional(Timestamp),
  until: Schema.optional(Timestamp),
  cursor: Schema.optional(Schema.String),
  limit: Schema.optional(Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 500)))
}).annotations({ identifier: "EventQuery" })
export type EventQuery = typeof EventQuery.Type

/** One health transition of a destination, with its reason. */
export const HealthTransition = Schema.Struct({
  id: Schema.String,
  from: HealthState,
  to: HealthState,
  reason: Schema.String,
  at: Timestamp
}).annotations({ identifier: "HealthTransition" })
export type HealthTransition = typeof HealthTransition.Type

/** Latency percentiles of completed attempts over a recent window. */
export const LatencyWindow = Schema.Struct({
  window: Schema.Literal("5m", "1h", "24h"),
  count: Schema.Int,
  p50Ms: Schema.NullOr(Schema.Number),
  p99Ms: Schema.NullOr(Schema.Number)
}).annotations({ identifier: "LatencyWindow" })
export type LatencyWindow = typeof LatencyWindow.Type

/** Attempts per minute: what the throughput and error charts draw. */
export const ThroughputPoint = Schema.Struct({
  at: Timestamp,
  succeeded: Schema.Int,
  failed: Schema.Int
}).annotations({ identifier: "ThroughputPoint" })
export type ThroughputPoint = typeof ThroughputPoint.Type

/** What an operator looks at first for one destination. */
export const DestinationStats = Schema.Struct({
  destinationId: Schema.String,
  /** From the JetStream consumer: events not yet handed to the actor, and those it holds. */
  backlog: Schema.Struct({ pending: Schema.Int, held: Schema.Int }),
  /** Deliveries per current state. */
  states: Schema.Record({ key: DeliveryState, value: Schema.Int }),
  latency: Schema.Array(LatencyWindow),
  /** The last 60 minutes, one point per minute, oldest first. */
  throughput: Schema.Array(ThroughputPoint)
}).annotations({ identifier: "DestinationStats" })
export type DestinationStats = typeof DestinationStats.Type

/** What an operator (or the broker for one) did. */
export const AuditEntry = Schema.Struct({
  id: Schema.String,
  at: Timestamp,
  actor: Schema.String,
  action: Schema.String,
  destinationId: Schema.NullOr(Schema.String),
  details: Schema.Unknown
}).annotations({ identifier: "AuditEntry" })
export type AuditEntry = typeof AuditEntry.Type

export const AuditPage = Page(AuditEntry).annotations({ identifier: "AuditPage" })
export type AuditPage = typeof AuditPage.Type
