/**
 * The event envelope: what producers hand to Sluice and what destinations receive.
 * One schema decodes every source (SDK calls, HTTP ingest, NDJSON files, JetStream
 * messages), so a bad field is named the same way wherever it enters.
 */
import { Either, ParseResult, Schema } from "effect"
import { monotonicFactory } from "ulid"

const isRfc3339 = (s: string): boolean =>
  /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.test(s) && !Number.isNaN(Date.parse(s))

/** An RFC 3339 timestamp string (`2026-11-23T09:00:00Z`). */
export const Timestamp = Schema.String.pipe(
  Schema.filter(isRfc3339, { message: () => "must be an RFC 3339 timestamp such as 2026-11-23T09:00:00Z" })
).annotations({ identifier: "Timestamp" })

/** Event ids travel as `Nats-Msg-Id` and `webhook-id`, so they stay short and header-safe. */
export const EventId = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/, {
    message: () => "must be 1-128 characters of letters, digits, '.', '_', ':' or '-'"
  })
).annotations({ identifier: "EventId" })

/**
 * Dotted tokens (`order.created`). Each token becomes a NATS subject token, so wildcards
 * and whitespace are excluded; types under `sluice.` are reserved for the broker's own signals.
 */
export const EventType = Schema.String.pipe(
  Schema.maxLength(200, { message: () => "must be at most 200 characters" }),
  Schema.pattern(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, {
    message: () => "must be dot-separated tokens of letters, digits, '_' or '-' (for example order.created)"
  })
).annotations({ identifier: "EventType" })

/** The resource an event is about: events with one key are ordered and superseded together. */
export const EventKey = Schema.String.pipe(
  Schema.minLength(1, { message: () => "must not be empty" }),
  Schema.maxLength(256, { message: () => "must be at most 256 characters" })
).annotations({ identifier: "EventKey" })

/**
 * Monotonic per key: a non-negative integer, or an RFC 3339 time. The message overrides the
 * members' own, which would otherwise report "Expected number" for a malformed time.
 */
export const EventVersion = Schema.Union(Schema.NonNegativeInt, Timestamp).annotations({
  identifier: "EventVersion",
  message: () => ({ message: "must be a non-negative integer or an RFC 3339 timestamp", override: true })
})
export type EventVersion = typeof EventVersion.Type

export const IdempotencyKey = Schema.String.pipe(
  Schema.minLength(1, { message: () => "must not be empty" }),
  Schema.maxLength(256, { message: () => "must be at most 256 characters" })
).annotations({ identifier: "IdempotencyKey" })

/** Extra headers forwarded to destinations; names are HTTP token characters. */
export const EventHeaders = Schema.Record({
  key: Schema.String.pipe(
    Schema.pattern(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$/, { message: () => "header names must be HTTP tokens" })
  ),
  value: Schema.String.pipe(Schema.maxLength(4096, { message: () => "header values must be at most 4096 characters" }))
}).annotations({ message: () => "must be an object of header names to string values" })

/** The stored and delivered envelope: every field resolved. */
export class Envelope extends Schema.Class<Envelope>("Envelope")({
  id: EventId,
  type: EventType,
  key: Schema.optional(EventKey),
  version: Schema.optional(EventVersion),
  idempotencyKey: Schema.optional(IdempotencyKey),
  /** When set, queued older versions of this key are canceled in favour of this event. */
  supersedes: Schema.optional(Schema.Boolean),
  occurredAt: Timestamp,
  data: Schema.Unknown,
  headers: Schema.optional(EventHeaders)
}) {}

/** What a producer provides: `id` and `occurredAt` are filled in when absent. */
export const PublishInput = Schema.Struct({
  id: Schema.optional(EventId),
  type: EventType,
  key: Schema.optional(EventKey),
  version: Schema.optional(EventVersion),
  idempotencyKey: Schema.optional(IdempotencyKey),
  supersedes: Schema.optional(Schema.Boolean),
  occurredAt: Schema.optional(Timestamp),
  data: Schema.optional(Schema.Unknown),
  headers: Schema.optional(EventHeaders)
}).annotations({ identifier: "PublishInput" })
export type PublishInput = typeof PublishInput.Encoded

/**
 * Cryptographic random bytes drawn from a pool refilled a few KiB at a time. ulid's own
 * source makes one `crypto.getRandomValues` call per character, 16 per id: ~75 µs, which
 * the broker paid for every history fact. Each byte is used once, as ulid uses its own.
 */
const randomPool = new Uint8Array(4096)
let randomPoolNext = randomPool.length
const pooledRandom = (): number => {
  if (randomPoolNext === randomPool.length) {
    crypto.getRandomValues(randomPool)
    randomPoolNext = 0
  }
  return randomPool[randomPoolNext++]! / 256
}

const nextUlid = monotonicFactory(pooledRandom)

/** ULIDs sort by creation time, which keeps history listings and JetStream order aligned. */
export const makeEventId = (): string => nextUlid()

/** A bad envelope, with the path of the offending field (`data`, `version`, `headers.x`). */
export class InvalidEnvelope extends Schema.TaggedError<InvalidEnvelope>()("InvalidEnvelope", {
  field: Schema.String,
  message: Schema.String
}) {}

/** Turns a schema failure into one message that names the first offending field. */
export const describeParseError = (error: ParseResult.ParseError): { field: string; message: string } => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const first = issues[0]
  const field = first && first.path.length > 0 ? first.path.join(".") : "(root)"
  return { field, message: first ? `${field}: ${first.message}` : error.message }
}

const decodeInput = Schema.decodeUnknownEither(PublishInput, { errors: "first", onExcessProperty: "error" })

/** Validates producer input and resolves it to an envelope, before anything is sent. */
export const toEnvelope = (input: unknown, now: Date = new Date()): Either.Either<Envelope, InvalidEnvelope> =>
  decodeInput(input).pipe(
    Either.mapLeft((error) => new InvalidEnvelope(describeParseError(error))),
    Either.map(
      (i) =>
        new Envelope(
          {
            id: i.id ?? makeEventId(),
            type: i.type,
            key: i.key,
            version: i.version,
            idempotencyKey: i.idempotencyKey,
            supersedes: i.supersedes,
            occurredAt: i.occurredAt ?? now.toISOString(),
            data: i.data ?? null,
            headers: i.headers
          },
          { disableValidation: true }
        )
    )
  )

/** Encodes an envelope as the JSON body stored in JetStream and delivered to destinations. */
export const encodeEnvelope = (envelope: Envelope): string =>
  JSON.stringify({
    id: envelope.id,
    type: envelope.type,
    key: envelope.key,
    version: envelope.version,
    idempotencyKey: envelope.idempotencyKey,
    supersedes: envelope.supersedes,
    occurredAt: envelope.occurredAt,
    data: envelope.data,
    headers: envelope.headers
  })

/** `exact`, so a stored envelope without `data` is rejected instead of read as `undefined`. */
const decodeStored = Schema.decodeUnknownEither(Schema.parseJson(Envelope), { errors: "first", exact: true })

/** Decodes an envelope read back from JetStream. */
export const decodeEnvelope = (json: string): Either.Either<Envelope, InvalidEnvelope> =>
  decodeStored(json).pipe(Either.mapLeft((error) => new InvalidEnvelope(describeParseError(error))))

/** Fraction digits past the millisecond, which `Date.parse` drops (database times carry microseconds). */
const subMillisecond = (time: string): string => /\.\d{3}(\d*)/.exec(time)?.[1] ?? ""

const compare = <A extends number | string>(x: A, y: A): -1 | 0 | 1 => (x < y ? -1 : x > y ? 1 : 0)

/**
 * Orders two versions of one key. Numbers compare numerically and times chronologically,
 * to any fraction of a second; a number and a time are incomparable (`undefined`), which
 * callers treat as "not older".
 */
export const compareVersions = (a: EventVersion, b: EventVersion): -1 | 0 | 1 | undefined => {
  if (typeof a === "number" && typeof b === "number") return compare(a, b)
  if (typeof a === "string" && typeof b === "string") {
    const byMillis = compare(Date.parse(a), Date.parse(b))
    if (byMillis !== 0) return byMillis
    const x = subMillisecond(a)
    const y = subMillisecond(b)
    const width = Math.max(x.length, y.length)
    return compare(x.padEnd(width, "0"), y.padEnd(width, "0"))
  }
  return undefined
}
