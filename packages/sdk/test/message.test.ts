import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { deduplicationId, messageHeaders, prepare, prepareAll } from "../src/internal/message.js"
import { InvalidEnvelope } from "../src/SluiceError.js"

const invalid = (result: Either.Either<unknown, InvalidEnvelope>): InvalidEnvelope => {
  if (Either.isRight(result)) throw new Error("expected the input to be refused")
  return result.left
}

describe("prepare", () => {
  it("fills in the id and occurredAt", () => {
    const envelope = Either.getOrThrow(prepare({ type: "order.created", data: { total: 3 } }))
    expect(envelope.id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/)
    expect(Date.parse(envelope.occurredAt)).not.toBeNaN()
    expect(envelope.data).toEqual({ total: 3 })
  })

  it("names the offending field", () => {
    const error = invalid(prepare({ type: "order created" }))
    expect(error).toBeInstanceOf(InvalidEnvelope)
    expect(error._tag).toBe("InvalidEnvelope")
    expect(error.field).toBe("type")
    expect(error.message).toMatch(/^type: /)
  })

  it("refuses keys that cannot travel in a NATS header", () => {
    expect(invalid(prepare({ type: "a", key: "x\r\ny" })).field).toBe("key")
    expect(invalid(prepare({ type: "a", idempotencyKey: " padded" })).field).toBe("idempotencyKey")
  })
})

describe("prepareAll", () => {
  it("keeps input order", () => {
    const envelopes = Either.getOrThrow(prepareAll([{ type: "a" }, { type: "b", id: "fixed-id" }]))
    expect(envelopes.map((e) => e.type)).toEqual(["a", "b"])
    expect(envelopes[1]!.id).toBe("fixed-id")
  })

  it("names the index and the field of the first invalid input", () => {
    const inputs = [{ type: "a" }, { type: "b" }, { type: "c" }, { type: "bad type" }, { type: 5 }]
    const error = invalid(prepareAll(inputs))
    expect(error.field).toBe("[3].type")
    expect(error.message).toMatch(/^\[3\]\.type: must be dot-separated tokens/)
  })

  it("names the index alone when the input is not an object", () => {
    const error = invalid(prepareAll([{ type: "a" }, "oops"]))
    expect(error.field).toBe("[1]")
    expect(error.message).toMatch(/^\[1\]: /)
  })
})

describe("messageHeaders", () => {
  it("deduplicates on the event id when there is no idempotency key", () => {
    const envelope = Either.getOrThrow(prepare({ type: "order.created", id: "evt-1", key: "order-7" }))
    const headers = messageHeaders(envelope)
    expect(headers.get("Nats-Msg-Id")).toBe("evt-1")
    expect(headers.get("Sluice-Event-Id")).toBe("evt-1")
    expect(headers.get("Sluice-Type")).toBe("order.created")
    expect(headers.get("Sluice-Key")).toBe("order-7")
  })

  it("deduplicates on the idempotency key in its own namespace", () => {
    const envelope = Either.getOrThrow(prepare({ type: "a", id: "evt-1", idempotencyKey: "evt-1" }))
    expect(deduplicationId(envelope)).toBe("idem:evt-1")
    expect(messageHeaders(envelope).has("Sluice-Key")).toBe(false)
  })
})
