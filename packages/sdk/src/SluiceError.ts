/**
 * The few failures a producer can act on, each named for what to do about it:
 * fix the input (`InvalidEnvelope`), retry later with the same id (`PublishTimeout`),
 * start the broker (`StreamNotFound`), look at the reason (`PublishFailed`,
 * `ConnectionFailed`, `OutboxUnavailable`).
 */
import { Envelope } from "@sluice/protocol"
import { Schema } from "effect"

/** The input is wrong and will stay wrong: never retry, fix the named `field`. Nothing was sent. */
export const InvalidEnvelope = Envelope.InvalidEnvelope
export type InvalidEnvelope = Envelope.InvalidEnvelope

/**
 * No acknowledgement arrived in time, so the event may or may not be stored. Retrying
 * with the same `eventId` (or the same idempotencyKey) is safe: JetStream drops the copy.
 */
export class PublishTimeout extends Schema.TaggedError<PublishTimeout>()("PublishTimeout", {
  eventId: Schema.String,
  timeoutMs: Schema.Number
}) {
  override get message(): string {
    return (
      `no acknowledgement for event ${this.eventId} within ${this.timeoutMs}ms; it may or may not be stored — ` +
      `retry later with the same id (${this.eventId}) or idempotencyKey, duplicates are dropped`
    )
  }
}

/** Sluice's events stream does not exist (or JetStream is off): the broker has not been started. */
export class StreamNotFound extends Schema.TaggedError<StreamNotFound>()("StreamNotFound", {
  stream: Schema.String
}) {
  override get message(): string {
    return `stream ${this.stream} not found — is the Sluice broker running?`
  }
}

/** JetStream refused the event (too large, not permitted, connection closed): it was not stored. */
export class PublishFailed extends Schema.TaggedError<PublishFailed>()("PublishFailed", {
  eventId: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `event ${this.eventId} was not stored: ${this.reason}`
  }
}

/** The first connection to NATS failed (later disconnects are retried forever, not reported). */
export class ConnectionFailed extends Schema.TaggedError<ConnectionFailed>()("ConnectionFailed", {
  servers: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `could not connect to NATS at ${this.servers}: ${this.reason}`
  }
}

/**
 * The outbox relay cannot use its database: unreachable, or without the `sluice_outbox`
 * table (run the outbox migration). Rows already enqueued stay there until a relay runs.
 */
export class OutboxUnavailable extends Schema.TaggedError<OutboxUnavailable>()("OutboxUnavailable", {
  reason: Schema.String
}) {
  override get message(): string {
    return `the outbox database is unavailable: ${this.reason}`
  }
}

/** Everything `publish` and `publishMany` can fail with. */
export type PublishError = InvalidEnvelope | PublishTimeout | StreamNotFound | PublishFailed

/** `status` asks the broker's HTTP API, and none was given: connect with `adminUrl` and `producerToken`. */
export class AdminApiNotConfigured extends Schema.TaggedError<AdminApiNotConfigured>()("AdminApiNotConfigured", {}) {
  override get message(): string {
    return "status() needs the broker's HTTP API: connect with `adminUrl` (e.g. http://127.0.0.1:7700) and `producerToken`"
  }
}

/**
 * The broker's history has no such event (yet). History is written moments after JetStream
 * stored the event, so poll again; an id that was never published stays unknown.
 */
export class EventNotFound extends Schema.TaggedError<EventNotFound>()("EventNotFound", {
  eventId: Schema.String
}) {
  override get message(): string {
    return `event ${this.eventId} is not in the broker's history (yet) — poll again shortly`
  }
}

/** The broker did not answer the status question: unreachable, the token refused, or the history unavailable. */
export class StatusUnavailable extends Schema.TaggedError<StatusUnavailable>()("StatusUnavailable", {
  eventId: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `cannot get the status of event ${this.eventId}: ${this.reason}`
  }
}

/** Everything `status` can fail with. */
export type StatusError = AdminApiNotConfigured | EventNotFound | StatusUnavailable
