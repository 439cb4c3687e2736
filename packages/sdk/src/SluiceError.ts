/**
 * The few failures a producer can act on, each named for what to do about it:
 * fix the input (`InvalidEnvelope`), retry later with the same id (`PublishTimeout`),
 * start the broker (`StreamNotFound`), look at the reason (`PublishFailed`,
 * `ConnectionFailed`).
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

/** Everything `publish` and `publishMany` can fail with. */
export type PublishError = InvalidEnvelope | PublishTimeout | StreamNotFound | PublishFailed
