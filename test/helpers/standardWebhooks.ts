/**
 * A Standard Webhooks verifier (https://www.standardwebhooks.com, spec "Verifying webhook
 * authenticity"), written from the specification for the tests — independent of the broker's
 * `Signer`, and on WebCrypto rather than `node:crypto`, so a shared mistake cannot make both
 * agree. It behaves like the official libraries' `Webhook.verify`: it throws
 * `WebhookVerificationError` unless one `v1` signature matches and the timestamp is within
 * five minutes of now, and answers the parsed payload.
 */
import { webcrypto } from "node:crypto"

/** Why a webhook was refused, as the reference libraries name it. */
export class WebhookVerificationError extends Error {
  override readonly name = "WebhookVerificationError"
}

/** How far a timestamp may be from now, either way (the spec's recommendation). */
export const TOLERANCE_SECONDS = 5 * 60

const SECRET_PREFIX = "whsec_"

type Headers = Readonly<Record<string, string | ReadonlyArray<string> | undefined>>

/** A header by case-insensitive name; a repeated header counts as missing. */
const header = (headers: Headers, name: string): string | undefined => {
  const entry = Object.entries(headers).find(([key]) => key.toLowerCase() === name)
  const value = entry?.[1]
  return typeof value === "string" ? value : undefined
}

/** Compares in time independent of where the first difference is. */
const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false
  let difference = 0
  for (let i = 0; i < a.length; i++) difference |= a[i]! ^ b[i]!
  return difference === 0
}

const base64ToBytes = (text: string): Uint8Array | undefined => {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) return undefined
  const binary = atob(text)
  return Uint8Array.from(binary, (c) => c.charCodeAt(0))
}

const bytesToBase64 = (bytes: Uint8Array): string => btoa(String.fromCharCode(...bytes))

/** One endpoint's verifier, for its `whsec_…` secret. */
export class Webhook {
  private readonly key: Promise<webcrypto.CryptoKey>

  constructor(secret: string) {
    const encoded = secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret
    const raw = base64ToBytes(encoded)
    if (raw === undefined || raw.length === 0) throw new Error("the secret must be whsec_ followed by base64")
    this.key = webcrypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"])
  }

  /** The signature a sender writes: `v1,` and the base64 HMAC-SHA256 of `id.timestamp.payload`. */
  async sign(id: string, timestampSeconds: number, payload: string | Uint8Array): Promise<string> {
    const body = typeof payload === "string" ? payload : new TextDecoder().decode(payload)
    const content = new TextEncoder().encode(`${id}.${timestampSeconds}.${body}`)
    const mac = new Uint8Array(await webcrypto.subtle.sign("HMAC", await this.key, content))
    return `v1,${bytesToBase64(mac)}`
  }

  /**
   * The payload, parsed as JSON, when `headers` prove it came from the holder of the secret
   * within the tolerance of `now`; throws `WebhookVerificationError` otherwise.
   */
  async verify(payload: string | Uint8Array, headers: Headers, now: Date = new Date()): Promise<unknown> {
    const id = header(headers, "webhook-id")
    const timestamp = header(headers, "webhook-timestamp")
    const signatures = header(headers, "webhook-signature")
    if (id === undefined || timestamp === undefined || signatures === undefined) {
      throw new WebhookVerificationError("Missing required headers")
    }
    if (!/^\d+$/.test(timestamp)) throw new WebhookVerificationError("Invalid Signature Headers")
    const sentAt = Number(timestamp)
    const nowSeconds = Math.floor(now.getTime() / 1000)
    if (sentAt < nowSeconds - TOLERANCE_SECONDS) throw new WebhookVerificationError("Message timestamp too old")
    if (sentAt > nowSeconds + TOLERANCE_SECONDS) throw new WebhookVerificationError("Message timestamp too new")

    const expected = base64ToBytes((await this.sign(id, sentAt, payload)).slice("v1,".length))!
    const matches = signatures.split(" ").some((entry) => {
      const comma = entry.indexOf(",")
      if (comma === -1 || entry.slice(0, comma) !== "v1") return false
      const given = base64ToBytes(entry.slice(comma + 1))
      return given !== undefined && sameBytes(given, expected)
    })
    if (!matches) throw new WebhookVerificationError("No matching signature found")
    return JSON.parse(typeof payload === "string" ? payload : new TextDecoder().decode(payload)) as unknown
  }
}
