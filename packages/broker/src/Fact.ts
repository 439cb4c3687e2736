/**
 * Facts are the history's input: past-tense records of what the broker did. Actors publish
 * them to the SLUICE_FACTS stream (durable even while the database is down); the history
 * writer applies them in batches. Applying a fact twice has no further effect.
 */
import { History, States } from "@sluice/protocol"
import { Either, type ParseResult, Schema } from "effect"

const Timestamp = Schema.String

/** One HTTP attempt ended; carries the delivery state it left behind. */
export class AttemptFinished extends Schema.TaggedClass<AttemptFinished>()("AttemptFinished", {
  /** Unique per attempt: the fact's deduplication id and the attempt row's key. */
  id: Schema.String,
  eventId: Schema.String,
  destinationId: Schema.String,
  attempt: Schema.Int,
  startedAt: Timestamp,
  durationMs: Schema.Int,
  outcome: History.AttemptOutcome,
  statusCode: Schema.NullOr(Schema.Int),
  error: Schema.NullOr(Schema.String),
  responseExcerpt: Schema.NullOr(Schema.String),
  /** Delivery state after this attempt (`completed`, `errored`, `dead`, …). */
  state: States.DeliveryState,
  nextAttemptAt: Schema.NullOr(Timestamp)
}) {}

/** A delivery changed state without an attempt (canceled, ignored, duplicate, disabled, dead by age). */
export class DeliveryChanged extends Schema.TaggedClass<DeliveryChanged>()("DeliveryChanged", {
  id: Schema.String,
  eventId: Schema.String,
  destinationId: Schema.String,
  state: States.DeliveryState,
  at: Timestamp,
  reason: Schema.NullOr(Schema.String),
  canceledBy: Schema.NullOr(Schema.String),
  duplicateOf: Schema.NullOr(Schema.String),
  ignoredReason: Schema.NullOr(Schema.String)
}) {}

/** A destination's health changed. */
export class HealthChanged extends Schema.TaggedClass<HealthChanged>()("HealthChanged", {
  ...History.HealthTransition.fields,
  destinationId: Schema.String
}) {}

/** An operator (or the broker acting for one) did something worth auditing: the audit entry itself. */
export class OperatorActed extends Schema.TaggedClass<OperatorActed>()("OperatorActed", History.AuditEntry.fields) {}

export const Fact = Schema.Union(AttemptFinished, DeliveryChanged, HealthChanged, OperatorActed)
export type Fact = typeof Fact.Type

/** Subject token per fact kind: `sluice.facts.<kind>`. */
export const kindOf = (fact: Fact): string => {
  switch (fact._tag) {
    case "AttemptFinished":
      return "attempt"
    case "DeliveryChanged":
      return "delivery"
    case "HealthChanged":
      return "health"
    case "OperatorActed":
      return "audit"
  }
}

/**
 * A fact as the JSON stored in SLUICE_FACTS. Every field's encoded form is its value
 * (strings, numbers, null, literals, JSON details), so a fact's own properties, `_tag`
 * included, are its encoding: `JSON.stringify` writes what the schema encoder would, for
 * a tenth of its cost on the recorder's path (Fact.test.ts holds the two equal).
 */
export const encode = (fact: Fact): string => JSON.stringify(fact)

const decodeMessage = Schema.decodeUnknownEither(Schema.parseJson(Schema.Union(Fact, Schema.Array(Fact))))

/**
 * The facts of one SLUICE_FACTS message: a single fact, or an array of the facts the recorder
 * stored together (`Recorder`).
 */
export const decodeAll = (text: string): Either.Either<ReadonlyArray<Fact>, ParseResult.ParseError> =>
  Either.map(decodeMessage(text), (decoded) => ("_tag" in decoded ? [decoded] : decoded))
