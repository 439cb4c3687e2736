/**
 * Who may use the admin address: the operator with the admin token (the admin API) and
 * producers with the producer token (HTTP ingest); neither token opens the other's door.
 * Tokens come from the settings, or are generated once into the data directory (mode 0600),
 * so a plain `sluice start` is protected from its first run and the operator finds the
 * token beside the data.
 */
import { AdminApi } from "@sluice/protocol"
import { Context, Data, Effect, Layer, Option, Redacted } from "effect"
import { createHash, randomBytes, timingSafeEqual } from "node:crypto"
import { link, mkdir, readFile, stat, unlink, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { BrokerConfig } from "./BrokerConfig.js"

/** A token and where it came from. */
export interface Token {
  readonly value: Redacted.Redacted
  /** The data-directory file it was read from or generated into; none when it came from the settings. */
  readonly file: Option.Option<string>
}

/** The two tokens the admin address accepts, resolved once at start. */
export class AccessTokens extends Context.Tag("@sluice/broker/AccessTokens")<
  AccessTokens,
  { readonly admin: Token; readonly producer: Token }
>() {}

/** A token (or another value kept in the data directory) could not be read or generated; the message names the file and the setting that avoids it. */
export class TokenUnavailable extends Data.TaggedError("TokenUnavailable")<{ readonly message: string }> {}

/** The files in the data directory that hold generated tokens (the CLI reads the admin one). */
export const ADMIN_TOKEN_FILE = "admin-token"
export const PRODUCER_TOKEN_FILE = "producer-token"

const errorCode = (error: unknown): string | undefined => (error as NodeJS.ErrnoException | undefined)?.code

/** A value the broker keeps in its data directory: how to make one, and what a usable one looks like. */
export interface DataDirValue {
  /** The file name inside the data directory. */
  readonly name: string
  /** The setting that replaces the file, named in every error. */
  readonly setting: string
  readonly generate: () => string
  readonly isValid: (value: string) => boolean
  /** What `isValid` wants, for the error, e.g. "one token of at least 16 characters without blanks". */
  readonly requirement: string
}

/**
 * The value in `<dataDir>/<name>`, generated first if there is none. The new value is written
 * to a private temporary file and linked into place, which fails if the file appeared
 * meanwhile: brokers starting together on one data directory end up with the same value, and
 * none of them ever reads a half-written file.
 */
export const fromDataDir = (dataDir: string, spec: DataDirValue): Effect.Effect<Token, TokenUnavailable> => {
  const { name, setting } = spec
  const file = join(dataDir, name)
  const failed = (what: string) => (cause: unknown) =>
    new TokenUnavailable({ message: `cannot ${what} ${file} (set ${setting} instead): ${String(cause)}` })
  return Effect.gen(function* () {
    yield* Effect.tryPromise({ try: () => mkdir(dataDir, { recursive: true }), catch: failed("create the directory of") })
    const temporary = `${file}.${process.pid}.${randomBytes(4).toString("hex")}`
    const created = yield* Effect.tryPromise({
      try: async () => {
        await writeFile(temporary, `${spec.generate()}\n`, { mode: 0o600, flag: "wx" })
        try {
          await link(temporary, file)
          return true
        } catch (error) {
          if (errorCode(error) === "EEXIST") return false
          throw error
        } finally {
          await unlink(temporary)
        }
      },
      catch: failed("write")
    })
    const value = (yield* Effect.tryPromise({ try: () => readFile(file, "utf8"), catch: failed("read") })).trim()
    if (!spec.isValid(value)) {
      return yield* Effect.fail(
        new TokenUnavailable({
          message: `${file} must hold ${spec.requirement} (delete it to have one generated, or set ${setting})`
        })
      )
    }
    if (created) {
      yield* Effect.logInfo(`generated ${name.replace("-", " ")} into ${file}`)
    } else {
      const { mode } = yield* Effect.tryPromise({ try: () => stat(file), catch: failed("inspect") })
      if ((mode & 0o077) !== 0) {
        yield* Effect.logWarning(`${file} is readable by other users; restrict it with \`chmod 600 ${file}\``)
      }
    }
    return { value: Redacted.make(value), file: Option.some(file) }
  })
}

/** A bearer token in `file`, generated first if there is none. */
const fromFile = (dataDir: string, name: string, setting: string): Effect.Effect<Token, TokenUnavailable> =>
  fromDataDir(dataDir, {
    name,
    setting,
    generate: () => randomBytes(32).toString("base64url"),
    isValid: (value) => /^\S{16,}$/.test(value),
    requirement: "one token of at least 16 characters without blanks"
  })

const resolve = (configured: Option.Option<Redacted.Redacted>, dataDir: string, name: string, setting: string) =>
  Option.match(configured, {
    onSome: (value): Effect.Effect<Token, TokenUnavailable> => Effect.succeed({ value, file: Option.none() }),
    onNone: () => fromFile(dataDir, name, setting)
  })

/** Resolves both tokens at start; fails the start when a token file is unusable or the two tokens are equal. */
export const tokensLayer: Layer.Layer<AccessTokens, TokenUnavailable, BrokerConfig> = Layer.effect(
  AccessTokens,
  Effect.gen(function* () {
    const config = yield* BrokerConfig
    const admin = yield* resolve(config.adminToken, config.dataDir, ADMIN_TOKEN_FILE, "SLUICE_ADMIN_TOKEN")
    const producer = yield* resolve(config.producerToken, config.dataDir, PRODUCER_TOKEN_FILE, "SLUICE_PRODUCER_TOKEN")
    if (Redacted.value(admin.value) === Redacted.value(producer.value)) {
      return yield* Effect.fail(
        new TokenUnavailable({ message: "the producer token must differ from the admin token (SLUICE_PRODUCER_TOKEN, SLUICE_ADMIN_TOKEN)" })
      )
    }
    return { admin, producer }
  })
)

const digest = (s: string): Buffer => createHash("sha256").update(s, "utf8").digest()

/** Compares digests in constant time, so neither the token's content nor its length leaks through timing. */
const matches = (expected: Redacted.Redacted, given: string): boolean =>
  timingSafeEqual(digest(Redacted.value(expected)), digest(given))

const messages = {
  admin: {
    missing:
      "the admin API requires the admin token: send `Authorization: Bearer <admin token>` " +
      "(SLUICE_ADMIN_TOKEN, or the admin-token file in the broker's data directory)",
    wrong: "the bearer token is not the admin token"
  },
  producer: {
    missing:
      "ingest requires a producer token: send `Authorization: Bearer <producer token>` " +
      "(SLUICE_PRODUCER_TOKEN, or the producer-token file in the broker's data directory)",
    wrong: "the bearer token is not the producer token"
  }
} as const

/** Checks the bearer token a request carried (empty when it had none) against the expected one. */
const verify =
  (expected: Redacted.Redacted, kind: keyof typeof messages) =>
  (given: Redacted.Redacted): Effect.Effect<void, AdminApi.Unauthorized> => {
    const token = Redacted.value(given).trim()
    if (token === "") return Effect.fail(new AdminApi.Unauthorized({ message: messages[kind].missing }))
    return matches(expected, token) ? Effect.void : Effect.fail(new AdminApi.Unauthorized({ message: messages[kind].wrong }))
  }

/** The admin API's and ingest's security middleware, checking the tokens resolved at start. */
export const layer: Layer.Layer<AdminApi.Authorization | AdminApi.ProducerAuthorization, never, AccessTokens> =
  Layer.mergeAll(
    Layer.effect(
      AdminApi.Authorization,
      Effect.map(AccessTokens, (tokens) => AdminApi.Authorization.of({ bearer: verify(tokens.admin.value, "admin") }))
    ),
    Layer.effect(
      AdminApi.ProducerAuthorization,
      Effect.map(AccessTokens, (tokens) =>
        AdminApi.ProducerAuthorization.of({ bearer: verify(tokens.producer.value, "producer") })
      )
    )
  )

/** The admin check for routes outside the HttpApi: the live stream, whose EventSource cannot send headers. */
export const verifyAdmin = (
  tokens: AccessTokens["Type"],
  given: string
): Effect.Effect<void, AdminApi.Unauthorized> => verify(tokens.admin.value, "admin")(Redacted.make(given))
