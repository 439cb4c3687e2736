import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck, Schema } from "effect"
import { decodeTime } from "ulid"
import {
  compareVersions,
  decodeEnvelope,
  encodeEnvelope,
  Envelope,
  EventId,
  InvalidEnvelope,
  makeEventId,
  toEnvelope
} from "../src/Envelope.js"

const valid = (input: unknown, now?: Date): Envelope => {
  const result = toEnvelope(input, now)
  if (Either.isLeft(result)) throw new Error(`expected the input to be accepted: ${result.left.message}`)
  return result.right
}

const invalid = (result: Either.Either<unknown, InvalidEnvelope>): InvalidEnvelope => {
  if (Either.isRight(result)) throw new Error("expected the input to be refused")
  expect(result.left).toBeInstanceOf(InvalidEnvelope)
  expect(result.left._tag).toBe("InvalidEnvelope")
  return result.left
}

/** Asserts the refusal names `field` and that the message starts with it, then says `reason`. */
const expectRefused = (input: unknown, field: string, reason: RegExp) => {
  const error = invalid(toEnvelope(input))
  expect(error.field).toBe(field)
  expect(error.message.startsWith(`${field}: `)).toBe(true)
  expect(error.message.slice(field.length + 2)).toMatch(reason)
}

const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/

const full = {
  id: "evt-1",
  type: "order.created",
  key: "order-7",
  version: 3,
  idempotencyKey: "checkout-42",
  supersedes: true,
  occurredAt: "2026-11-23T09:00:00.123+01:00",
  data: { total: 3, lines: [{ sku: "a", qty: 1 }], note: null },
  headers: { "X-Tenant": "acme", traceparent: "00-abc-def-01" }
}

describe("toEnvelope", () => {
  it("accepts a minimal envelope and fills in id, occurredAt and data", () => {
    const now = new Date("2026-11-23T09:00:00.000Z")
    const envelope = valid({ type: "order.created" }, now)
    expect(envelope).toBeInstanceOf(Envelope)
    expect(envelope.id).toMatch(ULID)
    expect(Schema.is(EventId)(envelope.id)).toBe(true)
    expect(envelope.occurredAt).toBe("2026-11-23T09:00:00.000Z")
    expect(envelope.data).toBeNull()
    expect(envelope.key).toBeUndefined()
    expect(envelope.version).toBeUndefined()
    expect(envelope.idempotencyKey).toBeUndefined()
    expect(envelope.supersedes).toBeUndefined()
    expect(envelope.headers).toBeUndefined()
  })

  it("sets occurredAt to the current time when no clock is given", () => {
    const before = Date.now()
    const envelope = valid({ type: "a" })
    const after = Date.now()
    const occurredAt = Date.parse(envelope.occurredAt)
    expect(occurredAt).toBeGreaterThanOrEqual(before)
    expect(occurredAt).toBeLessThanOrEqual(after)
    const idTime = decodeTime(envelope.id)
    expect(idTime).toBeGreaterThanOrEqual(before)
    expect(idTime).toBeLessThanOrEqual(after)
  })

  it("keeps every field a producer gives", () => {
    const envelope = valid(full)
    expect({ ...envelope }).toEqual(full)
  })

  it("accepts a version that is an RFC 3339 time, and zero", () => {
    expect(valid({ type: "a", version: "2026-11-23T09:00:00.123456Z" }).version).toBe("2026-11-23T09:00:00.123456Z")
    expect(valid({ type: "a", version: "2026-11-23t09:00:00-05:30" }).version).toBe("2026-11-23t09:00:00-05:30")
    expect(valid({ type: "a", version: 0 }).version).toBe(0)
  })

  it("accepts any JSON as data", () => {
    for (const data of [0, "", false, [], "text", [1, "two", { three: 3 }]]) {
      expect(valid({ type: "a", data }).data).toEqual(data)
    }
  })

  it("refuses a missing or malformed type", () => {
    expectRefused({ data: {} }, "type", /^is missing$/)
    expectRefused({ type: 5 }, "type", /^Expected string/)
    for (const type of ["", "order created", "order.*", "order.>", "order..created", ".order", "order.", "ördér"]) {
      expectRefused({ type }, "type", /^must be dot-separated tokens of letters, digits, '_' or '-'/)
    }
    expectRefused({ type: "a".repeat(201) }, "type", /^must be at most 200 characters$/)
  })

  it("refuses a bad key", () => {
    expectRefused({ type: "a", key: "" }, "key", /^must not be empty$/)
    expectRefused({ type: "a", key: "k".repeat(257) }, "key", /^must be at most 256 characters$/)
    expectRefused({ type: "a", key: 7 }, "key", /^Expected string, actual 7$/)
  })

  it("refuses a version that is neither a non-negative integer nor an RFC 3339 time", () => {
    for (const version of [-1, 1.5, Number.NaN, "yesterday", "2026-11-23", "2026-13-45T00:00:00Z", "12", true, null, {}]) {
      expectRefused({ type: "a", version }, "version", /^must be a non-negative integer or an RFC 3339 timestamp$/)
    }
  })

  it("refuses an occurredAt that is not an RFC 3339 time", () => {
    for (const occurredAt of ["2026-11-23", "2026-11-23 09:00:00Z", "2026-11-23T09:00:00", "23/11/2026", "2026-11-31T25:00:00Z"]) {
      expectRefused({ type: "a", occurredAt }, "occurredAt", /^must be an RFC 3339 timestamp such as 2026-11-23T09:00:00Z$/)
    }
    expectRefused({ type: "a", occurredAt: 1_795_424_400_000 }, "occurredAt", /^Expected string/)
  })

  it("refuses headers that are not an object of string values", () => {
    for (const headers of ["x-a: b", ["x-a"], null, 3]) {
      expectRefused({ type: "a", headers }, "headers", /^must be an object of header names to string values$/)
    }
    expectRefused({ type: "a", headers: { "X-Count": 1 } }, "headers.X-Count", /^Expected string, actual 1$/)
    expectRefused(
      { type: "a", headers: { "X-Big": "v".repeat(4097) } },
      "headers.X-Big",
      /^header values must be at most 4096 characters$/
    )
    expectRefused({ type: "a", headers: { "bad name": "v" } }, "headers.bad name", /^is unexpected/)
  })

  it("refuses an empty, oversize or non-string idempotencyKey", () => {
    expectRefused({ type: "a", idempotencyKey: "" }, "idempotencyKey", /^must not be empty$/)
    expectRefused({ type: "a", idempotencyKey: "i".repeat(257) }, "idempotencyKey", /^must be at most 256 characters$/)
    expectRefused({ type: "a", idempotencyKey: 42 }, "idempotencyKey", /^Expected string, actual 42$/)
    expect(valid({ type: "a", idempotencyKey: "i".repeat(256) }).idempotencyKey).toHaveLength(256)
  })

  it("refuses an id that cannot travel as a header", () => {
    for (const id of ["", "has space", "-leading-dash", "x".repeat(129), "a/b"]) {
      expectRefused({ type: "a", id }, "id", /^must be 1-128 characters of letters, digits/)
    }
  })

  it("refuses unknown fields and non-objects", () => {
    expectRefused({ type: "a", payload: {} }, "payload", /^is unexpected/)
    expectRefused({ type: "a", supersedes: "yes" }, "supersedes", /^Expected boolean/)
    for (const input of ["order.created", null, [], 1]) {
      expectRefused(input, "(root)", /^Expected PublishInput/)
    }
  })
})

describe("encodeEnvelope / decodeEnvelope", () => {
  it("round-trips a full envelope", () => {
    const envelope = valid(full)
    const json = encodeEnvelope(envelope)
    expect(JSON.parse(json)).toEqual(full)
    const decoded = Either.getOrThrow(decodeEnvelope(json))
    expect(decoded).toBeInstanceOf(Envelope)
    expect(decoded).toEqual(envelope)
  })

  it("round-trips a minimal envelope, leaving absent fields out of the JSON", () => {
    const envelope = valid({ type: "order.created" })
    const json = encodeEnvelope(envelope)
    expect(Object.keys(JSON.parse(json)).sort()).toEqual(["data", "id", "occurredAt", "type"])
    expect(Either.getOrThrow(decodeEnvelope(json))).toEqual(envelope)
  })

  it("round-trips a time version", () => {
    const envelope = valid({ type: "a", key: "k", version: "2026-11-23T09:00:00.123456Z" })
    expect(Either.getOrThrow(decodeEnvelope(encodeEnvelope(envelope))).version).toBe("2026-11-23T09:00:00.123456Z")
  })

  it("refuses a stored envelope without data", () => {
    const json = JSON.stringify({ id: "evt-1", type: "a", occurredAt: "2026-11-23T09:00:00Z" })
    const error = invalid(decodeEnvelope(json))
    expect(error.field).toBe("data")
    expect(error.message).toBe("data: is missing")
  })

  it("refuses a stored envelope without id or occurredAt", () => {
    const stored = { id: "evt-1", type: "a", occurredAt: "2026-11-23T09:00:00Z", data: null }
    const { id: _id, ...withoutId } = stored
    expect(invalid(decodeEnvelope(JSON.stringify(withoutId))).field).toBe("id")
    const { occurredAt: _occurredAt, ...withoutTime } = stored
    expect(invalid(decodeEnvelope(JSON.stringify(withoutTime))).field).toBe("occurredAt")
    expect(invalid(decodeEnvelope(JSON.stringify({ ...stored, version: -2 }))).field).toBe("version")
  })

  it("refuses text that is not JSON", () => {
    const error = invalid(decodeEnvelope("{ not json"))
    expect(error.field).toBe("(root)")
    expect(error.message).toMatch(/^\(root\): .*JSON/)
  })
})

describe("compareVersions", () => {
  it("compares numbers numerically", () => {
    expect(compareVersions(1, 2)).toBe(-1)
    expect(compareVersions(10, 9)).toBe(1)
    expect(compareVersions(7, 7)).toBe(0)
    expect(compareVersions(0, 1_000_000_000_000)).toBe(-1)
  })

  it("compares times chronologically, across offsets", () => {
    expect(compareVersions("2026-11-23T09:00:00Z", "2026-11-23T10:00:00Z")).toBe(-1)
    // 09:00+01:00 is 08:00Z, earlier than 08:30Z although it sorts later as text.
    expect(compareVersions("2026-11-23T09:00:00+01:00", "2026-11-23T08:30:00Z")).toBe(-1)
    expect(compareVersions("2026-11-23T09:00:00+01:00", "2026-11-23T08:00:00Z")).toBe(0)
    expect(compareVersions("2026-11-23T09:00:00.000Z", "2026-11-23T09:00:00Z")).toBe(0)
    expect(compareVersions("2026-11-24T00:00:00Z", "2026-11-23T23:59:59.999Z")).toBe(1)
  })

  it("tells apart times that differ below the millisecond", () => {
    expect(compareVersions("2026-11-23T09:00:00.123456Z", "2026-11-23T09:00:00.123457Z")).toBe(-1)
    expect(compareVersions("2026-11-23T09:00:00.1235Z", "2026-11-23T09:00:00.123456Z")).toBe(1)
    expect(compareVersions("2026-11-23T09:00:00.123000Z", "2026-11-23T09:00:00.123Z")).toBe(0)
    expect(compareVersions("2026-11-23T10:00:00.123001+01:00", "2026-11-23T09:00:00.123Z")).toBe(1)
  })

  it("finds a number and a time incomparable", () => {
    expect(compareVersions(1, "2026-11-23T09:00:00Z")).toBeUndefined()
    expect(compareVersions("2026-11-23T09:00:00Z", 1)).toBeUndefined()
  })

  it("is a consistent order over times", () => {
    const time = FastCheck.date({
      min: new Date("1970-01-01T00:00:00Z"),
      max: new Date("2999-12-31T23:59:59Z"),
      noInvalidDate: true
    })
    FastCheck.assert(
      FastCheck.property(time, time, (a, b) => {
        const expected = Math.sign(a.getTime() - b.getTime())
        expect(compareVersions(a.toISOString(), b.toISOString())).toBe(expected)
        expect(compareVersions(b.toISOString(), a.toISOString())).toBe(-expected || 0)
      })
    )
  })

  it("is a consistent order over numbers", () => {
    FastCheck.assert(
      FastCheck.property(FastCheck.nat(), FastCheck.nat(), (a, b) => {
        expect(compareVersions(a, b)).toBe(Math.sign(a - b) || 0)
      })
    )
  })
})

describe("makeEventId", () => {
  it("makes ULIDs that are valid event ids", () => {
    const id = makeEventId()
    expect(id).toMatch(ULID)
    expect(Schema.is(EventId)(id)).toBe(true)
  })

  it("makes strictly increasing ids, even within one millisecond", () => {
    const ids = Array.from({ length: 10_000 }, makeEventId)
    expect(new Set(ids).size).toBe(ids.length)
    for (let i = 1; i < ids.length; i++) expect(ids[i - 1]! < ids[i]!).toBe(true)
    expect([...ids].sort()).toEqual(ids)
  })

  it("sorts by creation time", () => {
    const first = makeEventId()
    const second = makeEventId()
    expect(decodeTime(first)).toBeLessThanOrEqual(decodeTime(second))
    expect(first < second).toBe(true)
  })
})
