/**
 * Destination signing secrets encrypted at rest. Whoever reads the history database (a
 * backup, a read replica, a reporting user) must not be able to sign requests a receiver
 * would trust, so the store keeps each secret sealed with AES-256-GCM under a key that lives
 * outside the database: `SLUICE_SECRET_KEY`, or one generated once into
 * `<dataDir>/secret-key`. Every broker process sharing a database needs the same key; a
 * secret sealed under another key says so instead of failing obscurely.
 *
 * A sealed secret reads `sealed:v1:<key id>:<base64 of nonce, ciphertext and tag>`. The key
 * id is derived from the key (it identifies, never reveals it); the destination id is bound
 * in as associated data, so a sealed value copied onto another destination does not open.
 * Secrets written before encryption (plain `whsec_…`) are read as they are and sealed on
 * their next write.
 */
import { Context, Data, Effect, Layer, Option, Redacted } from "effect"
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from "node:crypto"
import * as Auth from "./Auth.js"
import { BrokerConfig, decodeSecretKey } from "./BrokerConfig.js"
import type { BrokerSettings } from "./BrokerConfig.js"

/** Seals and opens the secrets of destinations, under one key. */
export class SecretBox extends Context.Tag("@sluice/broker/SecretBox")<
  SecretBox,
  {
    /** Identifies the key (8 hex digits), for messages and the sealed format. */
    readonly keyId: string
    /** `secret` sealed for the destination `destinationId`. */
    readonly seal: (secret: string, destinationId: string) => string
    /**
     * The secret `stored` holds for `destinationId`: opened when sealed, as it is when written
     * before encryption. Throws `SecretUnreadable` (the store runs it inside its queries).
     */
    readonly open: (stored: string, destinationId: string) => string
  }
>() {}

/** A stored secret that cannot be opened: sealed under another key, or damaged. */
export class SecretUnreadable extends Data.TaggedError("SecretUnreadable")<{ readonly message: string }> {}

/** The key could not be read or generated at start; the message names the file or setting. */
export class SecretKeyUnavailable extends Data.TaggedError("SecretKeyUnavailable")<{ readonly message: string }> {}

/** The file in the data directory that holds a generated key. */
export const SECRET_KEY_FILE = "secret-key"

const SEALED = "sealed:v1:"
const NONCE_BYTES = 12
const TAG_BYTES = 16

/** Whether a stored secret is sealed (rather than a plain `whsec_…` written before encryption). */
export const isSealed = (stored: string): boolean => stored.startsWith(SEALED)

/** A fresh key, as `SLUICE_SECRET_KEY` and the key file hold it: base64 of 32 random bytes. */
export const generateKey = (): string => randomBytes(32).toString("base64")

const keyIdOf = (key: Uint8Array): string =>
  createHmac("sha256", key).update("sluice secret key id").digest("hex").slice(0, 8)

const associatedData = (destinationId: string): Buffer => Buffer.from(`sluice destination secret:${destinationId}`, "utf8")

/** The box for a 32-byte key. */
export const make = (key: Uint8Array): SecretBox["Type"] => {
  if (key.length !== 32) throw new Error(`a secret key has 32 bytes, not ${key.length}`)
  const keyId = keyIdOf(key)
  const unreadable = (destinationId: string, why: string) =>
    new SecretUnreadable({ message: `the signing secret of destination ${destinationId} cannot be read: ${why}` })
  return SecretBox.of({
    keyId,
    seal: (secret, destinationId) => {
      const nonce = randomBytes(NONCE_BYTES)
      const cipher = createCipheriv("aes-256-gcm", key, nonce)
      cipher.setAAD(associatedData(destinationId))
      const sealed = Buffer.concat([nonce, cipher.update(secret, "utf8"), cipher.final(), cipher.getAuthTag()])
      return `${SEALED}${keyId}:${sealed.toString("base64")}`
    },
    open: (stored, destinationId) => {
      if (!isSealed(stored)) return stored
      const [storedKeyId, payload] = stored.slice(SEALED.length).split(":")
      if (storedKeyId !== keyId) {
        throw unreadable(
          destinationId,
          `it was sealed with key ${storedKeyId}, and this process has key ${keyId} — every broker process ` +
            `sharing the history database needs the same SLUICE_SECRET_KEY (or the same ${SECRET_KEY_FILE} file)`
        )
      }
      const bytes = Buffer.from(payload ?? "", "base64")
      if (bytes.length < NONCE_BYTES + TAG_BYTES) throw unreadable(destinationId, "the sealed value is damaged")
      try {
        const decipher = createDecipheriv("aes-256-gcm", key, bytes.subarray(0, NONCE_BYTES))
        decipher.setAAD(associatedData(destinationId))
        decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES))
        return Buffer.concat([decipher.update(bytes.subarray(NONCE_BYTES, bytes.length - TAG_BYTES)), decipher.final()]).toString(
          "utf8"
        )
      } catch {
        throw unreadable(destinationId, "the sealed value is damaged, or belongs to another destination")
      }
    }
  })
}

/**
 * The box for the broker's settings: `SLUICE_SECRET_KEY` (already validated when the settings
 * were decoded), or the key in `<dataDir>/secret-key`, generated there on the first start.
 */
export const fromSettings = (settings: BrokerSettings): Effect.Effect<SecretBox["Type"], SecretKeyUnavailable> =>
  Effect.gen(function* () {
    const text = Option.isSome(settings.secretKey)
      ? Redacted.value(settings.secretKey.value)
      : yield* Auth.fromDataDir(settings.dataDir, {
          name: SECRET_KEY_FILE,
          setting: "SLUICE_SECRET_KEY",
          generate: generateKey,
          isValid: (value) => decodeSecretKey(value) !== undefined,
          requirement: "the base64 of 32 random bytes"
        }).pipe(
          Effect.map((token) => Redacted.value(token.value)),
          Effect.mapError((error) => new SecretKeyUnavailable({ message: error.message }))
        )
    const key = decodeSecretKey(text)
    if (key === undefined) {
      return yield* new SecretKeyUnavailable({ message: "SLUICE_SECRET_KEY must be the base64 of 32 random bytes" })
    }
    return make(key)
  })

/** The box for the broker's settings (see `fromSettings`). */
export const layer: Layer.Layer<SecretBox, SecretKeyUnavailable, BrokerConfig> = Layer.effect(
  SecretBox,
  Effect.flatMap(BrokerConfig, fromSettings)
)

/** A box with a given key, for tests. */
export const layerKey = (key: Uint8Array): Layer.Layer<SecretBox> => Layer.sync(SecretBox, () => make(key))
