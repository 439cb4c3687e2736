/** `sluice start`: the broker, its admin API and UI, with embedded NATS and PGlite unless configured. */
import { Command } from "@effect/cli"
import { HttpServer } from "@effect/platform"
import { Auth, Broker, BrokerConfig, Nats } from "@sluice/broker"
import { Config, Console, Effect, Layer, Logger, LogLevel, Option, Redacted } from "effect"

/**
 * A generated admin token is the local operator's, so the banner shows it; a configured one
 * stays out of the output (and its logs), as does the producer token, which is for apps.
 */
const describeTokens = (tokens: Auth.AccessTokens["Type"]): ReadonlyArray<string> => [
  Option.match(tokens.admin.file, {
    onNone: () => "  admin token:    from SLUICE_ADMIN_TOKEN",
    onSome: (file) => `  admin token:    ${Redacted.value(tokens.admin.value)}  (in ${file})`
  }),
  Option.match(tokens.producer.file, {
    onNone: () => "  producer token: from SLUICE_PRODUCER_TOKEN",
    onSome: (file) => `  producer token: in ${file}`
  })
]

const banner = Layer.effectDiscard(
  Effect.gen(function* () {
    const server = yield* HttpServer.HttpServer
    const natsUrl = yield* Nats.NatsUrl
    const config = yield* BrokerConfig.BrokerConfig
    const tokens = yield* Auth.AccessTokens
    const address = server.address
    const base = address._tag === "TcpAddress" ? `http://${address.hostname}:${address.port}` : `unix:${address.path}`
    const nats = Option.isSome(config.natsUrl) ? natsUrl : `${natsUrl} (embedded, store ${config.dataDir}/nats)`
    const history = Option.match(config.databaseUrl, {
      onNone: () => `PGlite (embedded, ${config.dataDir}/pglite)`,
      onSome: (url) => url.replace(/\/\/([^:@/]+):[^@/]*@/, "//$1:***@")
    })
    yield* Console.log(
      [
        "Sluice is running",
        `  admin UI:  ${base}/`,
        `  admin API: ${base}/api/v1`,
        `  NATS:      ${nats}`,
        `  history:   ${history}`,
        ...describeTokens(tokens),
        "Press Ctrl+C to stop."
      ].join("\n")
    )
  })
)

const logLevel = Config.logLevel("SLUICE_LOG_LEVEL").pipe(Config.withDefault(LogLevel.Info))

export const start = Command.make("start", {}, () =>
  Effect.gen(function* () {
    const settings = yield* BrokerConfig.fromEnvironment()
    const level = yield* logLevel
    return yield* Layer.launch(
      banner.pipe(Layer.provideMerge(Broker.layer), Layer.provide(BrokerConfig.layer(settings)))
    ).pipe(Logger.withMinimumLogLevel(level))
  })
).pipe(Command.withDescription("start the broker (embedded nats-server and PGlite unless SLUICE_NATS_URL / SLUICE_DATABASE_URL are set)"))
