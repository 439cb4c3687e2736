/**
 * Every setting of the broker, decoded once at start from environment variables and an
 * optional JSON config file. A bad value fails the start with a message naming the setting.
 */
import { Config, ConfigProvider, Context, Duration, Effect, Layer, Option } from "effect"
import { readFileSync } from "node:fs"

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
  readonly streamMaxAge: Duration.Duration
  readonly duplicateWindow: Duration.Duration
  readonly maxEventBytes: number
  readonly streamReplicas: number
  /** Name this process reports (logs, history). */
  readonly processName: string
}

export class BrokerConfig extends Context.Tag("@sluice/broker/BrokerConfig")<BrokerConfig, BrokerSettings>() {}

export const defaults: BrokerSettings = {
  natsUrl: Option.none(),
  databaseUrl: Option.none(),
  dataDir: ".sluice",
  adminHost: "127.0.0.1",
  adminPort: 7700,
  streamMaxAge: Duration.days(7),
  duplicateWindow: Duration.minutes(2),
  maxEventBytes: 1024 * 1024,
  streamReplicas: 1,
  processName: `sluice-${process.pid}`
}

const nonEmptyString = (name: string) =>
  Config.string(name).pipe(Config.validate({ message: "must not be empty", validation: (s) => s.trim().length > 0 }))

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
  adminPort: Config.port("SLUICE_ADMIN_PORT").pipe(Config.withDefault(defaults.adminPort)),
  streamMaxAge: Config.duration("SLUICE_STREAM_MAX_AGE").pipe(Config.withDefault(defaults.streamMaxAge)),
  duplicateWindow: Config.duration("SLUICE_DUPLICATE_WINDOW").pipe(Config.withDefault(defaults.duplicateWindow)),
  maxEventBytes: Config.integer("SLUICE_MAX_EVENT_BYTES").pipe(
    Config.validate({ message: "must be between 1024 and 67108864", validation: (n) => n >= 1024 && n <= 64 * 1024 * 1024 }),
    Config.withDefault(defaults.maxEventBytes)
  ),
  streamReplicas: Config.integer("SLUICE_STREAM_REPLICAS").pipe(
    Config.validate({ message: "must be 1, 3 or 5", validation: (n) => n === 1 || n === 3 || n === 5 }),
    Config.withDefault(defaults.streamReplicas)
  ),
  processName: nonEmptyString("SLUICE_PROCESS_NAME").pipe(Config.withDefault(defaults.processName))
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
