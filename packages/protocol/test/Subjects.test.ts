import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, FastCheck, Schema } from "effect"
import { DestinationId, SubscriptionPattern } from "../src/Destination.js"
import { EventType } from "../src/Envelope.js"
import {
  consumerFilter,
  destinationConsumer,
  EVENTS_PREFIX,
  EVENTS_WILDCARD,
  eventSubject,
  matchesAny,
  matchesPattern,
  typeOfSubject
} from "../src/Subjects.js"

/**
 * What nats.js (`validName` in @nats-io/jetstream) accepts as a stream or consumer name; the
 * server itself only forbids whitespace, '.', '*', '>' and path separators, up to 255 bytes.
 */
const NATS_NAME = /^[-\w]+$/
const NATS_MAX_NAME = 255

const eventTypes = Arbitrary.make(EventType)
const destinationIds = Arbitrary.make(DestinationId)

describe("eventSubject / typeOfSubject", () => {
  it("puts an event type under the events prefix, token for token", () => {
    expect(eventSubject("order.created")).toBe("sluice.events.order.created")
    expect(eventSubject("ping")).toBe("sluice.events.ping")
    expect(typeOfSubject("sluice.events.order.created.v2")).toBe("order.created.v2")
  })

  it("is covered by the stream wildcard and inverted by typeOfSubject", () => {
    FastCheck.assert(
      FastCheck.property(eventTypes, (type) => {
        const subject = eventSubject(type)
        expect(subject.startsWith(`${EVENTS_PREFIX}.`)).toBe(true)
        expect(matchesPattern(EVENTS_WILDCARD, subject)).toBe(true)
        expect(typeOfSubject(subject)).toBe(type)
      })
    )
  })
})

describe("matchesPattern", () => {
  it("matches exact types only exactly", () => {
    expect(matchesPattern("order.created", "order.created")).toBe(true)
    expect(matchesPattern("order.created", "order.updated")).toBe(false)
    expect(matchesPattern("order.created", "order")).toBe(false)
    expect(matchesPattern("order.created", "order.created.v2")).toBe(false)
    expect(matchesPattern("order", "order.created")).toBe(false)
    expect(matchesPattern("order.created", "Order.created")).toBe(false)
  })

  it("lets '*' stand for exactly one token", () => {
    expect(matchesPattern("order.*", "order.created")).toBe(true)
    expect(matchesPattern("order.*", "order.created.v2")).toBe(false)
    expect(matchesPattern("order.*", "order")).toBe(false)
    expect(matchesPattern("order.*", "user.created")).toBe(false)
    expect(matchesPattern("*.created", "order.created")).toBe(true)
    expect(matchesPattern("*.created", "order.updated")).toBe(false)
    expect(matchesPattern("order.*.v2", "order.created.v2")).toBe(true)
    expect(matchesPattern("order.*.v2", "order.created.v3")).toBe(false)
    expect(matchesPattern("*", "order")).toBe(true)
    expect(matchesPattern("*", "order.created")).toBe(false)
    expect(matchesPattern("*.*", "order.created")).toBe(true)
  })

  it("lets a final '>' stand for one or more tokens", () => {
    expect(matchesPattern("order.>", "order.created")).toBe(true)
    expect(matchesPattern("order.>", "order.created.v2")).toBe(true)
    expect(matchesPattern("order.>", "order")).toBe(false)
    expect(matchesPattern("order.>", "orders.created")).toBe(false)
    expect(matchesPattern("*.created.>", "order.created.v2")).toBe(true)
    expect(matchesPattern("*.created.>", "order.created")).toBe(false)
  })

  it("matches every type with '>'", () => {
    FastCheck.assert(
      FastCheck.property(eventTypes, (type) => {
        expect(matchesPattern(">", type)).toBe(true)
      })
    )
  })

  it("agrees with the NATS rules on generated types", () => {
    FastCheck.assert(
      FastCheck.property(eventTypes, FastCheck.nat(), (type, n) => {
        const tokens = type.split(".")
        const i = n % tokens.length
        // The type itself, and the type with any one token replaced by '*'.
        expect(matchesPattern(type, type)).toBe(true)
        expect(matchesPattern(tokens.map((t, j) => (j === i ? "*" : t)).join("."), type)).toBe(true)
        // A prefix followed by '>' matches only when it leaves at least one token.
        expect(matchesPattern([...tokens.slice(0, i), ">"].join("."), type)).toBe(true)
        expect(matchesPattern([...tokens, ">"].join("."), type)).toBe(false)
        // One token more or less never matches an exact or '*' pattern.
        expect(matchesPattern(`${type}.x`, type)).toBe(false)
        expect(matchesPattern(`${type}.*`, type)).toBe(false)
        expect(matchesPattern(type, `${type}.x`)).toBe(false)
      })
    )
  })
})

describe("matchesAny", () => {
  it("matches when one of the patterns does", () => {
    const patterns = ["order.*", "user.deleted", "billing.>"]
    expect(matchesAny(patterns, "order.created")).toBe(true)
    expect(matchesAny(patterns, "user.deleted")).toBe(true)
    expect(matchesAny(patterns, "billing.invoice.paid")).toBe(true)
    expect(matchesAny(patterns, "user.created")).toBe(false)
    expect(matchesAny(patterns, "order.created.v2")).toBe(false)
  })

  it("matches nothing without patterns", () => {
    expect(matchesAny([], "order.created")).toBe(false)
  })
})

describe("consumerFilter", () => {
  it("filters on the server for a single pattern", () => {
    expect(consumerFilter(["order.*"])).toBe("sluice.events.order.*")
    expect(consumerFilter(["order.>"])).toBe("sluice.events.order.>")
    expect(consumerFilter(["order.created"])).toBe("sluice.events.order.created")
    expect(consumerFilter([">"])).toBe(EVENTS_WILDCARD)
  })

  it("takes the whole stream for several patterns, which the actor then matches", () => {
    expect(consumerFilter(["order.*", "user.>"])).toBe(EVENTS_WILDCARD)
    expect(consumerFilter(["order.created", "order.created"])).toBe(EVENTS_WILDCARD)
  })

  it("selects on the server exactly the subjects the pattern matches", () => {
    const patterns = Arbitrary.make(SubscriptionPattern)
    FastCheck.assert(
      FastCheck.property(patterns, eventTypes, (pattern, type) => {
        // NATS matches the filter subject against the event subject with the same token rules.
        expect(matchesPattern(consumerFilter([pattern]), eventSubject(type))).toBe(matchesPattern(pattern, type))
      })
    )
  })
})

describe("destinationConsumer", () => {
  it("prefixes the destination id", () => {
    expect(destinationConsumer("orders-webhook")).toBe("dest_orders-webhook")
  })

  it("is a valid NATS consumer name for every destination id", () => {
    FastCheck.assert(
      FastCheck.property(destinationIds, (id) => {
        const name = destinationConsumer(id)
        expect(name).toMatch(NATS_NAME)
        expect(Buffer.byteLength(name)).toBeLessThanOrEqual(NATS_MAX_NAME)
      })
    )
    const longest = "a".repeat(63)
    expect(Schema.is(DestinationId)(longest)).toBe(true)
    expect(destinationConsumer(longest)).toMatch(NATS_NAME)
  })

  it("gives different destinations different consumers", () => {
    FastCheck.assert(
      FastCheck.property(destinationIds, destinationIds, (a, b) => {
        expect(destinationConsumer(a) === destinationConsumer(b)).toBe(a === b)
      })
    )
  })
})
