import { createHmac, timingSafeEqual } from "node:crypto"
import { Destination } from "@sluice/protocol"
import { Schema } from "effect"
import { describe, expect, it } from "vitest"
import * as Signer from "../src/Signer.js"

/** A receiver's verifier, written from the spec and independent of Signer's code. */
const verify = (secret: string, headers: Record<string, string>, body: string): boolean => {
  const id = headers["webhook-id"]
  const timestamp = headers["webhook-timestamp"]
  const signatures = headers["webhook-signature"]
  if (id === undefined || timestamp === undefined || signatures === undefined) return false
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64")
  const expected = createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest()
  return signatures.split(" ").some((entry) => {
    const [version, value] = entry.split(",")
    if (version !== "v1" || value === undefined) return false
    const given = Buffer.from(value, "base64")
    return given.length === expected.length && timingSafeEqual(given, expected)
  })
}

describe("Signer", () => {
  it("matches the Standard Webhooks reference vector", () => {
    expect(
      Signer.sign({
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp: 1614265330,
        body: '{"test": 2432232314}'
      })
    ).toBe("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
  })

  it("generates secrets of 32 random bytes that the destination schema accepts", () => {
    const secret = Signer.generateSecret()
    expect(secret).toMatch(/^whsec_/)
    expect(Buffer.from(secret.slice("whsec_".length), "base64")).toHaveLength(32)
    expect(Schema.is(Destination.SigningSecret)(secret)).toBe(true)
    expect(Signer.generateSecret()).not.toBe(secret)
  })

  it("produces headers an independent verifier accepts", () => {
    const secret = Signer.generateSecret()
    const body = JSON.stringify({ id: "01J0000000000000000000000", type: "order.created", data: { total: "12.50 €" } })
    const headers = Signer.headers({ secret, id: "01J0000000000000000000000", timestamp: 1_700_000_000, body })
    expect(headers["webhook-id"]).toBe("01J0000000000000000000000")
    expect(headers["webhook-timestamp"]).toBe("1700000000")
    expect(headers["webhook-signature"]).toMatch(/^v1,[A-Za-z0-9+/]{43}=$/)
    expect(verify(secret, headers, body)).toBe(true)
  })

  it("fails verification when the body, timestamp, id or secret differ", () => {
    const secret = Signer.generateSecret()
    const body = '{"n":1}'
    const headers = Signer.headers({ secret, id: "evt_1", timestamp: 1_700_000_000, body })
    expect(verify(secret, headers, '{"n":2}')).toBe(false)
    expect(verify(secret, { ...headers, "webhook-timestamp": "1700000001" }, body)).toBe(false)
    expect(verify(secret, { ...headers, "webhook-id": "evt_2" }, body)).toBe(false)
    expect(verify(Signer.generateSecret(), headers, body)).toBe(false)
  })
})
