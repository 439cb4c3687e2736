/**
 * How an envelope travels as a JetStream message: its subject, JSON body, and the headers
 * that deduplicate it and let consumers route without parsing the body; and how the
 * answer to a publish becomes an error a producer can act on.
 */
import type { StoredMsg } from "@nats-io/jetstream"
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream"
import type { MsgHdrs } from "@nats-io/transport-node"
import { headers, RequestError, TimeoutError } from "@nats-io/transport-node"
import { Envelope, Subjects } from "@sluice/protocol"
import { Either } from "effect"
import { InvalidEnvelope, PublishFailed, PublishTimeout, StreamNotFound } from "../SluiceError.js"

/**
 * The `Nats-Msg-Id` JetStream deduplicates on: the idempotency key when there is one
 * (prefixed so that it can never collide with an event id), else the event id.
 */
export const deduplicationId = (envelope: Envelope.Envelope): string =>
  envelope.idempotencyKey === undefined ? envelope.id : `idem:${envelope.idempotencyKey}`

/**
 * NATS header values cannot hold line breaks and lose surrounding blanks, so a key or
 * idempotency key that would not survive the trip is refused before anything is sent.
 */
const headerSafe = (envelope: Envelope.Envelope): Either.Either<Envelope.Envelope, InvalidEnvelope> => {
  for (const field of ["key", "idempotencyKey"] as const) {
    const value = envelope[field]
    if (value !== undefined && (/[\r\n]/.test(value) || value.trim() !== value)) {
      return Either.left(
        new InvalidEnvelope({ field, message: `${field}: must not contain line breaks or leading/trailing blanks` })
      )
    }
  }
  return Either.right(envelope)
}

/** Validates one input and resolves it to the envelope that will be sent (id and occurredAt filled in). */
export const prepare = (input: unknown): Either.Either<Envelope.Envelope, InvalidEnvelope> =>
  Either.flatMap(Envelope.toEnvelope(input), headerSafe)

/**
 * Validates a batch, all or nothing: the first invalid input fails the whole batch and its
 * error names the position, as in `[3].type: …`.
 */
export const prepareAll = (
  inputs: ReadonlyArray<unknown>
): Either.Either<ReadonlyArray<Envelope.Envelope>, InvalidEnvelope> => {
  const envelopes: Array<Envelope.Envelope> = []
  for (const [index, input] of inputs.entries()) {
    const prepared = prepare(input)
    if (Either.isLeft(prepared)) return Either.left(atIndex(index, prepared.left))
    envelopes.push(prepared.right)
  }
  return Either.right(envelopes)
}

/** Prefixes an input's error with its position in a batch: `type` becomes `[3].type`. */
const atIndex = (index: number, error: InvalidEnvelope): InvalidEnvelope => {
  const detail = error.message.startsWith(`${error.field}: `) ? error.message.slice(error.field.length + 2) : error.message
  const field = error.field === "(root)" ? `[${index}]` : `[${index}].${error.field}`
  return new InvalidEnvelope({ field, message: `${field}: ${detail}` })
}

/** The headers every event message carries, so consumers can deduplicate and route on them. */
export const messageHeaders = (envelope: Envelope.Envelope): MsgHdrs => {
  const h = headers()
  h.set(Subjects.Headers.msgId, deduplicationId(envelope))
  h.set(Subjects.Headers.eventId, envelope.id)
  h.set(Subjects.Headers.type, envelope.type)
  if (envelope.key !== undefined) h.set(Subjects.Headers.key, envelope.key)
  return h
}

/**
 * The size JetStream holds against a stream's maximum message size: the JSON body and the
 * headers as they go on the wire (`NATS/1.0`, a `name: value` line each, a blank line).
 */
export const messageBytes = (envelope: Envelope.Envelope): number => {
  let bytes = Buffer.byteLength(Envelope.encodeEnvelope(envelope)) + Buffer.byteLength("NATS/1.0\r\n\r\n")
  for (const [name, values] of messageHeaders(envelope)) {
    for (const value of values) bytes += Buffer.byteLength(`${name}: ${value}\r\n`)
  }
  return bytes
}

/** The event id of a stored message: its `Sluice-Event-Id` header, else the id in its body. */
export const storedEventId = (stored: StoredMsg): string | undefined => {
  const header = stored.header?.get(Subjects.Headers.eventId)
  if (header) return header
  return Either.getOrUndefined(Envelope.decodeEnvelope(stored.string()))?.id
}

/**
 * Classifies a failed publish. No responders on an event subject means no stream listens
 * to it, which is what a never-started broker looks like.
 */
export const publishError = (
  error: unknown,
  eventId: string,
  timeoutMs: number
): PublishTimeout | StreamNotFound | PublishFailed => {
  if (error instanceof TimeoutError) return new PublishTimeout({ eventId, timeoutMs })
  const noResponders = (e: unknown): boolean => e instanceof RequestError && e.isNoResponders()
  if (error instanceof Error && (noResponders(error) || noResponders(error.cause))) {
    return new StreamNotFound({ stream: Subjects.EVENTS_STREAM })
  }
  if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) {
    return new StreamNotFound({ stream: Subjects.EVENTS_STREAM })
  }
  return new PublishFailed({ eventId, reason: error instanceof Error ? error.message : String(error) })
}
