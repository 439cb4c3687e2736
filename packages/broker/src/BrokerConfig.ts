/**
 * Every setting of the broker, decoded once at start from environment variables and an
 * optional JSON config file. A bad value fails the start with a message naming the setting.
 */
import { Config, ConfigError, ConfigProvider, Context, Duration, Effect, Either, Layer, Option, Redacted } from "effect"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"

export interface BrokerSettings {
  /** External NATS; none = launch an embedded nats-server. */
  readonly natsUrl: Option.Option<string>
  /** External Postgres; none = embedded PGlite under dataDir. */
  readonly databaseUrl: Option.Option<string>
  /** Where the embedded nats-server and PGlite keep their files. */
  readonly dataDir: string
  readonly adminHost: string
  /** 0 picks a free port (tests). */
  readonly adminPort: number
  /** The built admin web app the admin address serves (`pnpm --filter @sluice/admin-web build`). */
  readonly adminWebDir: string
  readonly streamMaxAge: Duration.Duration
  readonly duplicateWindow: Duration.Duration
  /**
   * How long the history keeps events, attempts, health transitions and audit entries;
   * `Duration.infinity` keeps them forever. Never shorter than `streamMaxAge` in effect.
   */
  readonly historyRetention: Duration.Duration
  readonly maxEventBytes: number
  /** Largest HTTP ingest request body (one event or a batch). */
  readonly maxIngestBytes: number
  readonly streamReplicas: number
  /** Bearer token of the admin API; none = generated once into `<dataDir>/admin-token`. */
  readonly adminToken: Option.Option<Redacted.Redacted>
  /** Bearer token of HTTP ingest; none = generated once into `<dataDir>/producer-token`. */
  readonly producerToken: Option.Option<Redacted.Redacted>
  /** Name this process reports (logs, history, destination ownership). */
  readonly processName: string
  /**
   * How long a destination lease lasts without renewal: after a process dies, its
   * destinations move to the others within about this long plus one renewal round.
   */
  readonly leaseTtl: Duration.Duration
  /** Whether destination URLs may point at loopback, private, link-local or metadata addresses. */
  readonly allowPrivateDestinations: boolean
  /**
   * The AES-256 key (base64 of 32 bytes) that encrypts destination signing secrets in the
   * history database; none = generated once into `<dataDir>/secret-key`. Every broker process
   * sharing a database needs the same key.
   */
  readonly secretKey: Option.Option<Redacted.Redacted>
}

export class BrokerConfig extends Context.Tag("@sluice/broker/BrokerConfig")<BrokerConfig, BrokerSettings>() {}

export const defaults: BrokerSettings = {
  natsUrl: Option.none(),
  databaseUrl: Option.none(),
  dataDir: ".sluice",
  adminHost: "127.0.0.1",
  adminPort: 7700,
  adminWebDir: fileURLToPath(new URL("../../admin-web/dist", import.meta.url)),
  streamMaxAge: Duration.days(7),
  duplicateWindow: Duration.minutes(2),
  historyRetention: Duration.days(30),
  maxEventBytes: 1024 * 1024,
  maxIngestBytes: 4 * 1024 * 1024,
  streamReplicas: 1,
  adminToken: Option.none(),
  producerToken: Option.none(),
  processName: `sluice-${process.pid}`,
  leaseTtl: Duration.seconds(6),
  allowPrivateDestinations: false,
  secretKey: Option.none()
}

const nonEmptyString = (name: string) =>
  Config.string(name).pipe(Config.validate({ message: "must not be empty", validation: (s) => s.trim().length > 0 }))

/** What `retention` accepts to keep forever. */
const KEEP_FOREVER = "forever"

/** A positive duration, or `forever` (`Duration.infinity`). */
const retention = (name: string) =>
  Config.string(name).pipe(
    Config.mapOrFail((text) =>
      text.trim() === KEEP_FOREVER
        ? Either.right(Duration.infinity)
        : Duration.decodeUnknown(text).pipe(
            Option.filter((d) => Duration.greaterThan(d, Duration.zero)),
            Either.fromOption(() =>
              ConfigError.InvalidData([], `must be a positive duration such as \`30 days\`, or \`${KEEP_FOREVER}\``)
            )
          )
    )
  )

/**
 * A secret setting, checked and then redacted: validating after `Config.redacted` would lose
 * the setting's name from the error (and the message never repeats the value).
 */
const secret = (name: string, check: { readonly message: string; readonly validation: (value: string) => boolean }) =>
  Config.string(name).pipe(Config.validate(check), Config.map(Redacted.make))

/** A bearer token: long enough not to be guessed, and without blanks that HTTP would trim away. */
const token = (name: string) =>
  Config.option(
    secret(name, {
      message: "must be at least 16 characters without blanks (e.g. `openssl rand -hex 32`)",
      validation: (value) => /^\S{16,}$/.test(value)
    })
  )

/** The bytes of a secret key written as base64 (standard or URL-safe alphabet), when they are exactly 32. */
export const decodeSecretKey = (text: string): Uint8Array | undefined => {
  const trimmed = text.trim()
  if (!/^[A-Za-z0-9+/_-]{43}=?$/.test(trimmed)) return undefined
  const bytes = Buffer.from(trimmed, "base64")
  return bytes.length === 32 ? new Uint8Array(bytes) : undefined
}

/** The settings, with the environment variable that sets each (documented in the README). */
export const config: Config.Config<BrokerSettings> = Config.all({
  natsUrl: Config.option(nonEmptyString("SLUICE_NATS_URL")).pipe(
    Config.withDescription("NATS server URL(s), comma-separated; unset = launch an embedded nats-server")
  ),
  databaseUrl: Config.option(nonEmptyString("SLUICE_DATABASE_URL")).pipe(
    Config.withDescription("Postgres URL for history; unset = embedded PGlite in the data directory")
  ),
  dataDir: nonEmptyString("SLUICE_DATA_DIR").pipe(Config.withDefault(defaults.dataDir)),
  adminHost: nonEmptyString("SLUICE_ADMIN_HOST").pipe(Config.withDefault(defaults.adminHost)),
  // 0 picks a free port (tests, several brokers on one machine); the start banner shows it.
  adminPort: Config.integer("SLUICE_ADMIN_PORT").pipe(
    Config.validate({ message: "must be a port number from 0 to 65535", validation: (n) => n >= 0 && n <= 65535 }),
    Config.withDefault(defaults.adminPort)
  ),
  adminWebDir: nonEmptyString("SLUICE_ADMIN_WEB_DIR").pipe(
    Config.withDescription("Directory of the built admin web app; default: the admin-web package's dist/"),
    Config.withDefault(defaults.adminWebDir)
  ),
  streamMaxAge: Config.duration("SLUICE_STREAM_MAX_AGE").pipe(Config.withDefault(defaults.streamMaxAge)),
  duplicateWindow: Config.duration("SLUICE_DUPLICATE_WINDOW").pipe(Config.withDefault(defaults.duplicateWindow)),
  historyRetention: retention("SLUICE_HISTORY_RETENTION").pipe(
    Config.withDescription("How long history is kept (at least as long as the stream keeps events); `forever` never prunes"),
    Config.withDefault(defaults.historyRetention)
  ),
  maxEventBytes: Config.integer("SLUICE_MAX_EVENT_BYTES").pipe(
    Config.validate({ message: "must be between 1024 and 67108864", validation: (n) => n >= 1024 && n <= 64 * 1024 * 1024 }),
    Config.withDefault(defaults.maxEventBytes)
  ),
  maxIngestBytes: Config.integer("SLUICE_MAX_INGEST_BYTES").pipe(
    Config.withDescription("Largest POST /api/v1/events body; larger requests get 413"),
    Config.validate({ message: "must be between 1024 and 268435456", validation: (n) => n >= 1024 && n <= 256 * 1024 * 1024 }),
    Config.withDefault(defaults.maxIngestBytes)
  ),
  adminToken: token("SLUICE_ADMIN_TOKEN").pipe(
    Config.withDescription("Bearer token of the admin API; unset = generated once into <data dir>/admin-token")
  ),
  producerToken: token("SLUICE_PRODUCER_TOKEN").pipe(
    Config.withDescription("Bearer token of HTTP ingest; unset = generated once into <data dir>/producer-token")
  ),
  streamReplicas: Config.integer("SLUICE_STREAM_REPLICAS").pipe(
    Config.validate({ message: "must be 1, 3 or 5", validation: (n) => n === 1 || n === 3 || n === 5 }),
    Config.withDefault(defaults.streamReplicas)
  ),
  processName: nonEmptyString("SLUICE_PROCESS_NAME").pipe(Config.withDefault(defaults.processName)),
  leaseTtl: Config.duration("SLUICE_LEASE_TTL").pipe(
    Config.withDescription("How long a destination lease lasts unrenewed; failover takes about this long"),
    Config.validate({
      message: "must be between 1 second and 5 minutes",
      validation: (d) => Duration.between(d, { minimum: Duration.seconds(1), maximum: Duration.minutes(5) })
    }),
    Config.withDefault(defaults.leaseTtl)
  ),
  allowPrivateDestinations: Config.boolean("SLUICE_ALLOW_PRIVATE_DESTINATIONS").pipe(
    Config.withDescription("Allow destination URLs on loopback, private, link-local and metadata addresses"),
    Config.withDefault(defaults.allowPrivateDestinations)
  ),
  secretKey: Config.option(
    secret("SLUICE_SECRET_KEY", {
      message: "must be the base64 of 32 random bytes (e.g. `openssl rand -base64 32`)",
      validation: (key) => decodeSecretKey(key) !== undefined
    })
  ).pipe(Config.withDescription("Key encrypting destination secrets at rest; the same for every process sharing the database"))
})

/**
 * Environment first, then the JSON file named by SLUICE_CONFIG (keys are the same
 * setting names, e.g. `{ "SLUICE_ADMIN_PORT": 7800 }`).
 */
export const provider = (env: NodeJS.ProcessEnv = process.env): Effect.Effect<ConfigProvider.ConfigProvider, Error> =>
  Effect.gen(function* () {
    const fromEnv = ConfigProvider.fromMap(
      new Map(Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined))
    )
    const file = env.SLUICE_CONFIG
    if (file === undefined || file === "") return fromEnv
    const json = yield* Effect.try({
      try: () => JSON.parse(readFileSync(file, "utf8")) as unknown,
      catch: (cause) => new Error(`SLUICE_CONFIG: cannot read ${file}: ${String(cause)}`)
    })
    if (typeof json !== "object" || json === null || Array.isArray(json)) {
      return yield* Effect.fail(new Error(`SLUICE_CONFIG: ${file} must contain a JSON object of settings`))
    }
    return fromEnv.pipe(ConfigProvider.orElse(() => ConfigProvider.fromJson(json)))
  })

/** Decodes the settings from the environment (and config file). */
export const fromEnvironment = (env: NodeJS.ProcessEnv = process.env): Effect.Effect<BrokerSettings, Error> =>
  Effect.gen(function* () {
    const p = yield* provider(env)
    return yield* Effect.withConfigProvider(config, p).pipe(
      Effect.mapError((error) => new Error(`Invalid configuration: ${String(error)}`))
    )
  })

/** For tests: defaults overridden by what is given. */
export const layer = (settings: Partial<BrokerSettings> = {}): Layer.Layer<BrokerConfig> =>
  Layer.succeed(BrokerConfig, { ...defaults, ...settings })
