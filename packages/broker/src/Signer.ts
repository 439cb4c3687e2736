/**
 * Standard Webhooks signing (https://www.standardwebhooks.com): every outgoing request
 * carries `webhook-id`, `webhook-timestamp` and `webhook-signature`, so a receiver can prove
 * the request came from Sluice, reject replays by timestamp and dedupe by id.
 */
import { createHmac, randomBytes } from "node:crypto"

const secretPrefix = "whsec_"

/** What a signature covers: the message id, when it was sent, and the exact body bytes. */
export interface Signed {
  readonly secret: string
  readonly id: string
  /** Unix time in seconds. */
  readonly timestamp: number
  readonly body: string
}

/** A fresh destination secret: `whsec_` and 32 random bytes, as Standard Webhooks libraries expect. */
export const generateSecret = (): string => `${secretPrefix}${randomBytes(32).toString("base64")}`

const keyOf = (secret: string): Buffer =>
  Buffer.from(secret.startsWith(secretPrefix) ? secret.slice(secretPrefix.length) : secret, "base64")

/** The `webhook-signature` value: `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`. */
export const sign = ({ body, id, secret, timestamp }: Signed): string =>
  `v1,${createHmac("sha256", keyOf(secret)).update(`${id}.${timestamp}.${body}`).digest("base64")}`

/** The three headers a receiver verifies; the body must be sent byte for byte as signed. */
export const headers = (signed: Signed): Record<"webhook-id" | "webhook-timestamp" | "webhook-signature", string> => ({
  "webhook-id": signed.id,
  "webhook-timestamp": String(signed.timestamp),
  "webhook-signature": sign(signed)
})
