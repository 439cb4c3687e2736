import { describe, expect, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import * as Fact from "../src/Fact.js"

/** One fact of every kind, every optional value present, so each field's encoding is compared. */
const facts: ReadonlyArray<Fact.Fact> = [
  new Fact.AttemptFinished({
    id: "01M84G6JRY0FCKNRRSWCE8DNV5",
    eventId: "evt-1",
    destinationId: "dest-1",
    attempt: 2,
    startedAt: "2026-11-23T09:00:00.000Z",
    durationMs: 250,
    outcome: "failure",
    statusCode: 500,
    error: "HTTP 500",
    responseExcerpt: "oops \u00e9 \"quoted\"",
    state: "errored",
    nextAttemptAt: "2026-11-23T09:01:00.000Z"
  }),
  new Fact.DeliveryChanged({
    id: "01M84G6JRZKJ05SNWSVXKKS7PP",
    eventId: "evt-1",
    destinationId: "dest-1",
    state: "canceled",
    at: "2026-11-23T09:00:01.000Z",
    reason: "superseded by event evt-2",
    canceledBy: "evt-2",
    duplicateOf: null,
    ignoredReason: null
  }),
  new Fact.HealthChanged({
    id: "01M84G6JRZKJ05SNWSVXKKS7PQ",
    destinationId: "dest-1",
    from: "active",
    to: "down",
    reason: "5 failures in a row",
    at: "2026-11-23T09:00:02.000Z"
  }),
  new Fact.OperatorActed({
    id: "01M84G6JRZKJ05SNWSVXKKS7PR",
    at: "2026-11-23T09:00:03.000Z",
    actor: "admin",
    action: "destination.paused",
    destinationId: "dest-1",
    details: { reason: "maintenance", nested: [1, null, "x"] }
  })
]

const schemaEncode = Schema.encodeSync(Schema.parseJson(Fact.Fact))

describe("Fact", () => {
  it("encodes every kind as the schema encoder does", () => {
    for (const fact of facts) expect(JSON.parse(Fact.encode(fact))).toEqual(JSON.parse(schemaEncode(fact)))
  })

  it("decodes what it encodes: one fact, or facts stored together as an array", () => {
    for (const fact of facts) expect(Fact.decodeAll(Fact.encode(fact))).toEqual(Either.right([fact]))
    expect(Fact.decodeAll(`[${facts.map(Fact.encode).join(",")}]`)).toEqual(Either.right(facts))
  })

  it("refuses a message with any fact it cannot read, naming the field", () => {
    const bad = `[${Fact.encode(facts[0]!)},{"_tag":"AttemptFinished","id":"x"}]`
    const decoded = Fact.decodeAll(bad)
    expect(Either.isLeft(decoded) && decoded.left.message).toContain("eventId")
  })
})
